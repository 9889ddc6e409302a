-- lib.lua: helpers every haul script starts with (the crate prepends this file to
-- each script before loading it, so a script's SHA covers both).
--
-- The common head of ARGV, read by read_head(), is the same for every per-queue script:
--   ARGV[1]  clock override in µs since the Unix epoch ('' = the server's TIME)
--   ARGV[2]  the pub/sub channel of wake-ups (its messages are queue names, and
--            'cancel:<id>' for a cancel request of a running job)
--   ARGV[3]  how many global keys come first in KEYS (0, or 3: jobs index, queue set,
--            unique index)
--   ARGV[4]  G, the number of queue groups
--   ARGV[5 .. 4+2G]  per group: the queue name, the prefix of its job hash keys
-- KEYS: the global keys, then 11 keys per group, in this order: the sets of
-- scheduled, available, running, retryable, completed, discarded and cancelled jobs,
-- the paused flag, the queue's limits (a hash, fields `concurrency`,
-- `key_concurrency`, `rate_starts` and `rate_period_ms`, `key_rate_starts` and
-- `key_rate_period_ms`; absent when the queue has none), the running jobs per limit
-- key (a hash, limit key -> how many of the queue's running jobs have it; a key
-- without running jobs has no field, and a queue without any has no hash), then the
-- queue's recent starts (a sorted set of lease tokens scored by their claim's time in
-- ms; absent: no start). The recent starts of one limit key are in the sorted set
-- named by key_starts() below, in the same slot. The script-specific ARGV starts
-- after the head.
--
-- A count or a priority read from a job hash that is not a number (a hash written by
-- hand) counts as 0, so that no transition stops halfway through a job: a failure or
-- a rescue of a job whose `max_attempts` does not read discards it, and a job whose
-- `priority` does not read is available at priority 0.
--
-- Instants are integers in µs since the Unix epoch, clamped to ±(2^53 - 1) so that
-- every one of them is an exact Lua number; they are written with num(), never with
-- tostring() (which rounds to 14 digits).

local MAX_TIME = 9007199254740991
local GROUP_SIZE = 11

-- The text of the last number num() formatted: scripts format the same instant
-- (now, a lease deadline) once per job, and formatting is costly next to a lookup.
local num_last, num_text

local function num(n)
  if n ~= num_last then
    num_last, num_text = n, string.format('%.0f', n)
  end
  return num_text
end

local function clamp(t)
  if t > MAX_TIME then return MAX_TIME end
  if t < -MAX_TIME then return -MAX_TIME end
  return t
end

-- The member of a job in the available set: run_at (16 digits) then the id, so that
-- members of one priority (the score) sort by run_at, then by id.
local function ready_member(run_at, id)
  local t = tonumber(run_at)
  if t < 0 then t = 0 end
  return string.format('%016.0f', t) .. ':' .. id
end

-- The id inside an available-set member.
local function member_id(member)
  return string.sub(member, 18)
end

-- The member of the unique index for job `id` of `queue` whose uniqueness key has the
-- digest `digest` (SHA-256, 64 hex digits, computed by the client): '<digest>:<id>:<queue>'.
local function unique_member(digest, id, queue)
  return digest .. ':' .. id .. ':' .. queue
end

-- The unique-index member of the job whose hash is `key` (job `id` of `queue`), read
-- from its hash: '<digest>:<id>:<queue>', '' when it has no uniqueness key, and for a
-- job stored before unique keys were digested (no `unique_digest` field) the member of
-- that layout, '<key length>:<key>:<id>:<queue>'.
local function stored_unique_member(key, id, queue)
  local unique = redis.call('HMGET', key, 'unique_key', 'unique_digest')
  if unique[2] then return unique_member(unique[2], id, queue) end
  if unique[1] then return string.len(unique[1]) .. ':' .. unique[1] .. ':' .. id .. ':' .. queue end
  return ''
end

-- Reads the uniqueness checks at ARGV[at]: C, then per check a unique-index member
-- prefix '<digest>:', n, and the n members of that prefix the client saw. Returns
-- whether the unique index `uniques` (nil: nothing to compare) has a member under a
-- checked prefix that the client did not see, and the position after the checks.
local function unique_checks_changed(uniques, at)
  local checks = tonumber(ARGV[at])
  at = at + 1
  local changed = false
  for _ = 1, checks do
    local prefix, n = ARGV[at], tonumber(ARGV[at + 1])
    local seen = {}
    for k = 1, n do seen[ARGV[at + 1 + k]] = true end
    at = at + 2 + n
    if uniques then
      for _, member in ipairs(redis.call('ZRANGEBYLEX', uniques, '[' .. prefix, '(' .. prefix .. '\255')) do
        if not seen[member] then changed = true end
      end
    end
  end
  return changed, at
end

-- Sorted-set members gathered for a few large ZADDs: `add_member` appends a score and
-- a member to the buffer of `key` in `buffers` (a table made by the caller), adding
-- them once the buffer holds ZADD_CHUNK values (unpack takes a bounded number), and
-- `flush_members` adds what is left, key by key in the order keys were first met.
local ZADD_CHUNK = 1000

local function add_member(buffers, key, score, member)
  local buffer = buffers[key]
  if not buffer then
    buffer = {}
    buffers[key] = buffer
    buffers[#buffers + 1] = key
  end
  buffer[#buffer + 1] = score
  buffer[#buffer + 1] = member
  if #buffer >= ZADD_CHUNK then
    redis.call('ZADD', key, unpack(buffer))
    buffers[key] = {}
  end
end

local function flush_members(buffers)
  for _, key in ipairs(buffers) do
    local buffer = buffers[key]
    if #buffer > 0 then
      redis.call('ZADD', key, unpack(buffer))
      buffers[key] = {}
    end
  end
end

-- Calls `command` on `key` (false: none) and `items`, at most 1000 items per call.
local function call_chunked(command, key, items)
  for i = 1, #items, 1000 do
    local last = math.min(i + 999, #items)
    if key then
      redis.call(command, key, unpack(items, i, last))
    else
      redis.call(command, unpack(items, i, last))
    end
  end
end

-- Removes `members` (a list) from the sorted set `key`, ZADD_CHUNK at a time; returns
-- how many were there.
local function remove_members(key, members)
  local removed = 0
  for from = 1, #members, ZADD_CHUNK do
    removed = removed + redis.call('ZREM', key, unpack(members, from, math.min(from + ZADD_CHUNK - 1, #members)))
  end
  return removed
end

-- The clock: `override` (µs, from a clock-override argument) unless it is '', else
-- the server's TIME in µs.
local function read_clock(override)
  if override ~= '' then return tonumber(override) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function read_head()
  local now = read_clock(ARGV[1])
  local globals = tonumber(ARGV[3])
  local count = tonumber(ARGV[4])
  local groups = {}
  for g = 1, count do
    local k = globals + (g - 1) * GROUP_SIZE
    groups[g] = {
      queue = ARGV[3 + 2 * g], prefix = ARGV[4 + 2 * g],
      scheduled = KEYS[k + 1], available = KEYS[k + 2], running = KEYS[k + 3], retryable = KEYS[k + 4],
      completed = KEYS[k + 5], discarded = KEYS[k + 6], cancelled = KEYS[k + 7], paused = KEYS[k + 8],
      limits = KEYS[k + 9], key_running = KEYS[k + 10], starts = KEYS[k + 11], woken = false, released = 0,
    }
  end
  return now, ARGV[2], globals, groups, 5 + 2 * count
end

-- Sends one wake-up per queue that got available jobs.
local function publish(channel, groups)
  for _, group in ipairs(groups) do
    if group.woken then redis.call('PUBLISH', channel, group.queue) end
  end
end

-- Whether `state` is one of `allowed`, a comma-separated list of state names such
-- as 'available,discarded' ('' or nil: any state). The operators' one-job scripts
-- (cancel.lua, retry.lua, delete.lua) take it after the job id, so that a bulk call
-- whose filter names states changes only a job that is still in one of them.
local function state_allowed(state, allowed)
  if not allowed or allowed == '' then return true end
  for name in string.gmatch(allowed, '[^,]+') do
    if name == state then return true end
  end
  return false
end

-- Takes a job out of the set of its current state.
local function unindex(group, id, state, run_at)
  if state == 'available' then
    redis.call('ZREM', group.available, ready_member(run_at, id))
  elseif group[state] then
    redis.call('ZREM', group[state], id)
  end
end

local function make_available(group, key, id, priority, run_at)
  redis.call('HSET', key, 'state', 'available', 'run_at', num(run_at))
  redis.call('ZADD', group.available, tonumber(priority) or 0, ready_member(run_at, id))
  group.woken = true
end

-- scheduled or retryable, due at run_at.
local function make_waiting(group, key, id, state, run_at)
  redis.call('HSET', key, 'state', state, 'run_at', num(run_at))
  redis.call('ZADD', group[state], num(run_at), id)
end

-- completed, discarded or cancelled, at now. With `buffers` (see add_member), the job
-- joins its state's set when the caller flushes them.
local function finish(group, key, id, state, now, buffers)
  redis.call('HSET', key, 'state', state, 'finished_at', num(now))
  if buffers then
    add_member(buffers, group[state], num(now), id)
  else
    redis.call('ZADD', group[state], num(now), id)
  end
end

-- Ends the claim of a running job (attempted_at stays). `limit_key` is the job's
-- `limit_key` field (false: none), read by the caller: a job leaving the running set
-- gives back its key's count (the field goes at 0). `group.key_peak` keeps the
-- highest count a released key had before, for wake_freed. With `batched`, a job
-- without a limit key is only noted in `group.leaving`: leave_running takes the noted
-- jobs out of the running set, one ZREM per group.
local function release(group, key, id, limit_key, batched)
  if batched and not limit_key then
    group.leaving = group.leaving or {}
    group.leaving[#group.leaving + 1] = id
  else
    local removed = redis.call('ZREM', group.running, id)
    group.released = group.released + removed
    if removed == 1 and limit_key then
      local left = redis.call('HINCRBY', group.key_running, limit_key, -1)
      if left <= 0 then redis.call('HDEL', group.key_running, limit_key) end
      if not group.key_peak or left + 1 > group.key_peak then group.key_peak = left + 1 end
    end
  end
  redis.call('HDEL', key, 'lease_token', 'lease_expires_at', 'claimed_by')
end

-- Takes the jobs release() noted out of their groups' running sets.
local function leave_running(groups)
  for _, group in ipairs(groups) do
    if group.leaving then
      group.released = group.released + remove_members(group.running, group.leaving)
      group.leaving = nil
    end
  end
end

-- A rate limit as stored: { starts = n, period = ms }, or nil when either field is
-- absent.
local function read_rate(starts, period)
  if not starts or not period then return nil end
  return { starts = tonumber(starts), period = tonumber(period) }
end

-- Reads the limits of a group's queue once per script (one HMGET): sets
-- group.concurrency (the most running jobs), group.key_concurrency (the most
-- running jobs per limit key), group.rate (the most starts of the queue per period)
-- and group.key_rate (the most starts per limit key per period), each nil for none.
local function read_limits(group)
  if group.limits_read then return end
  local limits = redis.call('HMGET', group.limits, 'concurrency', 'key_concurrency', 'rate_starts',
    'rate_period_ms', 'key_rate_starts', 'key_rate_period_ms')
  group.concurrency = limits[1] and tonumber(limits[1]) or nil
  group.key_concurrency = limits[2] and tonumber(limits[2]) or nil
  group.rate = read_rate(limits[3], limits[4])
  group.key_rate = read_rate(limits[5], limits[6])
  group.limits_read = true
end

-- The sorted set of the recent starts of `limit_key` in the group's queue:
-- '<the queue's starts key>:<limit key>' (haul:{<prefix>:<queue>}:starts:<limit key>),
-- in the queue's slot.
local function key_starts(group, limit_key)
  return group.starts .. ':' .. limit_key
end

-- Marks for a wake-up each queue that has available jobs and whose releases in this
-- script may let claims take some that they left alone: a queue with a concurrency
-- limit that was full until these releases, or a queue with a limit per key one of
-- whose released jobs' keys was full. Nothing else would wake the workers waiting on
-- it. One HMGET per group that released jobs; nothing for the others. A group that
-- released a job with a limit key also drops its running-per-key counts when it has
-- no running job left (one ZCARD).
local function wake_freed(groups)
  for _, group in ipairs(groups) do
    if group.key_peak and redis.call('ZCARD', group.running) == 0 then
      -- No running job left: no key can have one. Dropping the counts repairs any that
      -- drifted up (a job hash lost while running, an older worker's release).
      redis.call('DEL', group.key_running)
    end
    if group.released > 0 and not group.woken then
      read_limits(group)
      local freed, full = false, false
      if group.concurrency then
        local running = redis.call('ZCARD', group.running)
        full = running >= group.concurrency
        freed = not full and running + group.released >= group.concurrency
      end
      if not full and not freed and group.key_concurrency and group.key_peak then
        freed = group.key_peak >= group.key_concurrency
      end
      if freed and redis.call('ZCARD', group.available) > 0 then
        group.woken = true
      end
    end
  end
end

-- Appends {attempt, at, message} to the JSON array in the `errors` field.
local function record_error(key, attempt, now, message)
  local entry = '{"attempt":' .. num(attempt) .. ',"at":' .. num(now) .. ',"message":' .. cjson.encode(message) .. '}'
  local errors = redis.call('HGET', key, 'errors')
  if not errors or errors == '' or errors == '[]' then
    errors = '[' .. entry .. ']'
  else
    errors = string.sub(errors, 1, -2) .. ',' .. entry .. ']'
  end
  redis.call('HSET', key, 'errors', errors)
end

-- Makes up to `limit` due scheduled and up to `limit` due retryable jobs available.
-- Returns how many moved and whether a set had more than `limit` due.
local function promote(group, now, limit)
  local moved, more = 0, false
  for _, state in ipairs({ 'scheduled', 'retryable' }) do
    local ids = redis.call('ZRANGEBYSCORE', group[state], '-inf', num(now), 'LIMIT', 0, limit)
    if #ids >= limit then more = true end
    for _, id in ipairs(ids) do
      local key = group.prefix .. id
      redis.call('ZREM', group[state], id)
      local f = redis.call('HMGET', key, 'state', 'priority', 'run_at')
      if f[1] == state then
        make_available(group, key, id, f[2], tonumber(f[3]) or now)
        moved = moved + 1
      end
    end
  end
  return moved, more
end

