-- haul: plans that stay right when the table's statistics are stale.
--
-- The lease index's predicate is no longer `state = 'running'`: when the statistics
-- say few jobs are running, the planner took that index for report and heartbeat
-- batches (scanning every running job per batch) instead of the primary key. Only
-- running jobs have a lease deadline, so rescue still finds expired leases through it.
DROP INDEX jobs_lease_idx;
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE lease_expires_at IS NOT NULL;

-- A queue table churns: every job is inserted, updated a few times and deleted. Vacuum
-- and analyze it after 2% of its rows changed (the defaults are 20% and 10%), so dead
-- rows do not pile up in the claim index and the planner's statistics stay current.
ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
