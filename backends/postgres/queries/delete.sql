-- Deletes one job unless it is running. The row is locked first, so `previous_state`
-- is the state the decision was made on: a job claimed meanwhile is seen running and
-- kept, and a claim that comes later finds no row. The decision reads the locked row
-- (`t.state`), not the delete's own view of it: when the lock waited for a concurrent
-- change (a claim, an outcome), the lock follows the row to its newest version, which
-- this statement's snapshot cannot see; a condition on `j.state` would judge the job by
-- its state before that change.
--
-- $1 id  uuid
--
-- Returns no row when the job does not exist; else one row: `previous_state` and
-- `deleted` (the job's id, NULL when it is running and was kept).
WITH target AS (
    SELECT j.id, j.state
    FROM {schema}.jobs AS j
    WHERE j.id = $1::uuid
    FOR UPDATE
),
deleted AS (
    DELETE FROM {schema}.jobs AS j
    USING target AS t
    WHERE j.id = t.id
      AND t.state <> 'running'
    RETURNING j.id
)
SELECT t.state AS previous_state, d.id AS deleted
FROM target AS t
LEFT JOIN deleted AS d ON true
