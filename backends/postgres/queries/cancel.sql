-- Cancels one job. Scheduled, available and retryable jobs become cancelled; a running
-- job records the request (cancel_requested_at) and stays running until its holder
-- learns of it by heartbeat. The row is locked first, so `previous_state` is the
-- state the decision was made on.
--
-- $1 id   uuid
-- $2 now  timestamptz  clock override (NULL: the database clock)
--
-- Returns no row when the job does not exist; else one row: `previous_state` and the
-- job's columns after the change (all NULL when the job was already finished).
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
    SET state = CASE WHEN j.state = 'running' THEN 'running' ELSE 'cancelled' END,
        finished_at = CASE WHEN j.state = 'running' THEN j.finished_at ELSE ctx.now END,
        cancel_requested_at = CASE
            WHEN j.state = 'running' THEN coalesce(j.cancel_requested_at, ctx.now)
            ELSE j.cancel_requested_at
        END
    FROM target AS t, ctx
    WHERE j.id = t.id
      AND j.state IN ('scheduled', 'available', 'retryable', 'running')
    RETURNING j.*
)
SELECT t.state AS previous_state, u.*
FROM target AS t
LEFT JOIN updated AS u ON true
