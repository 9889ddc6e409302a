-- Every queue with stored limits, in queue byte order.
SELECT l.queue, l.concurrency
FROM {schema}.queue_limits AS l
WHERE l.concurrency IS NOT NULL
ORDER BY l.queue COLLATE "C"
