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
--
-- The counts are taken on this statement's snapshot, taken after the row lock: every
-- claim of the queue committed before it is counted, and the claims after it wait for
-- the lock. The unlimited queues are uncapped; all of them fill the $3 jobs in claim
-- order.
--
-- $1 now        timestamptz  clock override (NULL: the database clock)
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
--
-- Returns the claimed jobs (unordered; the caller sorts them).
WITH ctx AS (
    SELECT coalesce($1::timestamptz, now()) AS now
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
    SELECT a.name, a.start_priority, a.start_run_at, l.key_concurrency,
           CASE
               WHEN l.concurrency IS NULL THEN $3::bigint
               ELSE least($3::bigint, greatest(0, l.concurrency - (
                   SELECT count(*)
                   FROM {schema}.jobs AS r
                   WHERE r.queue = a.name
                     AND r.state = 'running'
               )))
           END AS cap
    FROM active AS a
    LEFT JOIN (
        SELECT DISTINCT ON (u.queue) u.queue, u.concurrency, u.key_concurrency
        FROM unnest($8::text[], $9::integer[], $10::integer[]) AS u (queue, concurrency, key_concurrency)
        ORDER BY u.queue, u.concurrency, u.key_concurrency
    ) AS l ON l.queue = a.name
),
-- The key-limited queues' jobs within their limits per key, at most cap per queue, in
-- claim order; not locked yet. Per queue:
--
-- - `running`: the keys of its running jobs, one row per job (through
--   `jobs_running_limit_key_idx`, which holds only the running jobs with a key).
-- - A part of its walk: its first available jobs in claim order, each with its key and
--   position (`pos`, from 1), ranked among the jobs of its key with the key's running
--   jobs ranked first (at position 0): a job's rank is then `nth + running`, where
--   `nth` is its rank among the jobs of its key in that part, and the job is eligible
--   when it has no key or that rank is at most the limit. (No join: its plan cannot go
--   wrong without statistics.) Eligibility depends only on the jobs before it, so the
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
        ),
        near AS MATERIALIZED (
            SELECT w.ctid, w.pos,
                   w.limit_key IS NULL
                   OR row_number() OVER (PARTITION BY w.limit_key ORDER BY w.pos) <= a.key_concurrency AS eligible
            FROM (
                SELECT NULL::tid AS ctid, r.limit_key, 0::bigint AS pos FROM running AS r
                UNION ALL
                (
                    SELECT j.ctid, j.limit_key, row_number() OVER (ORDER BY j.priority, j.run_at, j.id) AS pos
                    FROM {schema}.jobs AS j
                    WHERE j.state = 'available'
                      AND j.queue = a.name
                    ORDER BY j.priority, j.run_at, j.id
                    LIMIT least($11::bigint, 2 * least(a.cap, $11::bigint) + 64)
                )
            ) AS w
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
        far AS MATERIALIZED (
            SELECT w.ctid, w.pos,
                   w.limit_key IS NULL
                   OR row_number() OVER (PARTITION BY w.limit_key ORDER BY w.pos) <= a.key_concurrency AS eligible
            FROM (
                SELECT NULL::tid AS ctid, r.limit_key, 0::bigint AS pos FROM running AS r
                UNION ALL
                (
                    SELECT j.ctid, j.limit_key, row_number() OVER (ORDER BY j.priority, j.run_at, j.id) AS pos
                    FROM {schema}.jobs AS j
                    WHERE j.state = 'available'
                      AND j.queue = a.name
                    ORDER BY j.priority, j.run_at, j.id
                    LIMIT $11::bigint
                )
            ) AS w
        )
        -- A CTE is computed only when read: `far` only when `short` says so.
        SELECT n.ctid, n.pos FROM near AS n WHERE n.pos > 0 AND n.eligible AND NOT (SELECT far_needed FROM short)
        UNION ALL
        SELECT f.ctid, f.pos FROM far AS f WHERE f.pos > 0 AND f.eligible AND (SELECT far_needed FROM short)
        ORDER BY pos
        LIMIT a.cap
    ) AS c
    WHERE a.key_concurrency IS NOT NULL
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
        WHERE a.key_concurrency IS NULL
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
)
{claim_update}
