-- Claims up to $3 available jobs from the queues $2 (paused queues excepted), in
-- priority, run_at, id order from each queue's walk start. One statement. For each
-- queue, the lateral SELECT walks the partial index `jobs_available_idx` (queue,
-- priority, run_at, id) in claim order and locks what it picks with FOR UPDATE SKIP
-- LOCKED: rows another claimer holds are skipped, never waited on. The best $3 of
-- those are claimed; the few extra rows locked when several queues are claimed at once
-- are released when the statement ends.
-- The update finds the picked rows by their physical address (ctid), which their row
-- lock keeps stable until commit: a TID scan, whatever the planner thinks of the
-- table's size (joining on `id` let it choose a sequential scan from about 128 rows).
-- A picked row updated concurrently is locked at its newest version, which the update
-- (on this statement's snapshot) does not see: that job is left unclaimed, for the next
-- claim. Outcome and heartbeat batches, which must not drop a row, join by id instead.
--
-- $1 now        timestamptz  clock override (NULL: the database clock)
-- $2 queues     text[]
-- $3 limit      bigint
-- $4 lease_us   bigint       lease length in microseconds
-- $5 worker_id  text
-- $6 start_priorities smallint[]     per queue of $2, where its walk starts (NULL: at
-- $7 start_run_ats    timestamptz[]  the beginning; see src/claim_start.rs)
--
-- Never claims from a limited queue (one with a row in queue_limits: a concurrency
-- limit, a limit per key, or both; migrations 0010, 0011): if one of $2 is limited,
-- the statement claims nothing (see the guard below and src/limits.rs).
--
-- Returns the claimed jobs (unordered; the caller sorts them).
WITH ctx AS (
    SELECT coalesce($1::timestamptz, now()) AS now
),
active AS (
    SELECT DISTINCT ON (q.name) q.name, q.start_priority, q.start_run_at
    FROM unnest($2::text[], $6::smallint[], $7::timestamptz[]) AS q (name, start_priority, start_run_at)
    WHERE NOT EXISTS (SELECT 1 FROM {schema}.queues AS p WHERE p.name = q.name AND p.paused)
      -- The limits guard: evaluated once per statement (an InitPlan), it makes this
      -- claim take nothing when one of its queues is limited (has a row), whatever
      -- the caller believed (those claims are claim_limited.sql's).
      AND NOT EXISTS (
          SELECT 1 FROM {schema}.queue_limits AS l WHERE l.queue = ANY ($2::text[])
      )
    ORDER BY q.name, q.start_priority NULLS FIRST, q.start_run_at NULLS FIRST
),
picked AS (
    SELECT c.ctid
    FROM active AS a
    CROSS JOIN LATERAL (
        SELECT j.ctid, j.id, j.priority, j.run_at
        FROM {schema}.jobs AS j
        WHERE j.state = 'available'
          AND j.queue = a.name
          AND (j.priority, j.run_at)
              >= (coalesce(a.start_priority, (-32768)::smallint), coalesce(a.start_run_at, '-infinity'))
        ORDER BY j.priority, j.run_at, j.id
        LIMIT $3
        FOR UPDATE OF j SKIP LOCKED
    ) AS c
    ORDER BY c.priority, c.run_at, c.id
    LIMIT $3
)
{claim_update}
