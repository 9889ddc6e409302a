-- The current lead, if it has a holder and has not lapsed at now.
--
-- $1 now  timestamptz  clock override (NULL: the database clock)
SELECT worker_id, term, expires_at
FROM {schema}.leader
WHERE worker_id IS NOT NULL
  AND expires_at > coalesce($1::timestamptz, now())
