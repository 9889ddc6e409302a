-- cancel.sql for a batch of the jobs a filter matches: the next $7 matching jobs after
-- $6 in id order (locked_batch.sql, from the statement's snapshot) are locked in id
-- order, as report.sql and heartbeat.sql lock theirs, so they cannot deadlock with
-- it. Locking waits for a job another transaction is changing and checks its state
-- again on the newest version: a job that left the states of $2 (finished) is skipped.
-- Scheduled, available and retryable jobs become cancelled; a running job records the
-- request (cancel_requested_at) and stays running until its holder learns of it by
-- heartbeat, which a NOTIFY `cancel:<id>` per such job makes its holder send at once.
-- Run it unprepared (see matching_ids.sql).
--
-- $1 queue          text
-- $2 states         text[]       the states to cancel: not empty, among 'scheduled',
--                                'available', 'retryable' and 'running'
-- $3 kind           text
-- $4 created_from   timestamptz  inclusive
-- $5 created_until  timestamptz  exclusive
-- $6 after          uuid         cursor: only ids greater than this
-- $7 limit          bigint       batch size
-- $8 now            timestamptz  clock override (NULL: the database clock)
--
-- Returns one row: `scanned` (jobs in the batch), `last` (the batch's greatest id: the
-- next batch's $6; NULL when the batch is empty), `changed` (jobs cancelled or asked
-- to cancel), `signalled` (running jobs whose holders were notified).
WITH ctx AS (
    SELECT coalesce($8::timestamptz, now()) AS now
),
{locked_batch},
updated AS (
    UPDATE {schema}.jobs AS j
    SET state = CASE WHEN j.state = 'running' THEN 'running' ELSE 'cancelled' END,
        finished_at = CASE WHEN j.state = 'running' THEN j.finished_at ELSE ctx.now END,
        cancel_requested_at = CASE
            WHEN j.state = 'running' THEN coalesce(j.cancel_requested_at, ctx.now)
            ELSE j.cancel_requested_at
        END
    FROM locked AS l, ctx
    WHERE j.id = l.id
    RETURNING j.id, j.state
),
signalled AS (
    SELECT pg_notify({channel}, 'cancel:' || u.id::text) FROM updated AS u WHERE u.state = 'running'
)
SELECT (SELECT count(*) FROM batch) AS scanned,
       (SELECT id FROM batch ORDER BY id DESC LIMIT 1) AS last,
       (SELECT count(*) FROM updated) AS changed,
       (SELECT count(*) FROM signalled) AS signalled
