-- haul: periodic jobs, one row per schedule: what the leader last did with it.
--
-- `last_tick` is the latest tick dealt with (enqueued, skipped as missed, or the last
-- tick before the schedule was first seen); saves never move it back (see
-- `queries/save_periodic.sql`). `next_tick` is what the saving scheduler computed,
-- for people reading the table. NULL ticks are not known yet.
--
-- Names are `COLLATE "C"`: listed in byte order, as every backend lists them. The
-- table holds one row per schedule, written once per tick: it needs no other index.
CREATE TABLE periodic (
    name       text COLLATE "C" PRIMARY KEY,
    spec       text        NOT NULL,
    last_tick  timestamptz,
    next_tick  timestamptz,
    updated_at timestamptz NOT NULL
);
