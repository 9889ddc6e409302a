-- Extends the leases of held jobs, each fenced by its claim (id + lease token of a
-- running job). Rows are locked in id order first, so concurrent batches cannot
-- deadlock. Each input row finds its job through the primary key, and the update joins
-- only the locked rows by id (not ctid), found through the primary key, so the plan
-- stays linear in the batch and a row updated concurrently is not lost (see report.sql).
--
-- $1 now       timestamptz  clock override (NULL: the database clock)
-- $2 ids       uuid[]
-- $3 tokens    uuid[]
-- $4 lease_us  bigint       new lease length in microseconds, counted from now
--
-- Returns one row per extended lease: `id`, `token`, `cancel_requested` (bool).
WITH ctx AS (
    SELECT coalesce($1::timestamptz, now()) AS now
),
input AS (
    SELECT * FROM unnest($2::uuid[], $3::uuid[]) AS t (id, token)
),
locked AS (
    SELECT j.id
    FROM (SELECT * FROM input ORDER BY id) AS i
    CROSS JOIN LATERAL (
        SELECT j.id
        FROM {schema}.jobs AS j
        WHERE j.id = i.id AND j.lease_token = i.token AND j.state = 'running'
        FOR UPDATE OF j
    ) AS j
)
UPDATE {schema}.jobs AS j
SET lease_expires_at = ctx.now + $4::bigint * interval '1 microsecond'
FROM locked AS i, ctx
WHERE j.id = i.id
  AND j.id = ANY (ARRAY(SELECT l.id FROM locked AS l))
RETURNING j.id, j.lease_token AS token, j.cancel_requested_at IS NOT NULL AS cancel_requested
