-- remove_worker.lua: deletes one worker's record from the registry (an unknown id
-- is not an error).
--
-- KEYS: [1] the registry (hash), [2] the registry's expiry index (sorted set).
-- ARGV: [1] the worker id.
-- Returns: 1 when a record was deleted, 0 when there was none.
-- Effects: the id's field and its expiry member are deleted.

local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return removed
