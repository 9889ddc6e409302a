-- Lists jobs matching a filter, in id (creation) order. A NULL filter, or an empty $2,
-- matches everything. The ids come from matching_ids.sql (one ordered index walk per
-- state, merged); run it unprepared, as that fragment says.
--
-- $1 queue          text
-- $2 states         text[]
-- $3 kind           text
-- $4 created_from   timestamptz  inclusive
-- $5 created_until  timestamptz  exclusive
-- $6 after          uuid         cursor: only ids greater than this
-- $7 limit          bigint
--
-- Returns the matching rows.
SELECT j.*
FROM (
{matching_ids}
) AS m
JOIN {schema}.jobs AS j ON j.id = m.id
ORDER BY j.id
