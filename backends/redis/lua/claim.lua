-- claim.lua: claims up to `limit` available jobs of the unpaused queue groups, in
-- priority, then run_at, then id order, after promoting their due scheduled and
-- retryable jobs. A queue with a concurrency limit gives at most its limit minus its
-- running jobs (expired leases included, until rescued); its other jobs stay
-- available, and the other queues fill the rest.
--
-- KEYS: 9 keys per queue group (see lib.lua); no global key.
-- ARGV: the common head (lib.lua), then: limit, lease (µs), worker id, the most jobs to
--       promote per set, then `limit` fresh lease tokens.
-- Returns: the claimed jobs in claim order, each as its HGETALL field/value list.
-- Effects: each claimed job is `running` with attempt + 1, attempted_at = now,
--       lease_token, lease_expires_at = now + lease and claimed_by set, and moves from
--       the available set to the running set (scored by its lease deadline). A wake-up
--       is sent for a queue whose promoted jobs are not all claimed, unless its
--       concurrency limit keeps them waiting (the release that frees a slot wakes it).

local now, channel, _, groups, first = read_head()
local limit, lease, worker = tonumber(ARGV[first]), tonumber(ARGV[first + 1]), ARGV[first + 2]
local promote_limit, tokens = tonumber(ARGV[first + 3]), first + 4
local deadline = clamp(now + lease)

local candidates = {}
for _, group in ipairs(groups) do
  if redis.call('EXISTS', group.paused) == 0 then
    promote(group, now, promote_limit)
    local take = limit
    group.concurrency = concurrency_limit(group)
    if group.concurrency then
      take = math.min(limit, group.concurrency - redis.call('ZCARD', group.running))
    end
    if take > 0 then
      local top = redis.call('ZRANGE', group.available, 0, take - 1, 'WITHSCORES')
      for j = 1, #top, 2 do
        candidates[#candidates + 1] = { tonumber(top[j + 1]), top[j], group }
      end
    end
  end
end
if #groups > 1 then
  table.sort(candidates, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
end

local claimed = {}
for j = 1, math.min(limit, #candidates) do
  local candidate = candidates[j]
  local group, id = candidate[3], member_id(candidate[2])
  local key = group.prefix .. id
  redis.call('ZREM', group.available, candidate[2])
  redis.call('HINCRBY', key, 'attempt', 1)
  redis.call('HSET', key, 'state', 'running', 'attempted_at', num(now), 'lease_token', ARGV[tokens + j - 1],
    'lease_expires_at', num(deadline), 'claimed_by', worker)
  redis.call('ZADD', group.running, num(deadline), id)
  claimed[#claimed + 1] = redis.call('HGETALL', key)
end

for _, group in ipairs(groups) do
  if group.woken and (redis.call('ZCARD', group.available) == 0
      or (group.concurrency and redis.call('ZCARD', group.running) >= group.concurrency)) then
    group.woken = false
  end
end
publish(channel, groups)
return claimed
