-- haul: rate limits per queue and per limit key (see `haul_core::limits`).
--
-- `queue_limits.rate_starts` / `rate_period_ms`: at most that many jobs of the queue
-- start in any window of that many milliseconds; `key_rate_starts` /
-- `key_rate_period_ms`: the same per limit key of the queue. Both halves of a rate are
-- set together or not at all; the ranges are `haul_core::MAX_RATE_STARTS` and
-- `MAX_RATE_PERIOD` (31 days). Nullable columns without a default: catalog changes only.
-- A row still limits something (one of the four limits), or is deleted.
ALTER TABLE queue_limits
    ADD COLUMN rate_starts integer,
    ADD COLUMN rate_period_ms bigint,
    ADD COLUMN key_rate_starts integer,
    ADD COLUMN key_rate_period_ms bigint,
    ADD CONSTRAINT queue_limits_rate_check CHECK (
        (rate_starts IS NULL) = (rate_period_ms IS NULL)
        AND (rate_starts IS NULL OR rate_starts BETWEEN 1 AND 10000)
        AND (rate_period_ms IS NULL OR rate_period_ms BETWEEN 1 AND 2678400000)
    ),
    ADD CONSTRAINT queue_limits_key_rate_check CHECK (
        (key_rate_starts IS NULL) = (key_rate_period_ms IS NULL)
        AND (key_rate_starts IS NULL OR key_rate_starts BETWEEN 1 AND 10000)
        AND (key_rate_period_ms IS NULL OR key_rate_period_ms BETWEEN 1 AND 2678400000)
    ),
    DROP CONSTRAINT queue_limits_limits_something,
    ADD CONSTRAINT queue_limits_limits_something CHECK (
        concurrency IS NOT NULL OR key_concurrency IS NOT NULL OR rate_starts IS NOT NULL
        OR key_rate_starts IS NOT NULL
    );

-- The start log of the rate limits: one row per claimed job per scope, at the claim's
-- time. A scope is a queue's rate (`limit_key = ''`: limit keys are never empty) or
-- one key's rate in a queue. The claims of a rate-limited queue (serialized by the lock
-- on its `queue_limits` row, `queries/lock_queue_limits.sql`) count a scope's starts
-- within the period, add theirs and delete the scope's starts that left the period
-- (`queries/claim_limited.sql`): a scope claimed again keeps only its starts within
-- the period (at most `starts` of them while the limit stays). Scopes never claimed
-- again, and the scopes of a queue whose rate limit was removed, are deleted by
-- `Storage::prune` (`queries/prune.sql`), through `rate_limit_starts_started_at_idx`.
CREATE TABLE rate_limit_starts (
    queue      text COLLATE "C" NOT NULL,
    limit_key  text COLLATE "C" NOT NULL,
    started_at timestamptz NOT NULL
);

-- A scope's latest starts: `(queue, limit_key)` then `started_at` (read backwards).
CREATE INDEX rate_limit_starts_scope_idx ON rate_limit_starts (queue, limit_key, started_at);
-- The oldest starts first, for prune.
CREATE INDEX rate_limit_starts_started_at_idx ON rate_limit_starts (started_at);
