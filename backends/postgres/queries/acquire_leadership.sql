-- Takes or renews the lead, in one statement: atomic under concurrency. The first
-- acquisition inserts the row (term 1); later ones update it, and only when it has no
-- holder, is held by this worker, or its lead has lapsed (expires_at <= now). Two
-- concurrent first acquisitions are serialized by the primary key: the second finds
-- the first's row and is refused by the WHERE. The term stays the same when the
-- holder renews a live lead; otherwise (a free, lapsed or another's lead) it goes up
-- by one.
--
-- $1 now        timestamptz  clock override (NULL: the database clock)
-- $2 worker_id  text
-- $3 ttl_us     bigint       how long the lead lasts without a renewal
--
-- Returns the row this worker now holds, or no row when another worker leads.
INSERT INTO {schema}.leader AS l (singleton, worker_id, term, expires_at)
VALUES (true, $2::text, 1, coalesce($1::timestamptz, now()) + $3::bigint * interval '1 microsecond')
ON CONFLICT (singleton) DO UPDATE
SET term = CASE
        WHEN l.worker_id = excluded.worker_id AND l.expires_at > coalesce($1::timestamptz, now()) THEN l.term
        ELSE l.term + 1
    END,
    worker_id  = excluded.worker_id,
    expires_at = excluded.expires_at
WHERE l.worker_id IS NULL
   OR l.worker_id = excluded.worker_id
   OR l.expires_at <= coalesce($1::timestamptz, now())
RETURNING l.worker_id, l.term, l.expires_at
