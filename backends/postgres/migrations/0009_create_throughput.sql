-- haul: per-queue throughput, one row per queue and minute: the attempts that ended in
-- that minute, as workers counted them.
--
-- Every worker adds its counts every few seconds (`queries/record_throughput.sql`):
-- concurrent adds to one row are serialized by its row lock, and the counts are
-- summed, never overwritten. `minute` is the start of a minute in UTC (zero seconds).
-- The same statement deletes the rows older than the retention (two hours) before its
-- `now`, so the table holds about 120 rows per active queue; `throughput_minute_idx`
-- finds those rows without walking every queue, and serves the readers' range of
-- recent minutes too. The counts are in no index, so the adds are HOT updates.
--
-- Queue names are `COLLATE "C"`: listed in byte order, as every backend lists them.
CREATE TABLE throughput (
    queue     text COLLATE "C" NOT NULL,
    minute    timestamptz NOT NULL,
    completed bigint      NOT NULL,
    failed    bigint      NOT NULL,
    PRIMARY KEY (queue, minute),
    CONSTRAINT throughput_counts_check CHECK (completed >= 0 AND failed >= 0)
);

CREATE INDEX throughput_minute_idx ON throughput (minute);
