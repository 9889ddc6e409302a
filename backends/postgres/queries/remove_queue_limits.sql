-- Removes a queue's limits: its claims are unlimited again.
--
-- $1 queue  text
DELETE FROM {schema}.queue_limits WHERE queue = $1::text
