-- Stores a queue's limits, replacing the ones it had (src/limits.rs), after
-- lock_queue_limits_table.sql in the same transaction.
--
-- $1 queue        text
-- $2 concurrency  integer  (at least 1)
INSERT INTO {schema}.queue_limits (queue, concurrency)
VALUES ($1::text, $2::integer)
ON CONFLICT (queue) DO UPDATE SET concurrency = excluded.concurrency
