-- claim.lua: claims up to `limit` available jobs of the unpaused queue groups, in
-- priority, then run_at, then id order, after promoting their due scheduled and
-- retryable jobs. A queue with a concurrency limit gives at most its limit minus its
-- running jobs (expired leases included, until rescued); a queue with a limit per key
-- gives a job with a limit key only while its key's running jobs, with those this
-- claim takes before it, are under that limit, looking at no more than `scan` of its
-- available jobs. Its other jobs stay available, and the other queues fill the rest.
--
-- KEYS: 10 keys per queue group (see lib.lua); no global key.
-- ARGV: the common head (lib.lua), then: limit, lease (µs), worker id, the most jobs to
--       promote per set, scan (haul_core::KEY_LIMIT_SCAN), then `limit` fresh lease
--       tokens.
-- Returns: the claimed jobs in claim order, each as its HGETALL field/value list.
-- Effects: each claimed job is `running` with attempt + 1, attempted_at = now,
--       lease_token, lease_expires_at = now + lease and claimed_by set, and moves from
--       the available set to the running set (scored by its lease deadline); a job
--       with a limit key adds 1 to its key's count in the group's running-per-key
--       hash, whatever the queue's limits. A wake-up is sent for a queue whose
--       promoted jobs are not all claimed, unless its limits keep them waiting (the
--       release that frees a slot wakes it).
-- Cost: a queue without a limit per key reads the head of its available set, as many
--       members as it may give. A queue with one reads its available set in pages (the
--       first as large as it may give, each next one twice the last) until it has
--       found its jobs or looked at `scan`: per page, one HGET of each job's limit key
--       and one HMGET of the running counts of the keys not met before.

local now, channel, _, groups, first = read_head()
local limit, lease, worker = tonumber(ARGV[first]), tonumber(ARGV[first + 1]), ARGV[first + 2]
local promote_limit, scan, tokens = tonumber(ARGV[first + 3]), tonumber(ARGV[first + 4]), first + 5
local deadline = clamp(now + lease)

-- Adds the first `take` members of the group's available set to `candidates`.
local function head_candidates(group, take, candidates)
  local top = redis.call('ZRANGE', group.available, 0, take - 1, 'WITHSCORES')
  for j = 1, #top, 2 do
    candidates[#candidates + 1] = { tonumber(top[j + 1]), top[j], group }
  end
end

-- The limit keys (false: none) of the jobs of `members` (a WITHSCORES page), and the
-- running counts of the keys among them that `counts` does not hold yet, added to it.
local function read_keys(group, members, counts)
  local keys, unknown = {}, {}
  for j = 1, #members, 2 do
    local limit_key = redis.call('HGET', group.prefix .. member_id(members[j]), 'limit_key')
    keys[#keys + 1] = limit_key
    if limit_key and not counts[limit_key] then
      counts[limit_key] = 0
      unknown[#unknown + 1] = limit_key
    end
  end
  if #unknown > 0 then
    local running = redis.call('HMGET', group.key_running, unpack(unknown))
    for j, limit_key in ipairs(unknown) do
      counts[limit_key] = tonumber(running[j] or '0')
    end
  end
  return keys
end

-- Adds to `candidates` the first `take` available jobs of a group with a limit per
-- key whose keys have room, counting each one taken against its key, among at most
-- `scan` members. Returns how many it added.
local function key_limited_candidates(group, take, candidates)
  local counts, found, seen, page = {}, 0, 0, take
  while found < take and seen < scan do
    local n = math.min(page, scan - seen)
    local members = redis.call('ZRANGE', group.available, seen, seen + n - 1, 'WITHSCORES')
    local keys = read_keys(group, members, counts)
    for j, limit_key in ipairs(keys) do
      local room = true
      if limit_key then
        room = counts[limit_key] < group.key_concurrency
        if room then counts[limit_key] = counts[limit_key] + 1 end
      end
      if room then
        candidates[#candidates + 1] = { tonumber(members[2 * j]), members[2 * j - 1], group }
        found = found + 1
        if found == take then break end
      end
    end
    if #members < 2 * n then break end
    seen, page = seen + n, page * 2
  end
  return found
end

-- The value of `name` in a HGETALL field/value list, or nil.
local function field(fields, name)
  for j = 1, #fields, 2 do
    if fields[j] == name then return fields[j + 1] end
  end
  return nil
end

local candidates = {}
for _, group in ipairs(groups) do
  if redis.call('EXISTS', group.paused) == 0 then
    promote(group, now, promote_limit)
    read_limits(group)
    local take = limit
    if group.concurrency then
      take = math.min(limit, group.concurrency - redis.call('ZCARD', group.running))
    end
    if take > 0 then
      if group.key_concurrency then
        -- Fewer than it may give: what is left waits for a key's slot (or is not there),
        -- once every job it found is claimed (the merge below may leave some).
        group.found = key_limited_candidates(group, take, candidates)
        group.held_back = group.found < take
      else
        head_candidates(group, take, candidates)
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
  local fields = redis.call('HGETALL', key)
  local limit_key = field(fields, 'limit_key')
  if limit_key then redis.call('HINCRBY', group.key_running, limit_key, 1) end
  group.claimed = (group.claimed or 0) + 1
  claimed[#claimed + 1] = fields
end

for _, group in ipairs(groups) do
  local all_found_claimed = group.held_back and (group.claimed or 0) >= group.found
  if group.woken and (all_found_claimed or redis.call('ZCARD', group.available) == 0
      or (group.concurrency and redis.call('ZCARD', group.running) >= group.concurrency)) then
    group.woken = false
  end
end
publish(channel, groups)
return claimed
