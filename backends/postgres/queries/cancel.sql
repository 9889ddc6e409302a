-- Cancels one job. Scheduled, available and retryable jobs become cancelled; a running
-- job records the request (cancel_requested_at) and stays running until its holder
-- learns of it by heartbeat, which a NOTIFY `cancel:<id>` makes its holder send at
-- once. The row is locked first, so `previous_state` is the state the decision was
-- made on (and the update checks that state, not the statement's older snapshot of
-- the row).
--
-- $1 id   uuid
-- $2 now  timestamptz  clock override (NULL: the database clock)
--
-- Returns no row when the job does not exist; else one row: `previous_state`,
-- `signalled` (1 when a running job's holder was notified) and the job's columns after
-- the change (all NULL when the job was already finished).
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
      AND t.state IN ('scheduled', 'available', 'retryable', 'running')
    RETURNING j.*
),
signalled AS (
    SELECT pg_notify({channel}, 'cancel:' || u.id::text) FROM updated AS u WHERE u.state = 'running'
)
SELECT t.state AS previous_state, s.signalled, u.*
FROM target AS t
CROSS JOIN (SELECT count(*) AS signalled FROM signalled) AS s
LEFT JOIN updated AS u ON true
