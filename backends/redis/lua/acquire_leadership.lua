-- acquire_leadership.lua: takes the prefix's leadership, or renews it.
--
-- KEYS: [1] the leadership (hash: worker_id, term, expires_at in µs; after a release
--       only `term` is left, so terms keep counting up).
-- ARGV: [1] clock override in µs ('' = the server's TIME), [2] the worker id asking,
--       [3] how long (µs) the leadership lasts without a renewal.
-- Returns: {worker_id, term, expires_at} of the leadership the asker now holds, or nil
--       when another worker holds one that has not lapsed (expires_at after now).
-- Effects: held by the asker and not lapsed: expires_at becomes now + ARGV[3] (clamped),
--       same term. Free (never held, released) or lapsed, whoever held it: the asker
--       holds it under the stored term + 1 (1 the first time), until now + ARGV[3].
--       Held by another and not lapsed: nothing.

local now = read_clock(ARGV[1])
local worker = ARGV[2]
local held = redis.call('HMGET', KEYS[1], 'worker_id', 'term', 'expires_at')
local term = 0
if held[2] then
  term = tonumber(held[2])
  if not term then return redis.error_reply('haul: the leadership term is not a number: ' .. held[2]) end
end
local live = held[1] and held[3] and tonumber(held[3]) > now
if live and held[1] ~= worker then return false end
if not live then term = term + 1 end

local expires_at = clamp(now + tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'worker_id', worker, 'term', num(term), 'expires_at', num(expires_at))
return { worker, num(term), num(expires_at) }
