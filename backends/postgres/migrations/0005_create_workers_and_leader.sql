-- haul: the cluster layer, a registry of live workers and one leader per schema.
--
-- Each running worker upserts its row on every beat; a row whose `expires_at` has
-- passed is a worker that stopped beating: it is never listed, and beats delete such
-- rows once they have been expired for an hour. `expires_at` is deliberately not
-- indexed: it changes on every beat, and leaving it out of every index keeps beats
-- HOT updates (the table holds one row per worker, scanned whole when swept).
--
-- Ids are `COLLATE "C"`: listed in byte order, as every backend lists them.
CREATE TABLE workers (
    id           text COLLATE "C" PRIMARY KEY,
    host         text        NOT NULL,
    pid          bigint      NOT NULL,
    queues       text[]      NOT NULL,
    concurrency  bigint      NOT NULL,
    held         bigint      NOT NULL,
    started_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    CONSTRAINT workers_counts_check CHECK (pid >= 0 AND concurrency >= 0 AND held >= 0)
);

-- At most one row (the primary key is the constant `true`), inserted by the first
-- acquisition and kept afterwards. `term` goes up by one each time the lead changes
-- hands or is taken again after it lapsed or was released, and survives both. A
-- released lead has no holder: `worker_id` and `expires_at` are NULL together.
CREATE TABLE leader (
    singleton  boolean     PRIMARY KEY DEFAULT true,
    worker_id  text COLLATE "C",
    term       bigint      NOT NULL,
    expires_at timestamptz,
    CONSTRAINT leader_singleton_check CHECK (singleton),
    CONSTRAINT leader_term_check CHECK (term >= 1),
    CONSTRAINT leader_holder_check CHECK ((worker_id IS NULL) = (expires_at IS NULL))
);
