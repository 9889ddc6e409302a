-- beat_worker.lua: records or refreshes one worker in the registry, and deletes up to
-- 100 records that have ended (the registry stays bounded without a sweeper).
--
-- KEYS: [1] the registry (hash: worker id -> record), [2] the registry's expiry index
--       (sorted set: score = the record's expires_at, member = the worker id); both
--       in the prefix's slot.
-- ARGV: [1] clock override in µs ('' = the server's TIME), [2] the worker id, [3] how
--       long (µs) the record lives without another beat, [4] the record's other
--       fields, a non-empty JSON object written by the client (id, host, pid, queues,
--       concurrency, held, started_at in µs).
-- Returns: 1.
-- Effects: the records whose expires_at is at or before now (at most 100, those that
--       ended first) are deleted from both keys; then the worker's record becomes
--       ARGV[4] with `last_seen_at` (now) and `expires_at` (now + ARGV[3], clamped)
--       put first, and its expiry score that expires_at.

local now = read_clock(ARGV[1])
local id = ARGV[2]
local expires_at = clamp(now + tonumber(ARGV[3]))

local ended = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', num(now), 'LIMIT', 0, 100)
if #ended > 0 then
  redis.call('HDEL', KEYS[1], unpack(ended))
  redis.call('ZREM', KEYS[2], unpack(ended))
end

local record = '{"last_seen_at":' .. num(now) .. ',"expires_at":' .. num(expires_at) .. ',' .. string.sub(ARGV[4], 2)
redis.call('HSET', KEYS[1], id, record)
redis.call('ZADD', KEYS[2], num(expires_at), id)
return 1
