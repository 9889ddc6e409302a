-- claim.sql for a worker of one queue (the common case): the same claim, without the
-- per-queue LATERAL over the unnested queue list. Its plan is simpler and quicker to
-- make, which matters while PostgreSQL plans each call (a prepared statement's first
-- runs, and whenever its custom plans look cheaper than a generic one).
--
-- $1 now        timestamptz  clock override (NULL: the database clock)
-- $2 queue      text
-- $3 limit      bigint
-- $4 lease_us   bigint       lease length in microseconds
-- $5 worker_id  text
-- $6 start_priority smallint     where the walk starts (NULL: at the beginning; see
-- $7 start_run_at   timestamptz  src/claim_start.rs); an index condition, not a filter
--
-- Never claims from a limited queue (one with a row in queue_limits: a concurrency
-- limit, a limit per key, or both; migrations 0010, 0011): if $2 is limited, the
-- statement claims nothing (see the guard below and src/limits.rs).
--
-- Returns the claimed jobs (unordered; the caller sorts them).
WITH ctx AS (
    SELECT coalesce($1::timestamptz, now()) AS now
),
picked AS (
    SELECT j.ctid
    FROM {schema}.jobs AS j
    WHERE j.state = 'available'
      AND j.queue = $2::text
      AND (j.priority, j.run_at) >= (coalesce($6::smallint, (-32768)::smallint), coalesce($7::timestamptz, '-infinity'))
      AND NOT EXISTS (SELECT 1 FROM {schema}.queues AS p WHERE p.name = $2::text AND p.paused)
      -- The limits guard (see claim.sql): nothing from a limited queue (one with a row).
      AND NOT EXISTS (SELECT 1 FROM {schema}.queue_limits AS l WHERE l.queue = $2::text)
    ORDER BY j.priority, j.run_at, j.id
    LIMIT $3
    FOR UPDATE OF j SKIP LOCKED
)
{claim_update}
