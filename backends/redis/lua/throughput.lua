-- throughput.lua: reads the per-queue, per-minute counts from a minute on (read only).
--
-- KEYS: [1] the counts (hash, see record_throughput.lua), [2] their index (sorted set:
--       score = minute, member = '<minute>:<queue>').
-- ARGV: [1] the first minute wanted, in whole seconds since the Unix epoch.
-- Returns: a flat array, per member of the index whose minute is at or after ARGV[1]
--       (in minute order): the member, its completed count, its failed count (false,
--       a nil reply, for a field that is missing).
-- Effects: none.

local members = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '+inf')
local found = {}
local chunk = {}
local function flush()
  if #chunk == 0 then return end
  local counts = redis.call('HMGET', KEYS[1], unpack(chunk))
  for i = 1, #chunk, 2 do
    found[#found + 1] = string.sub(chunk[i], 3)
    found[#found + 1] = counts[i]
    found[#found + 1] = counts[i + 1]
  end
  chunk = {}
end
for _, member in ipairs(members) do
  chunk[#chunk + 1] = 'c:' .. member
  chunk[#chunk + 1] = 'f:' .. member
  if #chunk >= 1000 then flush() end
end
flush()
return found
