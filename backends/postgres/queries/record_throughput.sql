-- Adds worker-counted attempt endings to the per-queue, per-minute counts, and deletes
-- the rows older than the retention before now, in one statement.
--
-- The input is summed per (queue, minute) first: an upsert must not touch one row
-- twice (ON CONFLICT DO UPDATE fails if it does). Samples older than the retention are
-- left out (they would be deleted at once), so the rows added and the rows deleted
-- never meet. Rows are added in (queue, minute) byte order, so two workers adding to
-- the same rows lock them in the same order and cannot deadlock; the counts are added
-- to the stored ones under the row lock, so concurrent adds all count. Counts
-- saturate at the bigint maximum instead of failing.
--
-- The sweep runs after the upsert (it reads the upsert's output) and skips rows another
-- transaction holds, so it never waits, and never while holding a row it deleted:
-- concurrent calls cannot deadlock, even with different clocks.
--
-- $1 now           timestamptz    clock override (NULL: the database clock)
-- $2 queues        text[]
-- $3 minutes       timestamptz[]  truncated to their minute here (in UTC)
-- $4 completed     bigint[]
-- $5 failed        bigint[]
-- $6 retention_us  bigint         how long samples are kept, counted back from now
--
-- Returns one row: `added`, `swept`.
WITH ctx AS (
    SELECT date_trunc('minute', coalesce($1::timestamptz, now()) - $6::bigint * interval '1 microsecond', 'UTC')
        AS oldest_kept
),
input AS (
    SELECT t.queue,
           date_trunc('minute', t.minute, 'UTC') AS minute,
           least(sum(t.completed), 9223372036854775807)::bigint AS completed,
           least(sum(t.failed), 9223372036854775807)::bigint AS failed
    FROM unnest($2::text[], $3::timestamptz[], $4::bigint[], $5::bigint[]) AS t (queue, minute, completed, failed)
    GROUP BY 1, 2
),
added AS (
    INSERT INTO {schema}.throughput AS t (queue, minute, completed, failed)
    SELECT i.queue, i.minute, i.completed, i.failed
    FROM input AS i, ctx
    WHERE i.minute >= ctx.oldest_kept
    ORDER BY i.queue COLLATE "C", i.minute
    ON CONFLICT (queue, minute) DO UPDATE
    SET completed = least(t.completed::numeric + excluded.completed, 9223372036854775807)::bigint,
        failed    = least(t.failed::numeric + excluded.failed, 9223372036854775807)::bigint
    RETURNING t.queue
),
upserted AS (
    SELECT count(*) AS rows FROM added
),
stale AS (
    SELECT t.queue, t.minute
    FROM {schema}.throughput AS t, ctx, upserted
    WHERE t.minute < ctx.oldest_kept
    FOR UPDATE OF t SKIP LOCKED
),
swept AS (
    DELETE FROM {schema}.throughput AS t
    USING stale
    WHERE t.queue = stale.queue AND t.minute = stale.minute
    RETURNING t.queue
)
SELECT (SELECT rows FROM upserted) AS added, (SELECT count(*) FROM swept) AS swept
