-- For each unique job of a batch, the oldest stored job that blocks it (the rule of
-- `Unique::is_blocked_by`): same key, state among the job's blocking states, and
-- created after `now - window` when a window is set. Run after lock_unique_keys.sql,
-- in the same transaction, so it sees every committed job of those keys. Rows are
-- found through `jobs_unique_digest_idx` by the key's digest, then the key itself is
-- compared, so equality stays exact.
--
-- $1  now         timestamptz  clock override (NULL: the database clock)
-- $2  keys        text[]
-- $3  digests     bytea[]      SHA-256 of each key's UTF-8 bytes
-- $4  states      text[]       the blocking states of each job, comma-separated
-- $5  windows_us  bigint[]     the window in microseconds (NULL entries: no window)
--
-- Returns one row per input job, in input order: `now` (the clock used), and the
-- blocking job's `id` and `created_at` (NULL when nothing blocks it).
WITH ctx AS (
    SELECT coalesce($1::timestamptz, now()) AS now
)
SELECT ctx.now, blocker.id, blocker.created_at
FROM unnest($2::text[], $3::bytea[], $4::text[], $5::bigint[]) WITH ORDINALITY
    AS input (key, digest, states, window_us, ord)
CROSS JOIN ctx
LEFT JOIN LATERAL (
    SELECT j.id, j.created_at
    FROM {schema}.jobs AS j
    WHERE j.unique_digest = input.digest
      AND j.unique_key = input.key
      AND j.state = ANY (string_to_array(input.states, ','))
      AND (input.window_us IS NULL OR j.created_at > ctx.now - input.window_us * interval '1 microsecond')
    ORDER BY j.created_at, j.id
    LIMIT 1
) AS blocker ON true
ORDER BY input.ord
