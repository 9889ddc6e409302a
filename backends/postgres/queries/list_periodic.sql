-- Every schedule's row, in name byte order.
SELECT name, spec, last_tick, next_tick, updated_at
FROM {schema}.periodic
ORDER BY name COLLATE "C"
