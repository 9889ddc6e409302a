-- A fragment, not a statement: the CTEs `batch` (the ids of the next $7 jobs a filter
-- matches after $6, from matching_ids.sql) and `locked` (those of them still in one of
-- the states of $2, locked). Spliced as `{locked_batch}` into the bulk statements
-- (retry_jobs.sql, cancel_jobs.sql, delete_jobs.sql), after their `WITH` (and any CTE
-- before it), which take matching_ids.sql's parameters in its positions.
--
-- The batch is locked in id order, as report.sql and heartbeat.sql lock theirs, so the
-- statements cannot deadlock with them. Locking waits for a job another transaction is
-- changing and checks its state again on the newest version: a job that left the
-- states of $2 meanwhile (a job a worker claimed) is left out of `locked`.
batch AS (
{matching_ids}
),
locked AS (
    SELECT j.id
    FROM (SELECT id FROM batch ORDER BY id) AS b
    CROSS JOIN LATERAL (
        SELECT j.id
        FROM {schema}.jobs AS j
        WHERE j.id = b.id AND j.state = ANY ($2::text[])
        FOR UPDATE OF j
    ) AS j
)
