-- record_throughput.lua: adds worker-counted attempt endings to the per-queue,
-- per-minute counts, then drops the minutes older than the retention before now.
--
-- KEYS: [1] the counts (hash: 'c:<minute>:<queue>' -> completed attempts,
--       'f:<minute>:<queue>' -> failed attempts), [2] their index (sorted set:
--       score = minute, member = '<minute>:<queue>'), both in the prefix's slot.
--       <minute> is the start of the minute in whole seconds since the Unix epoch.
-- ARGV: [1] clock override in µs ('' = the server's TIME), [2] the retention in µs,
--       [3] N, then per sample (merged by the client: one per queue and minute):
--       '<minute>:<queue>', the minute, completed, failed (integers, at most 2^63 - 1).
-- Returns: the number of minutes of a queue dropped.
-- Effects: each sample's counts are added to its two fields (created at 0, so a
--       sample of zeros is kept too), saturating at 2^63 - 1 (a field that holds
--       no integer, written by hand, is replaced by the count); its member is added
--       to the index. Then every member whose minute is before the minute holding
--       now - retention is removed with its two fields.

local MAX_COUNT = '9223372036854775807'

local function add(hash, field, count)
  local added = redis.pcall('HINCRBY', hash, field, count)
  if type(added) == 'table' and added.err then
    -- HINCRBY fails on an overflow and on a value that is no integer.
    local stored = redis.call('HGET', hash, field)
    if stored and string.match(stored, '^%d+$') then
      redis.call('HSET', hash, field, MAX_COUNT)
    else
      redis.call('HSET', hash, field, count)
    end
  end
end

local now = read_clock(ARGV[1])
local retention = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local at = 4
for _ = 1, n do
  local member, minute, completed, failed = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  add(KEYS[1], 'c:' .. member, completed)
  add(KEYS[1], 'f:' .. member, failed)
  redis.call('ZADD', KEYS[2], minute, member)
  at = at + 4
end

-- The first minute kept, in seconds. The quotient is exact enough for floor(): an
-- instant is an integer of at most 2^53 µs, so a quotient that is not a whole number
-- is at least 1/60,000,000 from one, more than half the spacing of doubles there.
local oldest_kept = math.floor((now - retention) / 60000000) * 60
local dropped = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. num(oldest_kept))
local fields = {}
for _, member in ipairs(dropped) do
  fields[#fields + 1] = 'c:' .. member
  fields[#fields + 1] = 'f:' .. member
  if #fields >= 1000 then
    redis.call('HDEL', KEYS[1], unpack(fields))
    fields = {}
  end
end
if #fields > 0 then redis.call('HDEL', KEYS[1], unpack(fields)) end
if #dropped > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. num(oldest_kept)) end
return #dropped
