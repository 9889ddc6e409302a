-- Every queue with stored limits, in queue byte order.
SELECT l.queue, l.concurrency, l.key_concurrency, l.rate_starts, l.rate_period_ms, l.key_rate_starts,
       l.key_rate_period_ms
FROM {schema}.queue_limits AS l
ORDER BY l.queue COLLATE "C"
