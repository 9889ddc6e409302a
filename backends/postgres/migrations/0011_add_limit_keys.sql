-- haul: concurrency limits per limit key (see `haul_core::limits`).
--
-- A job may carry a limit key (a customer id, say): `jobs.limit_key`, set at enqueue
-- and never changed, NULL for a job without one (most jobs: a NULL costs only its bit
-- in the row's null bitmap). A queue's `queue_limits.key_concurrency` caps the running
-- jobs of each key of the queue; NULL: no limit per key. Adding nullable columns
-- without a default changes only the catalog: no table rewrite and no scan.
--
-- A row of `queue_limits` now limits its queue when either limit is set, and only
-- then: rows that limit nothing are deleted (storing limits that limit nothing deletes
-- the row anyway), and the CHECK keeps it so. Every claim of a queue with a row takes
-- the locked path (`queries/claim_limited.sql`), whose row lock serializes the claims
-- of the queue, and counts each key's running jobs on a snapshot taken after it; the
-- unlimited claims' guard claims nothing from a queue with a row.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS limit_key text;

DELETE FROM queue_limits WHERE concurrency IS NULL;
ALTER TABLE queue_limits
    ADD COLUMN key_concurrency integer,
    ADD CONSTRAINT queue_limits_key_concurrency_check CHECK (key_concurrency IS NULL OR key_concurrency > 0),
    ADD CONSTRAINT queue_limits_limits_something CHECK (concurrency IS NOT NULL OR key_concurrency IS NOT NULL);

-- The running jobs of each key of a queue, which a claim of a key-limited queue
-- counts: one entry per running job with a key, none for the jobs without one (they
-- cost no index write at all) nor for jobs in any other state. Claiming a keyed job
-- adds its entry; its outcome makes the entry dead.
--
-- The column is new, so the index is empty, but building it reads the whole table
-- and blocks writes to it meanwhile (no longer than migration 0008's index, which also
-- sorts what it reads: about 2 s per million jobs on a small machine). Where that
-- pause is too long, add the column and build the index beforehand without blocking
-- writes, under this name in haul's schema, and check that the build succeeded (a
-- failed concurrent build leaves an invalid index behind: drop it and build again):
--
--     ALTER TABLE <schema>.jobs ADD COLUMN IF NOT EXISTS limit_key text;
--     CREATE INDEX CONCURRENTLY jobs_running_limit_key_idx ON <schema>.jobs (queue, limit_key)
--         WHERE state = 'running' AND limit_key IS NOT NULL;
--
-- This migration then finds both and changes nothing of them.
CREATE INDEX IF NOT EXISTS jobs_running_limit_key_idx ON jobs (queue, limit_key)
    WHERE state = 'running' AND limit_key IS NOT NULL;
