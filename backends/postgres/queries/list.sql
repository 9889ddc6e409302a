-- Lists jobs matching the filters, in id (creation) order. A NULL or empty filter
-- matches everything.
--
-- $1 queue   text
-- $2 states  text[]
-- $3 kind    text
-- $4 after   uuid    cursor: only ids greater than this
-- $5 limit   bigint
--
-- Returns the matching rows.
SELECT *
FROM {schema}.jobs
WHERE ($1::text IS NULL OR queue = $1::text)
  AND (cardinality($2::text[]) = 0 OR state = ANY ($2::text[]))
  AND ($3::text IS NULL OR kind = $3::text)
  AND ($4::uuid IS NULL OR id > $4::uuid)
ORDER BY id
LIMIT $5
