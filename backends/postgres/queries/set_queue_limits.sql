-- Stores a queue's limits, replacing the ones it had (src/limits.rs), after
-- lock_queue_limits_table.sql in the same transaction. At least one of them is set
-- (limits that limit nothing are removed instead: remove_queue_limits.sql).
--
-- $1 queue               text
-- $2 concurrency         integer  (NULL, or at least 1)
-- $3 key_concurrency     integer  (NULL, or at least 1)
-- $4 rate_starts         integer  (NULL, or 1 to 10,000; with $5)
-- $5 rate_period_ms      bigint   (NULL, or 1 ms to 31 days; with $4)
-- $6 key_rate_starts     integer  (as $4, per limit key)
-- $7 key_rate_period_ms  bigint   (as $5, per limit key)
INSERT INTO {schema}.queue_limits
    (queue, concurrency, key_concurrency, rate_starts, rate_period_ms, key_rate_starts, key_rate_period_ms)
VALUES ($1::text, $2::integer, $3::integer, $4::integer, $5::bigint, $6::integer, $7::bigint)
ON CONFLICT (queue) DO UPDATE
SET concurrency        = excluded.concurrency,
    key_concurrency    = excluded.key_concurrency,
    rate_starts        = excluded.rate_starts,
    rate_period_ms     = excluded.rate_period_ms,
    key_rate_starts    = excluded.key_rate_starts,
    key_rate_period_ms = excluded.key_rate_period_ms
