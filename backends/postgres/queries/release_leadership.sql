-- Gives the lead up if this worker still holds it under this term (lapsed or not):
-- the row keeps its term and loses its holder, so the next acquisition succeeds.
--
-- $1 worker_id  text
-- $2 term       bigint
UPDATE {schema}.leader
SET worker_id = NULL, expires_at = NULL
WHERE worker_id = $1::text AND term = $2::bigint
