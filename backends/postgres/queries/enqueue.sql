-- Inserts a batch of jobs in one statement (atomic). With $12 true it also sends one
-- NOTIFY per queue that received available jobs, delivered when the enclosing
-- transaction commits (the caller's own transaction: enqueue_in_tx). With $12 false it
-- sends none and the caller notifies after its commit (the pool's enqueue: see
-- src/notify.rs; a NOTIFY in the insert's own transaction makes concurrent enqueues
-- commit one at a time). When one of the ids is already stored, nothing is
-- inserted and that id is returned as `duplicate` (an insert racing with this one on
-- the same id still fails on the primary key instead).
--
-- $1  now           timestamptz   clock override (NULL: the database clock)
-- $2  ids           uuid[]
-- $3  kinds         text[]
-- $4  args          jsonb[]       JSON objects
-- $5  queues        text[]
-- $6  priorities    smallint[]
-- $7  run_ats       timestamptz[] absolute run_at, NULL when relative
-- $8  delays_us     bigint[]      delay after now in microseconds (used when run_at is NULL)
-- $9  max_attempts  integer[]
-- $10 timeouts_ms   bigint[]      NULL entries: no timeout
-- $11 unique_keys   text[]        NULL entries: not unique (uniqueness is resolved
--                                 before this statement; see find_blocking.sql)
-- $12 notify        boolean       whether to NOTIFY here
-- $13 unique_digests bytea[]      SHA-256 of each unique key's UTF-8 bytes (NULL
--                                 entries: not unique)
-- $14 metadata      jsonb[]       each job's metadata, a JSON object of strings (NULL
--                                 entries: none, stored as NULL)
-- $15 limit_keys    text[]        each job's limit key (NULL entries: none; migration 0011)
--
-- Returns one row: `duplicate` (a stored id of the batch, or NULL when the batch was
-- inserted), `available` (the distinct queues that received available jobs, NULL when
-- none did) and `notified` (number of queues notified here).
WITH ctx AS (
    SELECT coalesce($1::timestamptz, now()) AS now
),
input AS (
    SELECT *
    FROM unnest(
        $2::uuid[], $3::text[], $4::jsonb[], $5::text[], $6::smallint[],
        $7::timestamptz[], $8::bigint[], $9::integer[], $10::bigint[], $11::text[], $13::bytea[], $14::jsonb[],
        $15::text[]
    ) AS t (id, kind, args, queue, priority, run_at, delay_us, max_attempts, timeout_ms, unique_key, unique_digest,
            metadata, limit_key)
),
resolved AS (
    SELECT input.*,
           coalesce(input.run_at, ctx.now + input.delay_us * interval '1 microsecond') AS due,
           ctx.now
    FROM input CROSS JOIN ctx
),
existing AS (
    -- One primary-key lookup per id: `j.id = ANY ($2) LIMIT 1` let the generic plan
    -- scan the whole table in the hope of an early match.
    SELECT found.id
    FROM unnest($2::uuid[]) AS wanted (id)
    CROSS JOIN LATERAL (SELECT j.id FROM {schema}.jobs AS j WHERE j.id = wanted.id LIMIT 1) AS found
    LIMIT 1
),
inserted AS (
    INSERT INTO {schema}.jobs (id, kind, args, queue, priority, state, attempt, max_attempts, timeout_ms, run_at, created_at,
                              unique_key, unique_digest, metadata, limit_key)
    SELECT id, kind, args, queue, priority,
           CASE WHEN due > now THEN 'scheduled' ELSE 'available' END,
           0, max_attempts, timeout_ms, due, now, unique_key, unique_digest, metadata, limit_key
    FROM resolved
    WHERE NOT EXISTS (SELECT 1 FROM existing)
    RETURNING queue, state
),
available AS (
    SELECT DISTINCT queue FROM inserted WHERE state = 'available'
),
notified AS (
    SELECT pg_notify({channel}, a.queue)
    FROM available AS a
    WHERE $12::boolean
)
SELECT (SELECT id FROM existing) AS duplicate,
       (SELECT array_agg(queue) FROM available) AS available,
       (SELECT count(*) FROM notified) AS notified
