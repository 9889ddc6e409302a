-- The first statement of storing a queue's limits (src/limits.rs): waits for every
-- claim statement that read the table (the unlimited claims read it in their guard)
-- to commit, and keeps new ones waiting until the limits are stored. An unlimited
-- claim that began before a queue became limited could otherwise commit jobs of the
-- queue after a limited claim counted its running jobs, and exceed the limit. Claims
-- hold the table's lock only for their statement (a limited claim: its short
-- transaction), so this waits a few milliseconds.
LOCK TABLE {schema}.queue_limits IN ACCESS EXCLUSIVE MODE
