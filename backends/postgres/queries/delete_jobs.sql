-- delete.sql for a batch of the jobs a filter matches: the next $7 matching jobs after
-- $6 in id order (locked_batch.sql, from the statement's snapshot) are locked in id
-- order, as report.sql and heartbeat.sql lock theirs, so they cannot deadlock with
-- it. Locking waits for a job another transaction is changing and checks its state
-- again on the newest version: a job that left the states of $2 (became running) is
-- kept. Run it unprepared (see matching_ids.sql).
--
-- $1 queue          text
-- $2 states         text[]       the states to delete: not empty, without 'running'
-- $3 kind           text
-- $4 created_from   timestamptz  inclusive
-- $5 created_until  timestamptz  exclusive
-- $6 after          uuid         cursor: only ids greater than this
-- $7 limit          bigint       batch size
--
-- Returns one row: `scanned` (jobs in the batch), `last` (the batch's greatest id: the
-- next batch's $6; NULL when the batch is empty), `changed` (jobs deleted).
WITH {locked_batch},
deleted AS (
    DELETE FROM {schema}.jobs AS j
    USING locked AS l
    WHERE j.id = l.id
    RETURNING j.id
)
SELECT (SELECT count(*) FROM batch) AS scanned,
       (SELECT id FROM batch ORDER BY id DESC LIMIT 1) AS last,
       (SELECT count(*) FROM deleted) AS changed
