-- delete.lua: deletes one job that is not running, with everything stored about it.
--
-- KEYS: [1] the jobs index, [2] the queue set, [3] the unique index (when ARGV[3] = 3;
--       absent when 0, on a cluster, where the caller removes the returned members
--       from the indexes), then the 11 keys of the job's queue group (see lib.lua).
-- ARGV: the common head (lib.lua, one group), then the job id, then optionally the
--       states the job must be in (comma-separated; '' or absent: any), as a bulk
--       call whose filter names states passes them.
-- Returns: {'ok', member, unique member}: the job's jobs-index member '<id>:<queue>'
--       and its unique-index member ('' when it has no unique key; see
--       stored_unique_member in lib.lua); {'missing'} when there is no such job;
--       {'state', state} when it is running or not in one of the given states
--       (nothing is changed then).
-- Effects: the job hash is deleted and its id removed from the set of its state (and
--       its members from the jobs index and the unique index), so its uniqueness key
--       no longer blocks new jobs.

local _, _, globals, groups, first = read_head()
local group, id, allowed = groups[1], ARGV[first], ARGV[first + 1]
local key = group.prefix .. id

local f = redis.call('HMGET', key, 'state', 'run_at')
local state = f[1]
if not state then
  return { 'missing' }
end
if state == 'running' or not state_allowed(state, allowed) then
  return { 'state', state }
end
local member = id .. ':' .. group.queue
local member_of_key = stored_unique_member(key, id, group.queue)
unindex(group, id, state, f[2])
redis.call('DEL', key)
if globals == 3 then
  redis.call('ZREM', KEYS[1], member)
  if member_of_key ~= '' then redis.call('ZREM', KEYS[3], member_of_key) end
end
return { 'ok', member, member_of_key }
