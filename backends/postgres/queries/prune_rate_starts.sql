-- Deletes at most $2 rows of `rate_limit_starts` (migration 0012) that no claim needs
-- any more, oldest first: starts older than their scope's period, and every start of
-- a scope whose rate is no longer set (the queue has no row, or no such rate). The
-- claims delete those of the scopes they touch; this bounds the scopes never claimed
-- again (a limit key seen once). Run by each prune after the jobs (so each call
-- deletes at most its limit of each). Rows another transaction holds are skipped.
--
-- $1 now    timestamptz  clock override (NULL: the database clock)
-- $2 limit  bigint
--
-- Returns nothing; the caller reads the number of deleted rows.
WITH ctx AS (
    SELECT coalesce($1::timestamptz, now()) AS now
),
stale_starts AS (
    SELECT s.ctid
    FROM {schema}.rate_limit_starts AS s
    CROSS JOIN ctx
    LEFT JOIN {schema}.queue_limits AS l ON l.queue = s.queue
    WHERE s.started_at <= ctx.now
      AND s.started_at <= ctx.now - coalesce(
              CASE WHEN s.limit_key = '' THEN l.rate_period_ms ELSE l.key_rate_period_ms END, 0
          ) * interval '1 millisecond'
    ORDER BY s.started_at
    LIMIT $2
    FOR UPDATE OF s SKIP LOCKED
)
DELETE FROM {schema}.rate_limit_starts AS s
WHERE s.ctid = ANY (ARRAY(SELECT ctid FROM stale_starts))
