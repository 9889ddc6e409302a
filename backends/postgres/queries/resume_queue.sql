-- Resumes a paused queue and sends a NOTIFY for it, so idle workers claim at once.
--
-- $1 queue  text
--
-- Returns one row: `notified`.
WITH resumed AS (
    UPDATE {schema}.queues
    SET paused = false, updated_at = now()
    WHERE name = $1::text AND paused
    RETURNING name
),
notified AS (
    SELECT pg_notify({channel}, r.name) FROM resumed AS r
)
SELECT count(*) AS notified FROM notified
