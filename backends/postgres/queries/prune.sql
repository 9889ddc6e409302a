-- Deletes at most $5 finished jobs older than their state's retention (measured from
-- finished_at). Rows another transaction holds are skipped.
-- The starts of rate limits are pruned by prune_rate_starts.sql.
--
-- $1 now           timestamptz  clock override (NULL: the database clock)
-- $2 completed_us  bigint       retention of completed jobs, in microseconds
-- $3 discarded_us  bigint       retention of discarded jobs
-- $4 cancelled_us  bigint       retention of cancelled jobs
-- $5 limit         bigint
--
-- Returns nothing; the caller reads the number of deleted rows.
WITH ctx AS (
    SELECT coalesce($1::timestamptz, now()) AS now
),
doomed AS (
    SELECT j.id
    FROM {schema}.jobs AS j, ctx
    WHERE (j.state = 'completed' AND j.finished_at <= ctx.now - $2::bigint * interval '1 microsecond')
       OR (j.state = 'discarded' AND j.finished_at <= ctx.now - $3::bigint * interval '1 microsecond')
       OR (j.state = 'cancelled' AND j.finished_at <= ctx.now - $4::bigint * interval '1 microsecond')
    LIMIT $5
    FOR UPDATE OF j SKIP LOCKED
)
DELETE FROM {schema}.jobs AS j
USING doomed
WHERE j.id = doomed.id
