-- Ends the leases that expired: a job whose cancel was requested becomes cancelled;
-- otherwise the error "lease expired" is recorded and the job becomes discarded when
-- no attempt is left, else available now (its attempt stays counted). One NOTIFY per
-- queue that got available jobs, has a concurrency limit, or has a limit per key and
-- had a rescued job with a key (a slot was freed). Rows another transaction holds are
-- skipped.
--
-- $1 now  timestamptz  clock override (NULL: the database clock)
--
-- Returns one row: `rescued`, `discarded`, `cancelled`, `notified`.
WITH ctx AS (
    SELECT coalesce($1::timestamptz, now()) AS now
),
expired AS (
    SELECT j.id
    FROM {schema}.jobs AS j, ctx
    WHERE j.state = 'running'
      AND j.lease_expires_at <= ctx.now
    FOR UPDATE OF j SKIP LOCKED
),
ended AS (
    UPDATE {schema}.jobs AS j
    SET state = CASE
            WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled'
            WHEN j.attempt >= j.max_attempts THEN 'discarded'
            ELSE 'available'
        END,
        finished_at = CASE
            WHEN j.cancel_requested_at IS NOT NULL OR j.attempt >= j.max_attempts THEN ctx.now
            ELSE NULL
        END,
        run_at = CASE
            WHEN j.cancel_requested_at IS NOT NULL OR j.attempt >= j.max_attempts THEN j.run_at
            ELSE ctx.now
        END,
        errors = CASE
            WHEN j.cancel_requested_at IS NOT NULL THEN j.errors
            ELSE j.errors || jsonb_build_array(jsonb_build_object(
                'attempt', j.attempt,
                'at', ctx.now,
                'message', 'lease expired: the worker holding the job stopped heartbeating'
            ))
        END,
        lease_token      = NULL,
        lease_expires_at = NULL,
        claimed_by       = NULL
    FROM expired, ctx
    WHERE j.id = expired.id
      AND j.state = 'running'
      AND j.lease_expires_at <= ctx.now
    RETURNING j.queue, j.state, j.limit_key
),
notified AS (
    SELECT pg_notify({channel}, q.queue)
    FROM (
        SELECT e.queue,
               bool_or(e.state = 'available') AS available,
               bool_or(e.limit_key IS NOT NULL) AS keyed
        FROM ended AS e
        GROUP BY e.queue
    ) AS q
    -- A running job of a limited queue ended: its slot is free for the queue's
    -- waiting jobs, which the limit held back (one lookup per queue, not per job). So
    -- does a job with a limit key of a queue with a limit per key (migration 0011):
    -- its key's next job may run now. Such a queue is notified once per statement,
    -- whether or not it has available jobs: looking for them would cost an index probe
    -- per queue, and a wake-up that finds nothing costs one empty claim, which itself
    -- notifies nothing.
    WHERE q.available
       OR EXISTS (
           SELECT 1 FROM {schema}.queue_limits AS l
           WHERE l.queue = q.queue
             AND (l.concurrency IS NOT NULL OR (q.keyed AND l.key_concurrency IS NOT NULL))
       )
)
SELECT count(*) FILTER (WHERE state = 'available') AS rescued,
       count(*) FILTER (WHERE state = 'discarded') AS discarded,
       count(*) FILTER (WHERE state = 'cancelled') AS cancelled,
       (SELECT count(*) FROM notified) AS notified
FROM ended
