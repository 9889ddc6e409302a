-- haul: unique jobs.
--
-- A job enqueued with a uniqueness key records it; an enqueue with the same key looks
-- up the oldest blocking job through the index (key, then creation time, for windows).
-- Jobs without a key stay out of the index.
ALTER TABLE jobs ADD COLUMN unique_key text;
CREATE INDEX jobs_unique_key_idx ON jobs (unique_key, created_at) WHERE unique_key IS NOT NULL;
