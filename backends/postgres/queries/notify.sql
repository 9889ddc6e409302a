-- Sends one NOTIFY per queue in $1: the wake-ups of jobs that the pool's enqueue
-- inserted and committed without notifying (enqueue.sql with $12 false). Sent by the
-- storage's notifier task (src/notify.rs), one statement per round, in a transaction
-- of its own that writes nothing else: such a transaction does not wait for a WAL
-- flush at commit, so it holds PostgreSQL's database-wide NOTIFY lock only briefly.
--
-- $1 queues  text[]  distinct queue names
--
-- Returns one row: `notified` (number of queues notified).
SELECT count(*) AS notified
FROM (SELECT pg_notify({channel}, q.queue) FROM unnest($1::text[]) AS q (queue)) AS n
