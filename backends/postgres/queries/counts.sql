-- Counts jobs per queue and state, plus one row per paused queue.
--
-- Returns rows `queue`, `state` (NULL on a paused-queue row), `jobs`, `paused`.
SELECT queue, state, count(*) AS jobs, false AS paused
FROM {schema}.jobs
GROUP BY queue, state
UNION ALL
SELECT name, NULL, 0, true
FROM {schema}.queues
WHERE paused
