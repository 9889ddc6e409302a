-- enqueue.lua: stores a batch of new jobs, all or none.
--
-- KEYS: [1] the jobs index, [2] the queue set, [3] the unique index (when ARGV[3] = 3;
--       absent when 0, on a cluster, where reserve.lua indexes the batch first), then
--       8 keys per queue group (see lib.lua).
-- ARGV: the common head (lib.lua), then C, the number of uniqueness checks, and per
--       check: a unique-index member prefix '<len>:<key>:', n, and the n members of
--       that prefix the client saw when it decided which jobs to skip (only with the
--       unique index); then 10 values per job:
--       group number, id, kind, args (JSON), priority, run_at, max_attempts, timeout,
--       unique key, unique-index member
--       run_at is 'n' (now), 'a<µs>' (at this instant) or 'd<µs>' (this long after now);
--       timeout is µs, or '' for none; the unique key and member are '' for none.
-- Returns: {} when stored; {'duplicate', id} when an id is already stored; {'changed'}
--       when a checked prefix has a member the client did not see (a job with that key
--       was enqueued meanwhile: the client decides again). Nothing is written then.
-- Effects: each job hash is written, its id added to the scheduled or available set
--       (and to the jobs index, and to the unique index when it has a key); one wake-up
--       per queue that got available jobs.

local now, channel, globals, groups, first = read_head()
local index, queues, uniques
if globals == 3 then
  index, queues, uniques = KEYS[1], KEYS[2], KEYS[3]
end

local changed
changed, first = unique_checks_changed(uniques, first)

for j = first, #ARGV, 10 do
  local group, id = groups[tonumber(ARGV[j])], ARGV[j + 1]
  if redis.call('EXISTS', group.prefix .. id) == 1 then
    return { 'duplicate', id }
  end
  if index and #redis.call('ZRANGEBYLEX', index, '[' .. id .. ':', '[' .. id .. ';', 'LIMIT', 0, 1) > 0 then
    return { 'duplicate', id }
  end
end
if changed then
  return { 'changed' }
end

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
  local key = group.prefix .. id
  redis.call('HSET', key, 'id', id, 'kind', ARGV[j + 2], 'args', ARGV[j + 3], 'queue', group.queue,
    'priority', priority, 'attempt', '0', 'max_attempts', ARGV[j + 6], 'created_at', num(now))
  if ARGV[j + 7] ~= '' then
    redis.call('HSET', key, 'timeout', ARGV[j + 7])
  end
  if ARGV[j + 9] ~= '' then
    redis.call('HSET', key, 'unique_key', ARGV[j + 8])
    if uniques then
      redis.call('ZADD', uniques, 0, ARGV[j + 9])
    end
  end
  if run_at > now then
    make_waiting(group, key, id, 'scheduled', run_at)
  else
    make_available(group, key, id, priority, run_at)
  end
  if index then
    redis.call('ZADD', index, 0, id .. ':' .. group.queue)
  end
end

if queues then
  for _, group in ipairs(groups) do
    redis.call('SADD', queues, group.queue)
  end
end
publish(channel, groups)
return {}
