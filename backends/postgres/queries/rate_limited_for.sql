-- How long until a rate limit that held back a job of a claim lets one more start
-- (`PacedClaim::rate_limited_for`, src/limits.rs): the third statement of a limited
-- claim's transaction, run when one of its queues has a rate and the claim came back
-- short (fewer jobs than it asked for: room in its limit for any held job; a full
-- claim leaves the wait unset, its claimer claims again at once). Still under the claim's
-- row locks, it sees the claim's own jobs and starts, and the state every other claim
-- of these queues will see next.
--
-- Per queue of $2 (paused ones excepted) with room in its concurrency limit, a job is
-- held back by a rate when it is available, within the first $9 (KEY_LIMIT_SCAN) of
-- its queue if the queue has a limit per key, and its key (if any) has room in its
-- concurrency limit, but a rate scope is full: the scope holds `starts` starts after
-- `now - period`. The queue's scope holds back all its jobs when full; only then, its
-- keys' scopes hold back their jobs. A full scope lets one more start at its
-- `starts`-th most recent start + period. Returns the least of those minus `now`, in
-- microseconds (NULL: no rate held a job back).
--
-- $1 now                 timestamptz  the claim's clock override (NULL: this
--                                     statement's clock, just after the claim's)
-- $2 queues              text[]       the claim's limited queues with a rate, and
-- $3 concurrency         integer[]    their limits, as lock_queue_limits.sql read them
-- $4 key_concurrency     integer[]
-- $5 rate_starts         integer[]
-- $6 rate_period_ms      bigint[]
-- $7 key_rate_starts     integer[]
-- $8 key_rate_period_ms  bigint[]
-- $9 key_scan            bigint
WITH ctx AS (
    SELECT coalesce($1::timestamptz, statement_timestamp()) AS now
),
rated AS MATERIALIZED (
    SELECT u.*, ctx.now,
           (u.key_concurrency IS NOT NULL OR u.key_rate_starts IS NOT NULL) AS keyed,
           -- When the queue's scope lets one more start (NULL: not full).
           (
               SELECT s.started_at + u.rate_period_ms * interval '1 millisecond'
               FROM {schema}.rate_limit_starts AS s
               WHERE u.rate_starts IS NOT NULL
                 AND s.queue = u.queue
                 AND s.limit_key = ''
                 AND s.started_at > ctx.now - u.rate_period_ms * interval '1 millisecond'
               ORDER BY s.started_at DESC
               OFFSET greatest(u.rate_starts, 1) - 1
               LIMIT 1
           ) AS full_until
    FROM unnest($2::text[], $3::integer[], $4::integer[], $5::integer[], $6::bigint[], $7::integer[], $8::bigint[])
         AS u (queue, concurrency, key_concurrency, rate_starts, rate_period_ms, key_rate_starts, key_rate_period_ms)
    CROSS JOIN ctx
    WHERE NOT EXISTS (SELECT 1 FROM {schema}.queues AS p WHERE p.name = u.queue AND p.paused)
      AND (u.concurrency IS NULL OR u.concurrency > (
          SELECT count(*) FROM {schema}.jobs AS r WHERE r.queue = u.queue AND r.state = 'running'
      ))
),
-- Per key-limited queue, the keys of its first $9 available jobs (NULL: a job without
-- a key) whose concurrency per key has room, and when each key's scope lets one more
-- start (NULL: not full, or no rate per key).
keys AS MATERIALIZED (
    SELECT q.queue, k.limit_key,
           CASE WHEN k.limit_key IS NOT NULL AND q.key_rate_starts IS NOT NULL THEN (
               SELECT s.started_at + q.key_rate_period_ms * interval '1 millisecond'
               FROM {schema}.rate_limit_starts AS s
               WHERE s.queue = q.queue
                 AND s.limit_key = k.limit_key
                 AND s.started_at > q.now - q.key_rate_period_ms * interval '1 millisecond'
               ORDER BY s.started_at DESC
               OFFSET q.key_rate_starts - 1
               LIMIT 1
           ) END AS full_until
    FROM rated AS q
    CROSS JOIN LATERAL (
        SELECT DISTINCT w.limit_key
        FROM (
            SELECT j.limit_key
            FROM {schema}.jobs AS j
            WHERE j.state = 'available'
              AND j.queue = q.queue
            ORDER BY j.priority, j.run_at, j.id
            LIMIT $9::bigint
        ) AS w
    ) AS k
    WHERE q.keyed
      AND (k.limit_key IS NULL OR q.key_concurrency IS NULL OR q.key_concurrency > (
          SELECT count(*)
          FROM {schema}.jobs AS r
          WHERE r.queue = q.queue
            AND r.state = 'running'
            AND r.limit_key = k.limit_key
      ))
),
held AS (
    -- A full queue scope, with a job it holds back.
    SELECT q.full_until
    FROM rated AS q
    WHERE q.full_until IS NOT NULL
      AND CASE
              WHEN q.keyed THEN EXISTS (SELECT 1 FROM keys AS k WHERE k.queue = q.queue)
              ELSE EXISTS (
                  SELECT 1
                  FROM {schema}.jobs AS j
                  WHERE j.state = 'available'
                    AND j.queue = q.queue
              )
          END
    UNION ALL
    -- A full key scope of a queue whose own scope has room.
    SELECT k.full_until
    FROM keys AS k
    JOIN rated AS q ON q.queue = k.queue
    WHERE q.full_until IS NULL
      AND k.full_until IS NOT NULL
)
SELECT (extract(epoch FROM (min(h.full_until) - (SELECT now FROM ctx))) * 1000000)::bigint AS wait_us
FROM held AS h
