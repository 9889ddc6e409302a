-- Makes a job that is not running available now: finished_at and cancel_requested_at
-- are cleared, its error history is kept, and it gets one more attempt if its attempts
-- are used up. Sends a NOTIFY for its queue. The row is locked first, so
-- `previous_state` is the state the decision was made on.
--
-- $1 id   uuid
-- $2 now  timestamptz  clock override (NULL: the database clock)
--
-- Returns no row when the job does not exist; else one row: `previous_state`,
-- `notified` and the job's columns after the change (all NULL when it is running).
WITH ctx AS (
    SELECT coalesce($2::timestamptz, now()) AS now
),
target AS (
    SELECT j.id, j.state
    FROM {schema}.jobs AS j
    WHERE j.id = $1::uuid
    FOR UPDATE
),
updated AS (
    UPDATE {schema}.jobs AS j
    SET state               = 'available',
        run_at              = ctx.now,
        finished_at         = NULL,
        cancel_requested_at = NULL,
        max_attempts        = CASE WHEN j.attempt >= j.max_attempts THEN j.attempt + 1 ELSE j.max_attempts END
    FROM target AS t, ctx
    WHERE j.id = t.id
      AND t.state <> 'running'
    RETURNING j.*
),
notified AS (
    SELECT pg_notify({channel}, u.queue) FROM updated AS u
)
SELECT t.state AS previous_state, n.notified, u.*
FROM target AS t
CROSS JOIN (SELECT count(*) AS notified FROM notified) AS n
LEFT JOIN updated AS u ON true
