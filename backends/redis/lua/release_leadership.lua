-- release_leadership.lua: gives the leadership up, if the worker still holds it under
-- the term given.
--
-- KEYS: [1] the leadership (hash: worker_id, term, expires_at).
-- ARGV: [1] the worker id, [2] the term (decimal).
-- Returns: 1 when released, 0 when held by another worker or under another term (or
--       not held: nothing is done then).
-- Effects: worker_id and expires_at are deleted; `term` stays, so the next holder's
--       term is one more.

local held = redis.call('HMGET', KEYS[1], 'worker_id', 'term')
if held[1] ~= ARGV[1] or held[2] ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], 'worker_id', 'expires_at')
return 1
