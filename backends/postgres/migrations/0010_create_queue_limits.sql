-- haul: the limits every worker obeys, one row per limited queue (see
-- `haul_core::limits`). A queue without a row is unlimited: storing limits that limit
-- nothing deletes the queue's row.
--
-- `concurrency` caps the queue's running jobs across every worker: claims of a limited
-- queue lock its row (`FOR UPDATE`), which serializes them, and count its running jobs
-- before claiming (`queries/claim_limited.sql`). The unlimited claims read the table
-- once per statement and claim nothing when one of their queues has a row with a
-- concurrency here. Each limit is
-- a nullable column (NULL: that limit is not set), so later limits are new columns.
--
-- Queue names are `COLLATE "C"`: listed in byte order, as every backend lists them.
-- The table holds one small row per limited queue: it needs no other index.
CREATE TABLE queue_limits (
    queue       text COLLATE "C" PRIMARY KEY,
    concurrency integer,
    CONSTRAINT queue_limits_concurrency_check CHECK (concurrency IS NULL OR concurrency > 0)
);
