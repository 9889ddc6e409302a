-- reserve.lua: on a cluster, indexes a batch before enqueue.lua stores its jobs
-- queue by queue (the jobs index, the queue set and the unique index live in the
-- prefix's own slot).
--
-- KEYS: [1] the jobs index, [2] the queue set, [3] the unique index.
-- ARGV: [1] the number of queues Q, [2 .. 1+Q] the queue names, then C, the number of
--       uniqueness checks, and per check a unique-index member prefix '<digest>:',
--       n and the n members the client saw (as in enqueue.lua); then U and U
--       unique-index members '<digest>:<id>:<queue>' to add; then the batch's
--       jobs-index members '<id>:<queue>'.
-- Returns: {} when indexed; {'duplicate', id} when an id is indexed already;
--       {'changed'} when a checked prefix has a member the client did not see (nothing
--       is written in these two cases).
-- Effects: the members are added to the jobs index and the unique index, and the
--       queues to the queue set.

local queues = tonumber(ARGV[1])
local changed, at = unique_checks_changed(KEYS[3], 2 + queues)
local uniques = tonumber(ARGV[at])
local first_unique = at + 1
local first_job = at + 1 + uniques

for j = first_job, #ARGV do
  local id = string.sub(ARGV[j], 1, 36)
  if #redis.call('ZRANGEBYLEX', KEYS[1], '[' .. id .. ':', '[' .. id .. ';', 'LIMIT', 0, 1) > 0 then
    return { 'duplicate', id }
  end
end
if changed then
  return { 'changed' }
end
for j = first_job, #ARGV do
  redis.call('ZADD', KEYS[1], 0, ARGV[j])
end
for j = first_unique, first_job - 1 do
  redis.call('ZADD', KEYS[3], 0, ARGV[j])
end
for j = 2, 1 + queues do
  redis.call('SADD', KEYS[2], ARGV[j])
end
return {}
