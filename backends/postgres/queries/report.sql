-- Applies a batch of attempt outcomes, each fenced by its claim (id + lease token of a
-- running job); outcomes whose claim no longer holds are left out of the result.
-- Rows are locked in id order first, so concurrent batches cannot deadlock.
--
-- The plan must stay linear in the batch whatever the table's statistics say: each
-- input row finds its job through the primary key (a LATERAL lookup: with statistics
-- taken while no job was running, a join let the planner scan the whole table and
-- rescan the input for every row), and the update joins only the locked rows, which
-- carry their outcome (joining the input again was quadratic too), and finds them
-- through the primary key too: `j.id = ANY (ARRAY(…))` is an index condition whose
-- array the planner cannot size, so it estimates few rows (a plain join on id let it
-- hash the batch against a scan of the whole table: 20,000 rows read for 1,000
-- outcomes, planned from current statistics). It joins them by id,
-- not by ctid: when `locked` waits for a concurrent update (a heartbeat, a cancel
-- request), its row lock follows to the newest version, which this statement's snapshot
-- cannot see, so an update by that ctid would drop the outcome. The update needs no
-- second check of the claim: `locked` checked it on the row's latest version and holds
-- the row lock until commit, and a filter on `state` here let the planner pick a full
-- scan again.
--
-- Outcomes: completed, failed (message, delay_us = retry_in), discarded (message),
-- cancelled, snoozed (delay_us). A pending cancel request turns failed and snoozed
-- into cancelled (a failure's error is still recorded). With $7, a completion deletes
-- its row (`deleted`, found through the primary key as the update finds its rows)
-- instead of updating it, unless the job has a uniqueness key (kept as completed, so
-- that a key blocking completed jobs blocks until prune): a delete writes no index
-- entry, an update to `completed` writes four.
--
-- $1 now        timestamptz  clock override (NULL: the database clock)
-- $2 ids        uuid[]
-- $3 tokens     uuid[]
-- $4 outcomes   text[]
-- $5 messages   text[]       NULL for outcomes without a message
-- $6 delays_us  bigint[]     NULL for outcomes without a delay
-- $7 delete_completed boolean  completions delete their jobs
--
-- Returns one row per applied outcome: `id`, `token` (its claim's), `state` (the new
-- state), `notified`.
WITH ctx AS (
    SELECT coalesce($1::timestamptz, now()) AS now
),
input AS (
    SELECT *
    FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::bigint[])
        AS t (id, token, outcome, message, delay_us)
),
locked AS (
    SELECT j.id, i.token, i.outcome, i.message, i.delay_us,
           $7::boolean AND i.outcome = 'completed' AND j.unique_key IS NULL AS deletes
    FROM (SELECT * FROM input ORDER BY id) AS i
    CROSS JOIN LATERAL (
        SELECT j.id, j.unique_key
        FROM {schema}.jobs AS j
        WHERE j.id = i.id AND j.lease_token = i.token AND j.state = 'running'
        FOR UPDATE OF j
    ) AS j
),
updated AS (
    UPDATE {schema}.jobs AS j
    SET state = CASE
            WHEN i.outcome IN ('completed', 'cancelled', 'discarded') THEN i.outcome
            WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled'
            WHEN i.outcome = 'failed' AND j.attempt >= j.max_attempts THEN 'discarded'
            WHEN i.outcome = 'failed' THEN 'retryable'
            WHEN i.delay_us <= 0 THEN 'available'
            ELSE 'scheduled'
        END,
        finished_at = CASE
            WHEN i.outcome IN ('completed', 'cancelled', 'discarded')
              OR j.cancel_requested_at IS NOT NULL
              OR (i.outcome = 'failed' AND j.attempt >= j.max_attempts) THEN ctx.now
            ELSE NULL
        END,
        run_at = CASE
            WHEN i.outcome IN ('completed', 'cancelled', 'discarded')
              OR j.cancel_requested_at IS NOT NULL
              OR (i.outcome = 'failed' AND j.attempt >= j.max_attempts) THEN j.run_at
            ELSE ctx.now + i.delay_us * interval '1 microsecond'
        END,
        attempt = CASE
            WHEN i.outcome = 'snoozed' AND j.cancel_requested_at IS NULL THEN greatest(j.attempt - 1, 0)
            ELSE j.attempt
        END,
        errors = CASE
            WHEN i.outcome IN ('failed', 'discarded') THEN
                j.errors || jsonb_build_array(jsonb_build_object('attempt', j.attempt, 'at', ctx.now, 'message', i.message))
            ELSE j.errors
        END,
        lease_token      = NULL,
        lease_expires_at = NULL,
        claimed_by       = NULL
    FROM locked AS i, ctx
    WHERE j.id = i.id
      AND j.id = ANY (ARRAY(SELECT l.id FROM locked AS l WHERE NOT l.deletes))
    RETURNING j.id, i.token, j.queue, j.state, j.limit_key
),
deleted AS (
    DELETE FROM {schema}.jobs AS j
    WHERE j.id = ANY (ARRAY(SELECT l.id FROM locked AS l WHERE l.deletes))
    -- `locked` checked the token on the row and holds its lock: it is the claim's.
    RETURNING j.id, j.lease_token AS token, j.queue, 'completed'::text AS state, j.limit_key
),
ended AS (
    SELECT * FROM updated
    UNION ALL
    SELECT * FROM deleted
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
SELECT u.id, u.token, u.state, (SELECT count(*) FROM notified) AS notified
FROM ended AS u
