-- reserve.lua: on a cluster, indexes a batch before enqueue.lua stores its jobs
-- queue by queue (the jobs index and the queue set live in the prefix's own slot).
--
-- KEYS: [1] the jobs index, [2] the queue set.
-- ARGV: [1] the number of queues Q, [2 .. 1+Q] the queue names, then the batch's
--       jobs-index members '<id>:<queue>'.
-- Returns: {} when indexed; {'duplicate', id} when an id is indexed already (nothing
--       is written then).
-- Effects: the members are added to the jobs index and the queues to the queue set.

local queues = tonumber(ARGV[1])
for j = 2 + queues, #ARGV do
  local id = string.sub(ARGV[j], 1, 36)
  if #redis.call('ZRANGEBYLEX', KEYS[1], '[' .. id .. ':', '[' .. id .. ';', 'LIMIT', 0, 1) > 0 then
    return { 'duplicate', id }
  end
end
for j = 2 + queues, #ARGV do
  redis.call('ZADD', KEYS[1], 0, ARGV[j])
end
for j = 2, 1 + queues do
  redis.call('SADD', KEYS[2], ARGV[j])
end
return {}
