-- cancel.lua: cancels one job.
--
-- KEYS: the 11 keys of the job's queue group (see lib.lua); no global key.
-- ARGV: the common head (lib.lua, one group), then the job id, then optionally the
--       states the job must be in (comma-separated; '' or absent: any), as a bulk
--       call whose filter names states passes them.
-- Returns: {'ok', fields} with the job's HGETALL after the change; {'missing'} when
--       there is no such job; {'state', state} when it has finished already or is
--       not in one of the given states (nothing is changed then).
-- Effects: a scheduled, available or retryable job is cancelled (finished_at = now)
--       and moved to the cancelled set; a running one gets cancel_requested_at = now
--       (kept if already set) and runs on until its holder reports, and 'cancel:<id>'
--       is published on the wake-up channel so that its holder hears of it at once
--       (haul_core::wakeup::cancel_signal), each time the cancel is asked.

local now, channel, _, groups, first = read_head()
local group, id, allowed = groups[1], ARGV[first], ARGV[first + 1]
local key = group.prefix .. id

local f = redis.call('HMGET', key, 'state', 'run_at')
local state = f[1]
if not state then
  return { 'missing' }
end
if not state_allowed(state, allowed) then
  return { 'state', state }
end
if state == 'scheduled' or state == 'available' or state == 'retryable' then
  unindex(group, id, state, f[2])
  finish(group, key, id, 'cancelled', now)
elseif state == 'running' then
  redis.call('HSETNX', key, 'cancel_requested_at', num(now))
  redis.call('PUBLISH', channel, 'cancel:' .. id)
else
  return { 'state', state }
end
return { 'ok', redis.call('HGETALL', key) }
