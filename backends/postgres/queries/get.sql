-- Looks up one job.
--
-- $1 id  uuid
--
-- Returns the job's row, or none.
SELECT * FROM {schema}.jobs WHERE id = $1::uuid
