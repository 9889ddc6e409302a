-- list_workers.lua: reads the live workers' records (read only).
--
-- KEYS: [1] the registry (hash: worker id -> record), [2] the registry's expiry index
--       (sorted set: score = expires_at).
-- ARGV: [1] clock override in µs ('' = the server's TIME).
-- Returns: the records (JSON text, as beat_worker.lua wrote them) whose expires_at is
--       after now, in expiry order (the client sorts them by id).
-- Effects: none; ended records are left to beat_worker.lua.

local now = read_clock(ARGV[1])
local records = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. num(now), '+inf')) do
  local record = redis.call('HGET', KEYS[1], id)
  if record then records[#records + 1] = record end
end
return records
