-- Deletes a schedule's row; an unknown name deletes nothing.
--
-- $1 name  text
--
-- Returns the deleted row's name, or no row.
DELETE FROM {schema}.periodic WHERE name = $1::text RETURNING name
