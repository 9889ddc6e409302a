-- The first statement of a limited claim (src/limits.rs): locks the limit rows of the
-- claim's limited queues, in queue order (so two claimers never deadlock), and reads
-- their limits (either may be NULL, not both). The row lock serializes the claims of a
-- limited queue until their transaction commits; taken in a statement of its own, it
-- lets the claim statement that follows take its snapshot after the lock, so that
-- snapshot sees every claim committed by the lock's previous holders.
--
-- $1 queues  text[]
SELECT l.queue, l.concurrency, l.key_concurrency
FROM {schema}.queue_limits AS l
WHERE l.queue = ANY ($1::text[])
ORDER BY l.queue
FOR UPDATE OF l
