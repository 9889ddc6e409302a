-- claim.sql for claims whose queues include limited ones (src/limits.rs), the second
-- statement of their transaction, after lock_queue_limits.sql locked the limit rows of
-- $8. The same claim (same walk, paused queues, update and returned rows), except:
--
-- - Each queue with a concurrency limit takes at most its cap: its limit minus its
--   running jobs (a job whose lease expired counts until it is rescued), at least 0.
--   The count walks `jobs_queue_state_idx` (queue, state, id): its cost grows with the
--   queue's running jobs, which the limit bounds (expired leases not yet rescued aside).
-- - Each queue with a limit per key ($10, migration 0011) takes, among its first $11
--   available jobs in claim order (KEY_LIMIT_SCAN), a job with a limit key only while
--   the key's running jobs in the queue plus the jobs of the key this claim takes
--   before it stay under the limit: the job is the key's `nth` of those $11 in claim
--   order, and is taken when `nth + running <= key_concurrency`. Jobs without a key
--   are not capped per key. The running jobs with a key are read through the partial
--   index `jobs_running_limit_key_idx` (queue, limit_key), which holds only them.
--   Window functions cannot share a query level with FOR UPDATE, so
--   these jobs are chosen first (`within_keys`, unlocked, on the statement's snapshot)
--   and then locked by their ctid with SKIP LOCKED, the state checked again on the
--   locked version. A chosen job skipped there (an operator's call holds it, or it changed
--   meanwhile) leaves its place empty: the key's later jobs were counted after it
--   (`nth` is computed before locking), so none takes its slot beyond the limit; the
--   claim merely takes fewer.
-- - Each queue with a rate ($12/$13, migration 0012) takes at most its rate's room: the
--   rate's starts minus the queue's starts (`rate_limit_starts`, scope `limit_key = ''`) after
--   `now - period` (later ones included: a claim that took the lock after another
--   may have an earlier clock), at least 0. The count reads at most `starts` entries
--   of `rate_limit_starts_scope_idx`.
-- - Each queue with a rate per key ($14/$15) is walked as a key-limited queue: a job
--   with a key is taken only while `nth + recent` stays within the key's starts, where
--   `recent` is the key's starts within the period (one index probe per key of the
--   walk). Both limits per key apply together: the running jobs and the recent starts
--   of a key are weighted rows ranked before its jobs (`running`, `started` below).
-- - Every claimed job of a queue with a rate is recorded as a start of the queue at
--   `now`, and one with a key in a queue with a rate per key as a start of its key;
--   the touched scopes' starts that left the period are deleted (`recorded`,
--   `trimmed`; they cannot see each other's rows, on one snapshot). The untouched
--   scopes are left to prune_rate_starts.sql. For a queue without a rate no scan of
--   `rate_limit_starts` runs (those parts of the plan are never executed; its insert
--   and delete get no rows).
--
-- The counts are taken on this statement's snapshot, taken after the row lock: every
-- claim of the queue committed before it is counted, and the claims after it wait for
-- the lock. The unlimited queues are uncapped; all of them fill the $3 jobs in claim
-- order.
--
-- $1 now        timestamptz  clock override (NULL: the database clock, see ctx)
-- $2 queues     text[]
-- $3 limit      bigint
-- $4 lease_us   bigint       lease length in microseconds
-- $5 worker_id  text
-- $6 start_priorities smallint[]     per queue of $2, where its walk starts (NULL: at
-- $7 start_run_ats    timestamptz[]  the beginning; see src/claim_start.rs)
-- $8  limited          text[]     the limited queues of $2, as lock_queue_limits.sql
-- $9  concurrency      integer[]  read them, and their limits (NULL entries: that
-- $10 key_concurrency  integer[]  limit is not set)
-- $11 key_scan         bigint     the most available jobs a key-limited queue's claim
--                                 looks at (haul_core::KEY_LIMIT_SCAN)
-- $12 rate_starts         integer[]  per queue of $8, its rate (NULL entries: no
-- $13 rate_period_ms      bigint[]   rate) and its rate per key (NULL: none)
-- $14 key_rate_starts     integer[]
-- $15 key_rate_period_ms  bigint[]
--
-- Returns the claimed jobs (unordered; the caller sorts them).
-- The clock is the statement's, read after lock_queue_limits.sql got the row locks
-- (not the transaction's, read before it waited for them): claims of a queue then
-- record their starts in the order they hold its lock.
WITH ctx AS (
    SELECT coalesce($1::timestamptz, statement_timestamp()) AS now
),
active AS (
    SELECT DISTINCT ON (q.name) q.name, q.start_priority, q.start_run_at
    FROM unnest($2::text[], $6::smallint[], $7::timestamptz[]) AS q (name, start_priority, start_run_at)
    WHERE NOT EXISTS (SELECT 1 FROM {schema}.queues AS p WHERE p.name = q.name AND p.paused)
    ORDER BY q.name, q.start_priority NULLS FIRST, q.start_run_at NULLS FIRST
),
-- MATERIALIZED: each cap is computed once (inlined, the count would run in both the
-- filter and the LIMIT below).
capped AS MATERIALIZED (
    SELECT a.name, a.start_priority, a.start_run_at, l.key_concurrency, l.rate_starts, l.rate_period_ms,
           l.key_rate_starts, l.key_rate_period_ms, ctx.now,
           (l.key_concurrency IS NOT NULL OR l.key_rate_starts IS NOT NULL) AS keyed,
           least(
               CASE
                   WHEN l.concurrency IS NULL THEN $3::bigint
                   ELSE least($3::bigint, greatest(0, l.concurrency - (
                       SELECT count(*)
                       FROM {schema}.jobs AS r
                       WHERE r.queue = a.name
                         AND r.state = 'running'
                   )))
               END,
               CASE
                   WHEN l.rate_starts IS NULL THEN $3::bigint
                   ELSE greatest(0, l.rate_starts - (
                       SELECT count(*)
                       FROM (
                           SELECT 1
                           FROM {schema}.rate_limit_starts AS s
                           WHERE s.queue = a.name
                             AND s.limit_key = ''
                             AND s.started_at > ctx.now - l.rate_period_ms * interval '1 millisecond'
                           LIMIT l.rate_starts
                       ) AS recent
                   ))
               END
           ) AS cap
    FROM active AS a
    CROSS JOIN ctx
    LEFT JOIN (
        SELECT DISTINCT ON (u.queue) u.queue, u.concurrency, u.key_concurrency, u.rate_starts, u.rate_period_ms,
               u.key_rate_starts, u.key_rate_period_ms
        FROM unnest($8::text[], $9::integer[], $10::integer[], $12::integer[], $13::bigint[], $14::integer[],
                    $15::bigint[])
             AS u (queue, concurrency, key_concurrency, rate_starts, rate_period_ms, key_rate_starts,
                   key_rate_period_ms)
        ORDER BY u.queue, u.concurrency, u.key_concurrency
    ) AS l ON l.queue = a.name
),
-- The key-limited queues' jobs within their limits per key, at most cap per queue, in
-- claim order; not locked yet. Per queue:
--
-- - `running`: the keys of its running jobs, one row per job (through
--   `jobs_running_limit_key_idx`, which holds only the running jobs with a key), when
--   it has a concurrency limit per key.
-- - A part of its walk (`*_walk`): its first available jobs in claim order, each with
--   its key and position (`pos`, from 1); with a rate per key, the starts of each key
--   of that part within the period (`*_recent`, one row per key). The jobs are ranked
--   among the jobs of their key with the key's running jobs and recent starts first
--   (at position 0), each row weighted (`running`, `started`): a job's sums are then
--   `nth + running` and `nth + recent`, where `nth` is its rank among the jobs of its
--   key in that part, and the job is eligible when it has no key or both sums are
--   within their limits. (No join: its plan cannot go wrong without statistics.) Eligibility depends only on the jobs before it, so the
--   first eligible jobs of a part are the first eligible jobs of the whole walk.
-- - Its walk always starts at the beginning (never at a resumed start, $6/$7): a job
--   held back by its key sorts before the jobs claimed after it, and a walk started
--   past it would let the key's later jobs run first.
-- - `near` looks at the first 2 * cap + 64 jobs (at most $11): when they hold cap
--   eligible jobs, or are all the queue's available jobs, those are the answer. Only
--   otherwise (the first jobs' keys are full) does `far` look at the first $11. A claim
--   of a queue whose keys are spread (the usual case) so sorts a few dozen rows, not
--   $11; one whose first jobs wait on full keys walks their first rows twice.
within_keys AS (
    SELECT c.ctid
    FROM capped AS a
    CROSS JOIN LATERAL (
        WITH running AS MATERIALIZED (
            SELECT r.limit_key
            FROM {schema}.jobs AS r
            WHERE r.queue = a.name
              AND r.state = 'running'
              AND r.limit_key IS NOT NULL
              AND a.key_concurrency IS NOT NULL
        ),
        near_walk AS MATERIALIZED (
            SELECT j.ctid, j.limit_key, row_number() OVER (ORDER BY j.priority, j.run_at, j.id) AS pos
            FROM {schema}.jobs AS j
            WHERE j.state = 'available'
              AND j.queue = a.name
            ORDER BY j.priority, j.run_at, j.id
            LIMIT least($11::bigint, 2 * least(a.cap, $11::bigint) + 64)
        ),
        near_recent AS MATERIALIZED (
            SELECT k.limit_key, (
                       SELECT count(*)::integer
                       FROM (
                           SELECT 1
                           FROM {schema}.rate_limit_starts AS s
                           WHERE s.queue = a.name
                             AND s.limit_key = k.limit_key
                             AND s.started_at > a.now - a.key_rate_period_ms * interval '1 millisecond'
                           LIMIT a.key_rate_starts
                       ) AS recent
                   ) AS recent
            FROM (SELECT DISTINCT w.limit_key FROM near_walk AS w WHERE w.limit_key IS NOT NULL) AS k
            WHERE a.key_rate_starts IS NOT NULL
        ),
        near AS MATERIALIZED (
            SELECT w.ctid, w.pos,
                   w.limit_key IS NULL
                   OR ((a.key_concurrency IS NULL OR sum(w.running) OVER per_key <= a.key_concurrency)
                       AND (a.key_rate_starts IS NULL OR sum(w.started) OVER per_key <= a.key_rate_starts))
                   AS eligible
            FROM (
                SELECT NULL::tid AS ctid, r.limit_key, 0::bigint AS pos, 1 AS running, 0 AS started
                FROM running AS r
                UNION ALL
                SELECT NULL::tid, k.limit_key, 0::bigint, 0, k.recent FROM near_recent AS k
                UNION ALL
                SELECT n.ctid, n.limit_key, n.pos, 1, 1 FROM near_walk AS n
            ) AS w
            WINDOW per_key AS (PARTITION BY w.limit_key ORDER BY w.pos)
        ),
        -- Whether `near` falls short: fewer than cap eligible jobs, more jobs after it, and
        -- fewer than $11 looked at.
        short AS MATERIALIZED (
            SELECT count(*) FILTER (WHERE n.eligible) < a.cap
                   AND count(*) = least($11::bigint, 2 * least(a.cap, $11::bigint) + 64)
                   AND 2 * least(a.cap, $11::bigint) + 64 < $11::bigint AS far_needed
            FROM near AS n
            WHERE n.pos > 0
        ),
        far_walk AS MATERIALIZED (
            SELECT j.ctid, j.limit_key, row_number() OVER (ORDER BY j.priority, j.run_at, j.id) AS pos
            FROM {schema}.jobs AS j
            WHERE j.state = 'available'
              AND j.queue = a.name
            ORDER BY j.priority, j.run_at, j.id
            LIMIT $11::bigint
        ),
        far_recent AS MATERIALIZED (
            SELECT k.limit_key, (
                       SELECT count(*)::integer
                       FROM (
                           SELECT 1
                           FROM {schema}.rate_limit_starts AS s
                           WHERE s.queue = a.name
                             AND s.limit_key = k.limit_key
                             AND s.started_at > a.now - a.key_rate_period_ms * interval '1 millisecond'
                           LIMIT a.key_rate_starts
                       ) AS recent
                   ) AS recent
            FROM (SELECT DISTINCT w.limit_key FROM far_walk AS w WHERE w.limit_key IS NOT NULL) AS k
            WHERE a.key_rate_starts IS NOT NULL
        ),
        far AS MATERIALIZED (
            SELECT w.ctid, w.pos,
                   w.limit_key IS NULL
                   OR ((a.key_concurrency IS NULL OR sum(w.running) OVER per_key <= a.key_concurrency)
                       AND (a.key_rate_starts IS NULL OR sum(w.started) OVER per_key <= a.key_rate_starts))
                   AS eligible
            FROM (
                SELECT NULL::tid AS ctid, r.limit_key, 0::bigint AS pos, 1 AS running, 0 AS started
                FROM running AS r
                UNION ALL
                SELECT NULL::tid, k.limit_key, 0::bigint, 0, k.recent FROM far_recent AS k
                UNION ALL
                SELECT f.ctid, f.limit_key, f.pos, 1, 1 FROM far_walk AS f
            ) AS w
            WINDOW per_key AS (PARTITION BY w.limit_key ORDER BY w.pos)
        )
        -- A CTE is computed only when read: `far` only when `short` says so.
        SELECT n.ctid, n.pos FROM near AS n WHERE n.pos > 0 AND n.eligible AND NOT (SELECT far_needed FROM short)
        UNION ALL
        SELECT f.ctid, f.pos FROM far AS f WHERE f.pos > 0 AND f.eligible AND (SELECT far_needed FROM short)
        ORDER BY pos
        LIMIT a.cap
    ) AS c
    WHERE a.keyed
      AND a.cap > 0
),
-- The key-limited queues' chosen jobs, locked by their ctid (a TID scan) with SKIP
-- LOCKED. The lock returns each row's newest version, whose state `picked` checks.
-- MATERIALIZED: a condition on the state here (or pushed down here from `picked`)
-- would let a plan read every available job through an index on the state rather than
-- fetch the chosen ones by ctid.
keyed_locked AS MATERIALIZED (
    SELECT j.ctid, j.id, j.priority, j.run_at, j.state
    FROM {schema}.jobs AS j
    WHERE j.ctid = ANY (ARRAY(SELECT ctid FROM within_keys))
    FOR UPDATE OF j SKIP LOCKED
),
picked AS (
    SELECT c.ctid
    FROM (
        -- The queues without a limit per key: walked and locked as claim.sql does, at
        -- most cap jobs each.
        SELECT c.ctid, c.id, c.priority, c.run_at
        FROM capped AS a
        CROSS JOIN LATERAL (
            SELECT j.ctid, j.id, j.priority, j.run_at
            FROM {schema}.jobs AS j
            WHERE j.state = 'available'
              AND j.queue = a.name
              AND (j.priority, j.run_at)
                  >= (coalesce(a.start_priority, (-32768)::smallint), coalesce(a.start_run_at, '-infinity'))
            ORDER BY j.priority, j.run_at, j.id
            LIMIT a.cap
            FOR UPDATE OF j SKIP LOCKED
        ) AS c
        WHERE NOT a.keyed
          AND a.cap > 0
        UNION ALL
        -- The key-limited queues' chosen jobs, locked, each still available on its
        -- locked version.
        SELECT k.ctid, k.id, k.priority, k.run_at
        FROM keyed_locked AS k
        WHERE k.state = 'available'
    ) AS c
    ORDER BY c.priority, c.run_at, c.id
    LIMIT $3
),
claimed AS (
{claim_update}
),
-- The starts of the claimed jobs: one per job of a queue with a rate (scope ''), one
-- per job with a key of a queue with a rate per key (scope: its key).
recorded AS (
    INSERT INTO {schema}.rate_limit_starts (queue, limit_key, started_at)
    SELECT c.queue, '', a.now
    FROM claimed AS c
    JOIN capped AS a ON a.name = c.queue
    WHERE a.rate_starts IS NOT NULL
    UNION ALL
    SELECT c.queue, c.limit_key, a.now
    FROM claimed AS c
    JOIN capped AS a ON a.name = c.queue
    WHERE a.key_rate_starts IS NOT NULL
      AND c.limit_key IS NOT NULL
),
-- The starts of the scopes just recorded that left their period (the older ones).
trimmed AS (
    DELETE FROM {schema}.rate_limit_starts AS s
    WHERE s.ctid = ANY (ARRAY(
        SELECT o.ctid
        FROM (
            SELECT DISTINCT c.queue, CASE WHEN scope.per_key THEN c.limit_key ELSE '' END AS limit_key,
                   a.now - CASE WHEN scope.per_key THEN a.key_rate_period_ms ELSE a.rate_period_ms END
                           * interval '1 millisecond' AS left_at
            FROM claimed AS c
            JOIN capped AS a ON a.name = c.queue
            CROSS JOIN (VALUES (false), (true)) AS scope (per_key)
            WHERE CASE
                      WHEN scope.per_key THEN a.key_rate_starts IS NOT NULL AND c.limit_key IS NOT NULL
                      ELSE a.rate_starts IS NOT NULL
                  END
        ) AS t
        CROSS JOIN LATERAL (
            SELECT o.ctid
            FROM {schema}.rate_limit_starts AS o
            WHERE o.queue = t.queue
              AND o.limit_key = t.limit_key
              AND o.started_at <= t.left_at
        ) AS o
    ))
)
SELECT c.* FROM claimed AS c
