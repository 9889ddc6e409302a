-- retry.sql for a batch of the jobs a filter matches: the next $7 matching jobs after
-- $6 in id order (locked_batch.sql, from the statement's snapshot) are locked in id
-- order, as report.sql and heartbeat.sql lock theirs, so they cannot deadlock with
-- it. Locking waits for a job another transaction is changing and checks its state
-- again on the newest version: a job that left the states of $2 (became running) is
-- skipped. Each job retried becomes available now, gets one more attempt if its
-- attempts are used up, and has finished_at and cancel_requested_at cleared; one
-- NOTIFY per queue that got jobs. Run it unprepared (see matching_ids.sql).
--
-- $1 queue          text
-- $2 states         text[]       the states to retry: not empty, without 'running'
-- $3 kind           text
-- $4 created_from   timestamptz  inclusive
-- $5 created_until  timestamptz  exclusive
-- $6 after          uuid         cursor: only ids greater than this
-- $7 limit          bigint       batch size
-- $8 now            timestamptz  clock override (NULL: the database clock)
--
-- Returns one row: `scanned` (jobs in the batch), `last` (the batch's greatest id: the
-- next batch's $6; NULL when the batch is empty), `changed` (jobs retried),
-- `notified`.
WITH ctx AS (
    SELECT coalesce($8::timestamptz, now()) AS now
),
{locked_batch},
updated AS (
    UPDATE {schema}.jobs AS j
    SET state               = 'available',
        run_at              = ctx.now,
        finished_at         = NULL,
        cancel_requested_at = NULL,
        max_attempts        = CASE WHEN j.attempt >= j.max_attempts THEN j.attempt + 1 ELSE j.max_attempts END
    FROM locked AS l, ctx
    WHERE j.id = l.id
    RETURNING j.queue
),
notified AS (
    SELECT pg_notify({channel}, q.queue)
    FROM (SELECT DISTINCT queue FROM updated) AS q
)
SELECT (SELECT count(*) FROM batch) AS scanned,
       (SELECT id FROM batch ORDER BY id DESC LIMIT 1) AS last,
       (SELECT count(*) FROM updated) AS changed,
       (SELECT count(*) FROM notified) AS notified
