-- Serializes enqueues of the same uniqueness keys: takes a transaction-scoped advisory
-- lock per distinct key hash, in hash order so two batches never wait on each other in
-- a cycle. Held until the enclosing transaction ends, so a competing enqueue of a key
-- waits until this one's jobs are committed (and visible) or rolled back. (Volatile
-- functions in the select list run after ORDER BY.)
--
-- $1  keys  text[]  the batch's uniqueness keys
SELECT pg_advisory_xact_lock(s.h)
FROM (SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest($1::text[]) AS k) AS s
ORDER BY s.h
