-- haul: the jobs table and the queues table.
--
-- Migrations run with `search_path` set to the configured schema (default `haul`),
-- so names here are unqualified. This file is append-only: change the schema with a
-- new migration, never by editing this one (sqlx checks the checksum).

CREATE TABLE jobs (
    id                  uuid        PRIMARY KEY,
    kind                text        NOT NULL,
    args                jsonb       NOT NULL,
    queue               text        NOT NULL,
    priority            smallint    NOT NULL DEFAULT 0,
    state               text        NOT NULL,
    attempt             integer     NOT NULL DEFAULT 0,
    max_attempts        integer     NOT NULL,
    timeout_ms          bigint,
    run_at              timestamptz NOT NULL,
    created_at          timestamptz NOT NULL,
    attempted_at        timestamptz,
    finished_at         timestamptz,
    cancel_requested_at timestamptz,
    errors              jsonb       NOT NULL DEFAULT '[]'::jsonb,
    lease_token         uuid,
    lease_expires_at    timestamptz,
    claimed_by          text,
    CONSTRAINT jobs_state_check CHECK (
        state IN ('scheduled', 'available', 'running', 'retryable', 'completed', 'discarded', 'cancelled')
    ),
    CONSTRAINT jobs_args_is_object CHECK (jsonb_typeof(args) = 'object'),
    CONSTRAINT jobs_errors_is_array CHECK (jsonb_typeof(errors) = 'array'),
    CONSTRAINT jobs_attempt_check CHECK (attempt >= 0),
    CONSTRAINT jobs_max_attempts_check CHECK (max_attempts >= 1)
);

-- The hot index: only runnable jobs, in claim order within a queue.
CREATE INDEX jobs_available_idx ON jobs (queue, priority, run_at, id) WHERE state = 'available';

-- Maintenance: due scheduled/retryable jobs, expired leases, prunable finished jobs.
CREATE INDEX jobs_due_idx ON jobs (run_at) WHERE state IN ('scheduled', 'retryable');
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_finished_idx ON jobs (state, finished_at) WHERE finished_at IS NOT NULL;

-- Operators: list by queue and state in id order.
CREATE INDEX jobs_queue_state_idx ON jobs (queue, state, id);

CREATE TABLE queues (
    name       text        PRIMARY KEY,
    paused     boolean     NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);
