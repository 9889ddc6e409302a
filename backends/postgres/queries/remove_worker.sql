-- Deletes a worker's row (at its shutdown); an unknown id deletes nothing.
--
-- $1 id  text
DELETE FROM {schema}.workers WHERE id = $1::text
