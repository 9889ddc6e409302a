-- Stores a queue's limits, replacing the ones it had (src/limits.rs), after
-- lock_queue_limits_table.sql in the same transaction. At least one of them is set
-- (limits that limit nothing are removed instead: remove_queue_limits.sql).
--
-- $1 queue            text
-- $2 concurrency      integer  (NULL, or at least 1)
-- $3 key_concurrency  integer  (NULL, or at least 1)
INSERT INTO {schema}.queue_limits (queue, concurrency, key_concurrency)
VALUES ($1::text, $2::integer, $3::integer)
ON CONFLICT (queue) DO UPDATE SET concurrency = excluded.concurrency, key_concurrency = excluded.key_concurrency
