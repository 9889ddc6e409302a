-- Completes one job inside the handler's job-scoped transaction, fenced by its claim
-- (id + lease token of a running job), like report.sql's `completed` outcome. It
-- commits, or rolls back, with the handler's own writes.
--
-- $1 id     uuid
-- $2 token  uuid
--
-- The finish time is this statement's start (`now()` would be the transaction's
-- start, before the handler's work).
--
-- Returns the job's id if the claim still held, else no row.
UPDATE {schema}.jobs
SET state            = 'completed',
    finished_at      = statement_timestamp(),
    lease_token      = NULL,
    lease_expires_at = NULL,
    claimed_by       = NULL
WHERE id = $1::uuid
  AND lease_token = $2::uuid
  AND state = 'running'
RETURNING id
