-- claim.sql for claims whose queues include limited ones (src/limits.rs), the second
-- statement of their transaction, after lock_queue_limits.sql locked the limit rows of
-- $8. The same claim (same walk, paused queues, update and returned rows), except that
-- each limited queue takes at most its cap: its limit minus its running jobs (a job
-- whose lease expired counts until it is rescued), at least 0. The running jobs are
-- counted on this statement's snapshot, taken after the row lock: every claim of the
-- queue committed before it is counted, and the claims after it wait for the lock.
-- The other queues are uncapped; all of them fill the $3 jobs in claim order. The count
-- walks `jobs_queue_state_idx` (queue, state, id): its cost grows with the queue's
-- running jobs, which the limit bounds (expired leases not yet rescued aside).
--
-- $1 now        timestamptz  clock override (NULL: the database clock)
-- $2 queues     text[]
-- $3 limit      bigint
-- $4 lease_us   bigint       lease length in microseconds
-- $5 worker_id  text
-- $6 start_priorities smallint[]     per queue of $2, where its walk starts (NULL: at
-- $7 start_run_ats    timestamptz[]  the beginning; see src/claim_start.rs)
-- $8 limited      text[]     the limited queues of $2, as lock_queue_limits.sql read
-- $9 concurrency  integer[]  them, and their limits
--
-- Returns the claimed jobs (unordered; the caller sorts them).
WITH ctx AS (
    SELECT coalesce($1::timestamptz, now()) AS now
),
active AS (
    SELECT DISTINCT ON (q.name) q.name, q.start_priority, q.start_run_at
    FROM unnest($2::text[], $6::smallint[], $7::timestamptz[]) AS q (name, start_priority, start_run_at)
    WHERE NOT EXISTS (SELECT 1 FROM {schema}.queues AS p WHERE p.name = q.name AND p.paused)
    ORDER BY q.name, q.start_priority NULLS FIRST, q.start_run_at NULLS FIRST
),
-- MATERIALIZED: each cap is computed once (inlined, the count would run in both the
-- filter and the LIMIT below).
capped AS MATERIALIZED (
    SELECT a.name, a.start_priority, a.start_run_at,
           CASE
               WHEN l.concurrency IS NULL THEN $3::bigint
               ELSE least($3::bigint, greatest(0, l.concurrency - (
                   SELECT count(*)
                   FROM {schema}.jobs AS r
                   WHERE r.queue = a.name
                     AND r.state = 'running'
               )))
           END AS cap
    FROM active AS a
    LEFT JOIN (
        SELECT DISTINCT ON (u.queue) u.queue, u.concurrency
        FROM unnest($8::text[], $9::integer[]) AS u (queue, concurrency)
        ORDER BY u.queue, u.concurrency
    ) AS l ON l.queue = a.name
),
picked AS (
    SELECT c.ctid
    FROM capped AS a
    CROSS JOIN LATERAL (
        SELECT j.ctid, j.id, j.priority, j.run_at
        FROM {schema}.jobs AS j
        WHERE j.state = 'available'
          AND j.queue = a.name
          AND (j.priority, j.run_at)
              >= (coalesce(a.start_priority, (-32768)::smallint), coalesce(a.start_run_at, '-infinity'))
        ORDER BY j.priority, j.run_at, j.id
        LIMIT a.cap
        FOR UPDATE OF j SKIP LOCKED
    ) AS c
    WHERE a.cap > 0
    ORDER BY c.priority, c.run_at, c.id
    LIMIT $3
)
{claim_update}
