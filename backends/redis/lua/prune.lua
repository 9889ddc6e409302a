-- prune.lua: deletes up to `limit` finished jobs whose finish time is at or before
-- the cutoff of their state, oldest first.
--
-- KEYS: [1] the jobs index, [2] the queue set, [3] the unique index (when ARGV[3] = 3;
--       absent when 0, on a cluster, where the caller removes the returned members
--       from the indexes), then 8 keys per queue group (see lib.lua).
-- ARGV: the common head (lib.lua), then: limit, and how long (µs) completed, discarded
--       and cancelled jobs are kept; a job goes once finished_at <= now - that.
-- Returns: two values per deleted job: its jobs-index member '<id>:<queue>', and its
--       unique-index member '<digest>:<id>:<queue>' ('' when it has no unique key; for
--       a job stored before unique keys were digested, which has no `unique_digest`,
--       the member of that layout, '<key length>:<key>:<id>:<queue>').
-- Effects: each job hash is deleted and its id removed from its finished set (and
--       from the jobs index and the unique index).

local now, _, globals, groups, first = read_head()
local limit = tonumber(ARGV[first])
local cutoffs = {
  completed = num(clamp(now - tonumber(ARGV[first + 1]))),
  discarded = num(clamp(now - tonumber(ARGV[first + 2]))),
  cancelled = num(clamp(now - tonumber(ARGV[first + 3]))),
}
local index, uniques
if globals == 3 then index, uniques = KEYS[1], KEYS[3] end

local candidates = {}
for _, group in ipairs(groups) do
  for _, state in ipairs({ 'completed', 'discarded', 'cancelled' }) do
    local found = redis.call('ZRANGEBYSCORE', group[state], '-inf', cutoffs[state], 'WITHSCORES', 'LIMIT', 0, limit)
    for j = 1, #found, 2 do
      candidates[#candidates + 1] = { tonumber(found[j + 1]), found[j], group, state }
    end
  end
end
table.sort(candidates, function(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] end
  return a[2] < b[2]
end)

local deleted = {}
for j = 1, math.min(limit, #candidates) do
  local candidate = candidates[j]
  local id, group = candidate[2], candidate[3]
  local unique = redis.call('HMGET', group.prefix .. id, 'unique_key', 'unique_digest')
  local member_of_key = ''
  if unique[2] then
    member_of_key = unique_member(unique[2], id, group.queue)
  elseif unique[1] then
    member_of_key = string.len(unique[1]) .. ':' .. unique[1] .. ':' .. id .. ':' .. group.queue
  end
  redis.call('DEL', group.prefix .. id)
  redis.call('ZREM', group[candidate[4]], id)
  local member = id .. ':' .. group.queue
  if index then redis.call('ZREM', index, member) end
  if uniques and member_of_key ~= '' then redis.call('ZREM', uniques, member_of_key) end
  deleted[#deleted + 1] = member
  deleted[#deleted + 1] = member_of_key
end
return deleted
