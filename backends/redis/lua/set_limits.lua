-- set_limits.lua: stores or removes the limits of one queue.
--
-- KEYS: [1] the queue's limits; [2] the index of the queues with limits, on one server
--       only (on a cluster it lives in another slot, and the caller updates it after
--       this script).
-- ARGV: [1] the pub/sub channel of wake-ups, [2] the queue name, [3] the concurrency
--       limit, [4] the concurrency limit per key ('' for none; both '': remove the
--       queue's limits).
-- Returns: 1.
-- Effects: the limits hash is replaced (deleted when removed) and, with KEYS[2], the
--       queue is added to (removed from) the index. A wake-up for the queue is sent:
--       a raised or removed limit may let claims take its available jobs.

redis.call('DEL', KEYS[1])
if ARGV[3] ~= '' or ARGV[4] ~= '' then
  if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'concurrency', ARGV[3]) end
  if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'key_concurrency', ARGV[4]) end
  if KEYS[2] then redis.call('ZADD', KEYS[2], 0, ARGV[2]) end
elseif KEYS[2] then
  redis.call('ZREM', KEYS[2], ARGV[2])
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
