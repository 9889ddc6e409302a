-- The names of the limited queues (those with a row: a row always sets a limit, see
-- migration 0011), for the storage's cache of them (src/limits.rs), refreshed at most
-- once a second per storage handle.
SELECT l.queue FROM {schema}.queue_limits AS l
