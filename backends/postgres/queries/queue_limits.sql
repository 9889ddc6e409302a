-- Every queue with stored limits, in queue byte order.
SELECT l.queue, l.concurrency, l.key_concurrency
FROM {schema}.queue_limits AS l
ORDER BY l.queue COLLATE "C"
