-- Pauses a queue: claims skip it until it is resumed.
--
-- $1 queue  text
INSERT INTO {schema}.queues (name, paused, updated_at)
VALUES ($1::text, true, now())
ON CONFLICT (name) DO UPDATE SET paused = true, updated_at = now()
