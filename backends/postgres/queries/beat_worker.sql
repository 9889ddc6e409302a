-- Records or refreshes a worker's row: seen at now, ending at now + ttl. In the same
-- statement, deletes the rows of other workers that have been expired for over an
-- hour (never listed already). The sweep runs after the upsert (it reads the upsert's
-- output) and skips rows another transaction holds, so it never waits while holding
-- the beat's row: concurrent beats cannot deadlock.
--
-- $1 now          timestamptz  clock override (NULL: the database clock)
-- $2 id           text
-- $3 host         text
-- $4 pid          bigint
-- $5 queues       text[]
-- $6 concurrency  bigint
-- $7 held         bigint
-- $8 started_at   timestamptz
-- $9 ttl_us       bigint       how long the row lives without another beat
--
-- Returns one row: `swept`.
WITH ctx AS (
    SELECT coalesce($1::timestamptz, now()) AS now
),
beat AS (
    INSERT INTO {schema}.workers AS w
        (id, host, pid, queues, concurrency, held, started_at, last_seen_at, expires_at)
    SELECT $2::text, $3::text, $4::bigint, $5::text[], $6::bigint, $7::bigint, $8::timestamptz,
           ctx.now, ctx.now + $9::bigint * interval '1 microsecond'
    FROM ctx
    ON CONFLICT (id) DO UPDATE
    SET host         = excluded.host,
        pid          = excluded.pid,
        queues       = excluded.queues,
        concurrency  = excluded.concurrency,
        held         = excluded.held,
        started_at   = excluded.started_at,
        last_seen_at = excluded.last_seen_at,
        expires_at   = excluded.expires_at
    RETURNING w.last_seen_at AS now
),
stale AS (
    SELECT w.id
    FROM {schema}.workers AS w, beat
    WHERE w.expires_at < beat.now - interval '1 hour'
      AND w.id <> $2::text
    FOR UPDATE OF w SKIP LOCKED
),
swept AS (
    DELETE FROM {schema}.workers AS w
    USING stale, beat
    WHERE w.id = stale.id
      AND w.expires_at < beat.now - interval '1 hour'
    RETURNING w.id
)
SELECT count(*) AS swept FROM swept
