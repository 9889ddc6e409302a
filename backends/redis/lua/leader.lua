-- leader.lua: reads the current leadership (read only).
--
-- KEYS: [1] the leadership (hash: worker_id, term, expires_at).
-- ARGV: [1] clock override in µs ('' = the server's TIME).
-- Returns: {worker_id, term, expires_at}, or nil when no worker holds it or its
--       expires_at is at or before now (lapsed).
-- Effects: none.

local now = read_clock(ARGV[1])
local held = redis.call('HMGET', KEYS[1], 'worker_id', 'term', 'expires_at')
if not held[1] or not held[3] or tonumber(held[3]) <= now then return false end
return { held[1], held[2], held[3] }
