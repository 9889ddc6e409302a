-- Saves what a scheduler did with a schedule, in one statement: atomic under
-- concurrency. The first save inserts the row; later ones update it unless they are
-- stale (the stored spec, and a last tick before the stored one), so the stored last
-- tick never moves back. A save of another spec (a changed schedule) is never stale. A save that is not stale takes the spec and the next tick, keeps the
-- later of the two last ticks (`greatest` ignores a NULL: a save without a last tick
-- keeps the stored one), and is stamped at now. Two concurrent first saves are
-- serialized by the primary key: the second updates the first's row, and the WHERE
-- is checked against the row as the first left it.
--
-- $1 now        timestamptz  clock override (NULL: the database clock)
-- $2 name       text
-- $3 spec       text
-- $4 last_tick  timestamptz  NULL: keep the stored one
-- $5 next_tick  timestamptz
INSERT INTO {schema}.periodic AS p (name, spec, last_tick, next_tick, updated_at)
VALUES ($2::text, $3::text, $4::timestamptz, $5::timestamptz, coalesce($1::timestamptz, now()))
ON CONFLICT (name) DO UPDATE
SET spec       = excluded.spec,
    last_tick  = greatest(p.last_tick, excluded.last_tick),
    next_tick  = excluded.next_tick,
    updated_at = excluded.updated_at
WHERE excluded.last_tick IS NULL
   OR p.last_tick IS NULL
   OR excluded.last_tick >= p.last_tick
   OR excluded.spec <> p.spec
