-- The first statement of a limited claim (src/limits.rs): locks the limit rows of the
-- claim's limited queues, in queue order (so two claimers never deadlock), and reads
-- their limits (any may be NULL, not all; a rate is its starts and its period in ms).
-- The row lock serializes the claims of a limited queue (their counts of running jobs
-- and of recent starts, migration 0012) until their transaction commits; taken in a
-- statement of its own, it lets the claim statement that follows take its snapshot
-- after the lock, so that snapshot sees every claim (and every start) committed by the
-- lock's previous holders.
--
-- $1 queues  text[]
SELECT l.queue, l.concurrency, l.key_concurrency, l.rate_starts, l.rate_period_ms, l.key_rate_starts,
       l.key_rate_period_ms
FROM {schema}.queue_limits AS l
WHERE l.queue = ANY ($1::text[])
ORDER BY l.queue
FOR UPDATE OF l
