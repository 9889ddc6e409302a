-- Serializes enqueues of the same uniqueness keys: takes a transaction-scoped advisory
-- lock on each lock slot that the batch's keys fall in, in slot order, so two batches
-- never wait on each other in a cycle. Held until the enclosing transaction ends, so a
-- competing enqueue of a key waits until this one's jobs are committed (and visible)
-- or rolled back. (Volatile functions in the select list run after ORDER BY.)
--
-- Why slots rather than a lock per key: advisory locks live in the server's shared
-- lock table, sized for `max_locks_per_transaction` (default 64) locks per connection,
-- so a batch of tens of thousands of keys ran out of shared memory. A key's slot is the
-- first two bytes of its SHA-256 digest modulo 64 (`UNIQUE_LOCK_SLOTS` in
-- src/unique.rs): any batch takes at most 64 locks, the budget PostgreSQL reserves per connection, whatever its size. The price:
-- two enqueues of different keys in one slot wait for each other (for the length of
-- the shorter transaction; they never block each other's jobs), and a batch spanning
-- every slot waits for every concurrent unique enqueue. A lock on the whole table
-- would serialize every unique enqueue; SERIALIZABLE would turn races into errors the
-- caller retries.
--
-- The locks use the two-key form: the first key is the oid of this schema's jobs
-- table (`pg_locks.classid`), the second the slot (`pg_locks.objid`), so they can
-- collide neither with another schema's nor with the application's one-key locks.
--
-- $1  slots  integer[]  the batch's lock slots, distinct, ascending
SELECT pg_advisory_xact_lock('{schema}.jobs'::regclass::oid::integer, s.slot)
FROM unnest($1::integer[]) AS s (slot)
ORDER BY s.slot
