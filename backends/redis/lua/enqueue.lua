-- enqueue.lua: stores a batch of new jobs, all or none.
--
-- KEYS: [1] the jobs index, [2] the queue set, [3] the unique index (when ARGV[3] = 3;
--       absent when 0, on a cluster, where reserve.lua indexes the batch first), then
--       11 keys per queue group (see lib.lua).
-- ARGV: the common head (lib.lua), then C, the number of uniqueness checks, and per
--       check: a unique-index member prefix '<digest>:', n, and the n members of
--       that prefix the client saw when it decided which jobs to skip (only with the
--       unique index); then 12 values per job:
--       group number, id, kind, args (JSON), priority, run_at, max_attempts, timeout,
--       unique key, unique key digest (SHA-256 of the key, 64 hex digits), metadata
--       (a JSON object of strings), limit key
--       run_at is 'n' (now), 'a<µs>' (at this instant) or 'd<µs>' (this long after now);
--       timeout is µs, or '' for none; the unique key, digest, metadata and limit key
--       are '' for none.
-- Returns: {} when stored; {'duplicate', id} when an id is already stored; {'changed'}
--       when a checked prefix has a member the client did not see (a job with that key
--       was enqueued meanwhile: the client decides again). Nothing is written then.
-- Effects: each job hash is written (with `unique_key` and `unique_digest` when it has
--       a key, `metadata` when it has metadata, and `limit_key` when it has one), its id added to the scheduled or
--       available set (and to the jobs index, and to the unique index as
--       '<digest>:<id>:<queue>' when it has a key); one wake-up per queue that got
--       available jobs.
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
for j = first, #ARGV, 12 do
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

-- One HSET per job; the set members are gathered and added in a few ZADDs. Jobs due
-- now (the usual case) reuse the clock's text and ready-set member prefix.
local created_at = num(now)
local ready_now = ready_member(now, '')
local members, unique_members = {}, {}
-- The HSET arguments, refilled for each job: the values of the fields every job has,
-- then its optional fields; unpack takes the first n.
local fields = { 'id', '', 'kind', '', 'args', '', 'queue', '', 'priority', '', 'attempt', '0', 'max_attempts', '',
  'created_at', created_at, 'state', '', 'run_at', '' }
for j = first, #ARGV, 12 do
  local group = groups[tonumber(ARGV[j])]
  local id, priority, spec, timeout, digest = ARGV[j + 1], ARGV[j + 4], ARGV[j + 5], ARGV[j + 7], ARGV[j + 9]
  local metadata, limit_key = ARGV[j + 10], ARGV[j + 11]
  local run_at, run_at_text, state = now, created_at, 'available'
  if spec ~= 'n' then
    local mode = string.sub(spec, 1, 1)
    if mode == 'a' then
      run_at = tonumber(string.sub(spec, 2))
    elseif mode == 'd' then
      run_at = clamp(now + tonumber(string.sub(spec, 2)))
    end
    run_at_text = num(run_at)
    if run_at > now then state = 'scheduled' end
  end
  local key = group.prefix .. id
  fields[2], fields[4], fields[6], fields[8], fields[10] = id, ARGV[j + 2], ARGV[j + 3], group.queue, priority
  fields[14], fields[18], fields[20] = ARGV[j + 6], state, run_at_text
  local n = 20
  if timeout ~= '' then
    fields[n + 1], fields[n + 2], n = 'timeout', timeout, n + 2
  end
  if digest ~= '' then
    fields[n + 1], fields[n + 2], fields[n + 3], fields[n + 4] = 'unique_key', ARGV[j + 8], 'unique_digest', digest
    n = n + 4
  end
  if metadata ~= '' then
    fields[n + 1], fields[n + 2], n = 'metadata', metadata, n + 2
  end
  if limit_key ~= '' then
    fields[n + 1], fields[n + 2], n = 'limit_key', limit_key, n + 2
  end
  redis.call('HSET', key, unpack(fields, 1, n))
  if digest ~= '' and uniques then
    add_member(unique_members, uniques, 0, unique_member(digest, id, group.queue))
  end
  if state == 'scheduled' then
    add_member(members, group.scheduled, run_at_text, id)
  else
    if run_at == now then
      add_member(members, group.available, priority, ready_now .. id)
    else
      add_member(members, group.available, priority, ready_member(run_at, id))
    end
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
