-- retry.lua: makes one job that is not running available now.
--
-- KEYS: the 11 keys of the job's queue group (see lib.lua); no global key.
-- ARGV: the common head (lib.lua, one group), then the job id, then optionally the
--       states the job must be in (comma-separated; '' or absent: any), as a bulk
--       call whose filter names states passes them.
-- Returns: {'ok', fields} with the job's HGETALL after the change; {'missing'} when
--       there is no such job; {'state', state} when it is running or not in one of
--       the given states (nothing is changed then).
-- Effects: state = available, run_at = now; finished_at, cancel_requested_at and the
--       lease fields are cleared; errors are kept; max_attempts = attempt + 1 when the
--       attempts are used up. A wake-up for the queue.

local now, channel, _, groups, first = read_head()
local group, id, allowed = groups[1], ARGV[first], ARGV[first + 1]
local key = group.prefix .. id

local f = redis.call('HMGET', key, 'state', 'run_at', 'attempt', 'max_attempts', 'priority')
local state = f[1]
if not state then
  return { 'missing' }
end
if state == 'running' or not state_allowed(state, allowed) then
  return { 'state', state }
end
unindex(group, id, state, f[2])
redis.call('HDEL', key, 'finished_at', 'cancel_requested_at', 'lease_token', 'lease_expires_at', 'claimed_by')
local attempt = tonumber(f[3]) or 0
if attempt >= (tonumber(f[4]) or 0) then
  redis.call('HSET', key, 'max_attempts', num(attempt + 1))
end
make_available(group, key, id, f[5], now)
publish(channel, groups)
return { 'ok', redis.call('HGETALL', key) }
