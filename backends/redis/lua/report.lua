-- report.lua: applies the outcomes of attempts, each fenced by its claim.
--
-- KEYS: [1] the jobs index, [2] the queue set, [3] the unique index (when ARGV[3] = 3;
--       absent when 0, on a cluster, where the caller removes the returned members
--       from the jobs index), then 11 keys per queue group (see lib.lua).
-- ARGV: the common head (lib.lua), then '1' when completions delete their jobs ('0'
--       when not), then 6 values per outcome:
--       group number, job id, lease token, outcome, text, µs
--       outcome is 'completed', 'failed' (text = the error, µs = retry in),
--       'discarded' (text = the reason), 'cancelled' or 'snoozed' (µs = the delay).
-- Returns: one integer per outcome, in order: 1 applied, 0 rejected (the job is not
--       running under this lease token); then, without the indexes' keys, the
--       jobs-index member '<id>:<queue>' of each job a completion deleted.
-- Effects: the lease is released (lease fields cleared, out of the running set, and
--       out of its limit key's count);
--       completed/discarded/cancelled get finished_at = now (a completion that deletes
--       its job, one without a uniqueness key, deletes its hash and its member of the
--       jobs index instead; a job with a key is kept, so that a key blocking completed
--       jobs blocks until prune); a failure appends to
--       `errors` and is retryable at now + µs, or discarded when attempt >=
--       max_attempts; a snooze gives the attempt back and is scheduled at now + µs
--       (available when µs = 0); a requested cancel turns a failure or a snooze into
--       cancelled. One wake-up per queue that got available jobs, or that has some
--       and was at its concurrency limit until these outcomes freed a slot, or has a
--       limit per key that the key of one of these jobs was at.
-- Cost: per outcome one HMGET (of 3 fields for a completion, 4 for one that may
--       delete, 7 for the others) and one HDEL of the lease fields (also for a job
--       deleted later: it fences a repeat of the claim in the batch); then one HSET
--       for a job that finishes (none for a deleted one), one HSET and a ZADD of its
--       own for a retry, two HSETs and a ZADD for a snooze, and for a failure's error
--       one HGET and one HSET more. The jobs leave the running sets in one ZREM per
--       queue (per 1,000 jobs), finished ones join their sets in one ZADD per set (per
--       500 jobs), and deleted ones go in one DEL and, on one server, one ZREM of the
--       jobs index (per 1,000). A job with a limit key leaves the running set by
--       itself, with the HINCRBY of its key's count.

local now, channel, globals, groups, first = read_head()
local index = globals == 3 and KEYS[1] or nil
local delete_completed = ARGV[first] == '1'
first = first + 1

-- The finished jobs' set entries, added at the end (see add_member).
local finished, results = {}, {}
-- The jobs whose completions delete them: { group, key, id }.
local deletions = {}
-- Applies every outcome; run under pcall so that, if a job's hash is corrupt and an
-- outcome raises an error, the outcomes applied before it still get their set moves
-- below (a script's writes are not undone).
local function apply()
  for j = first, #ARGV, 6 do
    local group, id, token, outcome = groups[tonumber(ARGV[j])], ARGV[j + 1], ARGV[j + 2], ARGV[j + 3]
    local key = group.prefix .. id
    -- A completion needs only the fence and the limit key: each field HMGET names is a
    -- walk of a small hash's entries, so the other outcomes alone read the rest.
    local f
    local delete = outcome == 'completed' and delete_completed
    if delete then
      f = redis.call('HMGET', key, 'state', 'lease_token', 'limit_key', 'unique_key')
      delete = not f[4]
    elseif outcome == 'completed' then
      f = redis.call('HMGET', key, 'state', 'lease_token', 'limit_key')
    else
      f = redis.call('HMGET', key, 'state', 'lease_token', 'limit_key', 'attempt', 'max_attempts',
        'cancel_requested_at', 'priority')
    end
    if f[1] ~= 'running' or f[2] ~= token then
      results[#results + 1] = 0
    else
      release(group, key, id, f[3], true)
      -- A completion did not read the others (f[4] to f[7] are nil, or f[4] is its
      -- uniqueness key, when it may delete).
      local attempt, max_attempts = tonumber(f[4]) or 0, tonumber(f[5]) or 0
      local cancel = outcome ~= 'completed' and f[6] ~= false
      if delete then
        deletions[#deletions + 1] = { group, key, id }
      elseif outcome == 'completed' then
        finish(group, key, id, 'completed', now, finished)
      elseif outcome == 'failed' then
        record_error(key, attempt, now, ARGV[j + 4])
        if cancel then
          finish(group, key, id, 'cancelled', now, finished)
        elseif attempt >= max_attempts then
          finish(group, key, id, 'discarded', now, finished)
        else
          make_waiting(group, key, id, 'retryable', clamp(now + tonumber(ARGV[j + 5])))
        end
      elseif outcome == 'discarded' then
        record_error(key, attempt, now, ARGV[j + 4])
        finish(group, key, id, 'discarded', now, finished)
      elseif outcome == 'cancelled' or cancel then
        finish(group, key, id, 'cancelled', now, finished)
      else
        local delay = tonumber(ARGV[j + 5])
        redis.call('HSET', key, 'attempt', num(math.max(attempt - 1, 0)))
        if delay == 0 then
          make_available(group, key, id, f[7], now)
        else
          make_waiting(group, key, id, 'scheduled', clamp(now + delay))
        end
      end
      results[#results + 1] = 1
    end
  end
end

local applied, failure = pcall(apply)
flush_members(finished)
leave_running(groups)
-- The jobs to delete left their running sets. When an outcome failed, they are kept
-- as completed instead (the caller, given the error, could not unindex them on a
-- cluster); prune deletes them later.
local returned = {}
if not applied then
  for _, job in ipairs(deletions) do finish(job[1], job[2], job[3], 'completed', now) end
elseif #deletions > 0 then
  local hashes, members = {}, {}
  for j, job in ipairs(deletions) do
    hashes[j], members[j] = job[2], job[3] .. ':' .. job[1].queue
  end
  call_chunked('DEL', false, hashes)
  if index then remove_members(index, members) else returned = members end
end
if not applied then error(failure) end
wake_freed(groups)
publish(channel, groups)
for _, value in ipairs(returned) do results[#results + 1] = value end
return results
