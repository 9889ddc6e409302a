-- set_limits.lua: stores or removes the limits of one queue.
--
-- KEYS: [1] the queue's limits; [2] the index of the queues with limits, on one server
--       only (on a cluster it lives in another slot, and the caller updates it after
--       this script).
-- ARGV: [1] the pub/sub channel of wake-ups, [2] the queue name, then the limits, each
--       '' for none: [3] the concurrency limit, [4] the concurrency limit per key,
--       [5] the rate limit's starts and [6] its period in ms, [7] the rate limit per
--       key's starts and [8] its period in ms (all '': remove the queue's limits).
-- Returns: 1.
-- Effects: the limits hash is replaced (deleted when removed; fields `concurrency`,
--       `key_concurrency`, `rate_starts`, `rate_period_ms`, `key_rate_starts`,
--       `key_rate_period_ms`, each present when set) and, with KEYS[2], the queue is
--       added to (removed from) the index. A wake-up for the queue is sent: a raised or
--       removed limit may let claims take its available jobs.

local FIELDS = { 'concurrency', 'key_concurrency', 'rate_starts', 'rate_period_ms', 'key_rate_starts',
  'key_rate_period_ms' }

redis.call('DEL', KEYS[1])
local stored = false
for j, name in ipairs(FIELDS) do
  local value = ARGV[2 + j]
  if value ~= '' then
    redis.call('HSET', KEYS[1], name, value)
    stored = true
  end
end
if KEYS[2] then
  if stored then
    redis.call('ZADD', KEYS[2], 0, ARGV[2])
  else
    redis.call('ZREM', KEYS[2], ARGV[2])
  end
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
