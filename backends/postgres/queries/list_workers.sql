-- The live workers (rows whose end is after now), in id byte order.
--
-- $1 now  timestamptz  clock override (NULL: the database clock)
SELECT id, host, pid, queues, concurrency, held, started_at, last_seen_at, expires_at
FROM {schema}.workers
WHERE expires_at > coalesce($1::timestamptz, now())
ORDER BY id COLLATE "C"
