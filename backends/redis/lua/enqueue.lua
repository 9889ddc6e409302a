-- enqueue.lua: stores a batch of new jobs, all or none.
--
-- KEYS: [1] the jobs index, [2] the queue set, [3] the unique index (when ARGV[3] = 3;
--       absent when 0, on a cluster, where reserve.lua indexes the batch first), then
--       8 keys per queue group (see lib.lua).
-- ARGV: the common head (lib.lua), then C, the number of uniqueness checks, and per
--       check: a unique-index member prefix '<digest>:', n, and the n members of
--       that prefix the client saw when it decided which jobs to skip (only with the
--       unique index); then 10 values per job:
--       group number, id, kind, args (JSON), priority, run_at, max_attempts, timeout,
--       unique key, unique key digest (SHA-256 of the key, 64 hex digits)
--       run_at is 'n' (now), 'a<µs>' (at this instant) or 'd<µs>' (this long after now);
--       timeout is µs, or '' for none; the unique key and digest are '' for none.
-- Returns: {} when stored; {'duplicate', id} when an id is already stored; {'changed'}
--       when a checked prefix has a member the client did not see (a job with that key
--       was enqueued meanwhile: the client decides again). Nothing is written then.
-- Effects: each job hash is written (with `unique_key` and `unique_digest` when it has
--       a key), its id added to the scheduled or available set (and to the jobs index,
--       and to the unique index as '<digest>:<id>:<queue>' when it has a key); one
--       wake-up per queue that got available jobs.
-- Cost: linear in the batch. Per job one duplicate-id lookup and one HSET; the set
--       members are added with one ZADD per 500 (add_member in lib.lua); one range
--       read per checked key.

local now, channel, globals, groups, first = read_head()
local index, queues, uniques
if globals == 3 then
  index, queues, uniques = KEYS[1], KEYS[2], KEYS[3]
end

local changed
changed, first = unique_checks_changed(uniques, first)

-- Duplicate ids, before anything is written: the jobs index holds every job's id when
-- it is given; without it (a cluster, where reserve.lua checked the index) the queue's
-- own job hashes are looked at.
for j = first, #ARGV, 10 do
  local id = ARGV[j + 1]
  if index then
    if #redis.call('ZRANGEBYLEX', index, '[' .. id .. ':', '[' .. id .. ';', 'LIMIT', 0, 1) > 0 then
      return { 'duplicate', id }
    end
  elseif redis.call('EXISTS', groups[tonumber(ARGV[j])].prefix .. id) == 1 then
    return { 'duplicate', id }
  end
end
if changed then
  return { 'changed' }
end

-- One HSET per job; the set members are gathered and added in a few ZADDs.
local created_at = num(now)
local members, unique_members = {}, {}
for j = first, #ARGV, 10 do
  local group = groups[tonumber(ARGV[j])]
  local id, priority, spec = ARGV[j + 1], ARGV[j + 4], ARGV[j + 5]
  local run_at = now
  local mode = string.sub(spec, 1, 1)
  if mode == 'a' then
    run_at = tonumber(string.sub(spec, 2))
  elseif mode == 'd' then
    run_at = clamp(now + tonumber(string.sub(spec, 2)))
  end
  local state = 'available'
  if run_at > now then state = 'scheduled' end
  local fields = { 'id', id, 'kind', ARGV[j + 2], 'args', ARGV[j + 3], 'queue', group.queue, 'priority', priority,
    'attempt', '0', 'max_attempts', ARGV[j + 6], 'created_at', created_at, 'state', state, 'run_at', num(run_at) }
  if ARGV[j + 7] ~= '' then
    fields[#fields + 1] = 'timeout'
    fields[#fields + 1] = ARGV[j + 7]
  end
  if ARGV[j + 9] ~= '' then
    fields[#fields + 1] = 'unique_key'
    fields[#fields + 1] = ARGV[j + 8]
    fields[#fields + 1] = 'unique_digest'
    fields[#fields + 1] = ARGV[j + 9]
    if uniques then
      add_member(unique_members, uniques, 0, unique_member(ARGV[j + 9], id, group.queue))
    end
  end
  redis.call('HSET', group.prefix .. id, unpack(fields))
  if state == 'scheduled' then
    add_member(members, group.scheduled, num(run_at), id)
  else
    add_member(members, group.available, priority, ready_member(run_at, id))
    group.woken = true
  end
  if index then
    add_member(members, index, 0, id .. ':' .. group.queue)
  end
end
flush_members(members)
flush_members(unique_members)

if queues then
  for _, group in ipairs(groups) do
    redis.call('SADD', queues, group.queue)
  end
end
publish(channel, groups)
return {}
