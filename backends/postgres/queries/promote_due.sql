-- Moves scheduled and retryable jobs whose run_at has come to available, and sends one
-- NOTIFY per queue. Rows another transaction holds are skipped (SKIP LOCKED), so
-- concurrent maintenance never waits or deadlocks.
--
-- $1 now  timestamptz  clock override (NULL: the database clock)
--
-- Returns one row: `promoted`, `notified`, and `statistics_stale`: whether the jobs
-- table has more than doubled in pages (plus 8) since its planner statistics were taken
-- (`pg_class.relpages`, set by ANALYZE and VACUUM) and the role may analyze it (it is a
-- member of the table's owner), in which case the storage analyzes it (see
-- src/backend.rs, `promote_due`).
WITH ctx AS (
    SELECT coalesce($1::timestamptz, now()) AS now
),
due AS (
    SELECT j.id
    FROM {schema}.jobs AS j, ctx
    WHERE j.state IN ('scheduled', 'retryable')
      AND j.run_at <= ctx.now
    FOR UPDATE OF j SKIP LOCKED
),
promoted AS (
    UPDATE {schema}.jobs AS j
    SET state = 'available'
    FROM due, ctx
    WHERE j.id = due.id
      AND j.state IN ('scheduled', 'retryable')
      AND j.run_at <= ctx.now
    RETURNING j.queue
),
notified AS (
    SELECT pg_notify({channel}, q.queue)
    FROM (SELECT DISTINCT queue FROM promoted) AS q
)
SELECT (SELECT count(*) FROM promoted) AS promoted,
       (SELECT count(*) FROM notified) AS notified,
       (SELECT pg_relation_size(c.oid) / current_setting('block_size')::bigint > 2 * c.relpages::bigint + 8
        FROM pg_class AS c
        WHERE c.oid = '{schema}.jobs'::regclass
          AND pg_has_role(c.relowner, 'MEMBER')) AS statistics_stale
