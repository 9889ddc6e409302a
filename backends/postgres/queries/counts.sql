-- Counts jobs per queue and state, plus one row per paused queue, plus one row per queue
-- with available jobs giving the `run_at` of the job its next claim would take (the head
-- of the claim order). The head is one probe of jobs_available_idx
-- (queue, priority, run_at, id) per such queue, not a read of every available job.
--
-- Returns rows `queue`, `state` (NULL on a paused-queue or head row), `jobs`, `paused`,
-- `next_available_at` (NULL except on a head row).
WITH counted AS (
    SELECT queue, state, count(*) AS jobs
    FROM {schema}.jobs
    GROUP BY queue, state
)
SELECT queue, state, jobs, false AS paused, NULL::timestamptz AS next_available_at
FROM counted
UNION ALL
SELECT name, NULL, 0, true, NULL
FROM {schema}.queues
WHERE paused
UNION ALL
SELECT c.queue, NULL, 0, false, h.run_at
FROM counted AS c
CROSS JOIN LATERAL (
    SELECT j.run_at
    FROM {schema}.jobs AS j
    WHERE j.state = 'available'
      AND j.queue = c.queue
    ORDER BY j.priority, j.run_at, j.id
    LIMIT 1
) AS h
WHERE c.state = 'available'
