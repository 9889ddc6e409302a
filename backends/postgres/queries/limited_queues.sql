-- The names of the queues with a concurrency limit, for the storage's cache of them
-- (src/limits.rs), refreshed at most once a second per storage handle.
SELECT l.queue FROM {schema}.queue_limits AS l WHERE l.concurrency IS NOT NULL
