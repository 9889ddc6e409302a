-- cancel.lua: cancels one job.
--
-- KEYS: the 8 keys of the job's queue group (see lib.lua); no global key.
-- ARGV: the common head (lib.lua, one group), then the job id.
-- Returns: {'ok', fields} with the job's HGETALL after the change; {'missing'} when
--       there is no such job; {'state', state} when it has finished already.
-- Effects: a scheduled, available or retryable job is cancelled (finished_at = now)
--       and moved to the cancelled set; a running one gets cancel_requested_at = now
--       (kept if already set) and runs on until its holder reports.

local now, _, _, groups, first = read_head()
local group, id = groups[1], ARGV[first]
local key = group.prefix .. id

local f = redis.call('HMGET', key, 'state', 'run_at')
local state = f[1]
if not state then
  return { 'missing' }
end
if state == 'scheduled' or state == 'available' or state == 'retryable' then
  unindex(group, id, state, f[2])
  finish(group, key, id, 'cancelled', now)
elseif state == 'running' then
  redis.call('HSETNX', key, 'cancel_requested_at', num(now))
else
  return { 'state', state }
end
return { 'ok', redis.call('HGETALL', key) }
