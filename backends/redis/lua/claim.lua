-- claim.lua: claims up to `limit` available jobs of the unpaused queue groups, in
-- priority, then run_at, then id order, after promoting their due scheduled and
-- retryable jobs. A queue with a concurrency limit gives at most its limit minus its
-- running jobs (expired leases included, until rescued); a queue with a limit per key
-- gives a job with a limit key only while its key's running jobs, with those this
-- claim takes before it, are under that limit, looking at no more than `scan` of its
-- available jobs. A queue with a rate limit gives a job only while fewer than its
-- `starts` jobs were claimed in the window (t - period, t] (t: the claim's time in ms),
-- counting those this claim takes before it; a queue with a rate limit per key gives a
-- job with a limit key only while its key's starts in the window are fewer than that
-- limit's. Its other jobs stay available, and the other queues fill the rest.
--
-- KEYS: 11 keys per queue group (see lib.lua); no global key.
-- ARGV: the common head (lib.lua), then: limit, lease (µs), worker id, the most jobs to
--       promote per set, scan (haul_core::KEY_LIMIT_SCAN), then `limit` fresh lease
--       tokens.
-- Returns: { wait, now, deadline, jobs[, failure] }: wait is -1, or, when a rate limit
--       held back a job the claim would otherwise have taken (room in `limit`, in the
--       concurrency limits, within `scan`), the least, over the scopes (queue or limit
--       key) that held one back, of the ms until the scope lets one more start: its
--       `starts`-th most recent start (this claim's included) + period - t. now and
--       deadline: the claim's attempted_at and lease_expires_at, as written (µs).
--       jobs: the claimed jobs in claim order, as one JSON text (cjson's): an array of
--       each job's field/value list as read (its HGETALL, with the new attempt), each an
--       array of JSON strings holding the stored bytes (cjson does not check UTF-8).
--       The n-th job is claimed under the n-th token, and its other fields written are
--       the same for every job (state running, now, deadline, the worker id): the
--       lists have them as they were before the claim, for the reader to set. A member
--       whose key holds another type than a hash is no job: the claim takes it out of
--       its available set (the key stays), goes on with the other candidates it read
--       (it reads no more in its place, and a rate limit's wait counts it as claimed),
--       and failure names it. Another error at a job ends the claim there: failure says
--       at which job and why, and everything else happens as for the jobs taken alone
--       (they are marked running, so they are handed over); when it took no job, the
--       script fails with that error (and the names of the members taken out). A job
--       that could not be taken stays available.
-- Effects: each claimed job is `running` with attempt + 1, attempted_at = now,
--       lease_token, lease_expires_at = now + lease and claimed_by set, and moves from
--       the available set to the running set (scored by its lease deadline); a job
--       with a limit key adds 1 to its key's count in the group's running-per-key
--       hash, whatever the queue's limits. Each claimed job of a queue with a rate limit
--       is a start at t in the queue's start set (member: its lease token), and one with
--       a limit key in a queue with a rate limit per key a start in its key's start set;
--       each start set written keeps only its starts in the window, at most `starts` of
--       them (the most recent), and expires after the period. A wake-up is sent for a
--       queue whose promoted jobs are not all claimed, unless its limits keep them
--       waiting (the release that frees a slot wakes it; for a rate limit, the claim's
--       wait tells the worker when to come back).
-- Cost: each claimed job costs one HGETALL and one HSET (one HINCRBY more with a limit
--       key); the claimed jobs leave the available sets and join the running sets in
--       one ZREM and one ZADD per queue (per 500 jobs). To find them, a queue without
--       a limit per key reads the head of its available set, as many members as it
--       may give (one more with a rate limit that leaves it fewer, to tell whether
--       that limit holds a job back). A queue with one (of either kind)
--       reads its available set in pages (the first as large as it may give, each next
--       one twice the last) until it has found its jobs or looked at `scan`: per page,
--       one HGET of each job's limit key and (with a limit per key on running jobs) one
--       HMGET of the running counts of the keys not met before. A queue with a
--       rate limit costs one ZCOUNT more, a queue with a rate limit per key one ZCOUNT
--       per key met; a scope that holds a job back one ZREVRANGEBYSCORE (to tell how long
--       it does), and a scope that gets starts a ZADD, two ZREMRANGEs and a PEXPIRE. A
--       queue without rate limits costs nothing more.

local now, channel, _, groups, first = read_head()
local limit, lease, worker = tonumber(ARGV[first]), tonumber(ARGV[first + 1]), ARGV[first + 2]
local promote_limit, scan, tokens = tonumber(ARGV[first + 3]), tonumber(ARGV[first + 4]), first + 5
local deadline = clamp(now + lease)
-- Formatted once: num() keeps only the last number, and each job's attempt replaces it.
local now_text, deadline_text = num(now), num(deadline)
-- The claim's time in ms: the time of the starts it records.
local t = math.floor(now / 1000)
local t_text = num(t)

-- How many starts of the start set `key` fall in the window (t - period, t] of `rate`;
-- starts after t (a clock that went back) count too, so they keep holding jobs back.
local function window_starts(key, rate)
  return redis.call('ZCOUNT', key, '(' .. num(t - rate.period), '+inf')
end

-- The ms from t until the full scope whose start set is `key` lets one more start,
-- this claim having made `mine` starts in it (all at t): its `starts`-th most recent
-- start in the window + period - t.
local function rate_wait(key, rate, mine)
  if mine >= rate.starts then return rate.period end
  local start = redis.call('ZREVRANGEBYSCORE', key, '+inf', '(' .. num(t - rate.period), 'WITHSCORES', 'LIMIT',
    rate.starts - mine - 1, 1)
  -- Not found only if the scope was not full: claiming again at once is then right.
  if #start < 2 then return 1 end
  return tonumber(start[2]) + rate.period - t
end

-- Adds to `candidates` the job of `member` (score `score`) of `group`: a job to claim,
-- or, with `wait`, one a rate limit holds back for `wait` ms (it stays available).
local function add_candidate(candidates, score, member, group, wait)
  candidates[#candidates + 1] = { tonumber(score), member, group, wait }
end

-- Adds the first `take` members of the group's available set to `candidates`, no
-- more than `room` (what the queue's rate limit leaves); a job the rate limit holds
-- back is added as such. Returns how many it added to claim.
local function head_candidates(group, take, room, candidates)
  local want = math.min(take, room + 1)
  local top = redis.call('ZRANGE', group.available, 0, want - 1, 'WITHSCORES')
  local found = 0
  for j = 1, #top, 2 do
    if found < room then
      add_candidate(candidates, top[j + 1], top[j], group)
      found = found + 1
    else
      add_candidate(candidates, top[j + 1], top[j], group, rate_wait(group.starts, group.rate, found))
      group.held_back = true
    end
  end
  return found
end

-- The limit keys (false: none) of the jobs of `members` (a WITHSCORES page). The keys
-- among them met for the first time get their running count in `counts` (with a
-- limit per key) and their starts in the window in `stored` (with a rate limit per
-- key).
local function read_keys(group, members, counts, stored)
  local keys, unknown = {}, {}
  for j = 1, #members, 2 do
    local limit_key = redis.pcall('HGET', group.prefix .. member_id(members[j]), 'limit_key')
    -- A key that is not a hash (an error reply) is a candidate without a limit key,
    -- which the claim then takes out of the queue (see claim_all).
    if type(limit_key) == 'table' then limit_key = false end
    keys[#keys + 1] = limit_key
    if limit_key and not counts[limit_key] then
      counts[limit_key] = 0
      unknown[#unknown + 1] = limit_key
    end
  end
  if #unknown > 0 and group.key_concurrency then
    local running = redis.call('HMGET', group.key_running, unpack(unknown))
    for j, limit_key in ipairs(unknown) do
      counts[limit_key] = tonumber(running[j] or '0')
    end
  end
  if group.key_rate then
    for _, limit_key in ipairs(unknown) do
      stored[limit_key] = window_starts(key_starts(group, limit_key), group.key_rate)
    end
  end
  return keys
end

-- The scan of a queue with a limit per key: its state, and what one job is.
local Scan = {}
Scan.__index = Scan

local function new_scan(group, take, room)
  -- counts: running jobs per key (with this claim's); stored: starts per key in the
  -- window; mine: this claim's starts per key; waiting: keys whose rate limit held a
  -- job back already (their later jobs come after it).
  return setmetatable({ group = group, take = take, room = room, found = 0, counts = {}, stored = {}, mine = {},
    waiting = {} }, Scan)
end

-- How long the key rate limit holds back the next job of `limit_key`, or nil if it
-- has room.
function Scan:key_wait(limit_key)
  local rate = self.group.key_rate
  if not limit_key or not rate then return nil end
  local mine = self.mine[limit_key] or 0
  if self.stored[limit_key] + mine < rate.starts then return nil end
  return rate_wait(key_starts(self.group, limit_key), rate, mine)
end

-- Looks at one job: adds it to `candidates` to claim, or as held back by a rate limit,
-- or leaves it (its key is full, or its key's rate limit held an earlier job back).
-- Returns whether the scan is over.
function Scan:visit(score, member, limit_key, candidates)
  local group = self.group
  if limit_key and (self.waiting[limit_key]
      or (group.key_concurrency and self.counts[limit_key] >= group.key_concurrency)) then
    return false
  end
  local wait = self:key_wait(limit_key)
  local queue_full = self.found >= self.room
  if queue_full then
    local queue_wait = rate_wait(group.starts, group.rate, self.found)
    wait = wait and math.min(wait, queue_wait) or queue_wait
  end
  if wait then
    add_candidate(candidates, score, member, group, wait)
    if limit_key then self.waiting[limit_key] = true end
    return queue_full
  end
  add_candidate(candidates, score, member, group)
  if limit_key then
    self.counts[limit_key] = self.counts[limit_key] + 1
    self.mine[limit_key] = (self.mine[limit_key] or 0) + 1
  end
  self.found = self.found + 1
  return self.found >= self.take
end

-- Adds to `candidates` the first `take` available jobs of a group with a limit per
-- key (of either kind) whose keys have room, counting each one taken against its key,
-- among at most `scan` members, no more than `room` of them (what the queue's rate
-- limit leaves); a job that a rate limit holds back is added as such. Returns how many
-- it added to claim.
local function key_limited_candidates(group, take, room, candidates)
  local state, seen, page = new_scan(group, take, room), 0, take
  while seen < scan do
    local n = math.min(page, scan - seen)
    local members = redis.call('ZRANGE', group.available, seen, seen + n - 1, 'WITHSCORES')
    local keys = read_keys(group, members, state.counts, state.stored)
    for j, limit_key in ipairs(keys) do
      if state:visit(members[2 * j], members[2 * j - 1], limit_key, candidates) then return state.found end
    end
    if #members < 2 * n then break end
    seen, page = seen + n, page * 2
  end
  return state.found
end

-- The value of `name` in a HGETALL field/value list, or nil.
local function field(fields, name)
  for j = 1, #fields, 2 do
    if fields[j] == name then return fields[j + 1] end
  end
  return nil
end

-- What the queue's rate limit leaves this claim: `take` without one.
local function rate_room(group, take)
  if not group.rate then return take end
  return math.max(0, group.rate.starts - window_starts(group.starts, group.rate))
end

local candidates = {}
for _, group in ipairs(groups) do
  if redis.call('EXISTS', group.paused) == 0 then
    promote(group, now, promote_limit)
    read_limits(group)
    local take = limit
    if group.concurrency then
      take = math.min(limit, group.concurrency - redis.call('ZCARD', group.running))
    end
    if take > 0 then
      local room = rate_room(group, take)
      if group.key_concurrency or group.key_rate then
        -- Fewer than it may give: what is left waits for a key's slot or a rate limit
        -- (or is not there), once every job it found is claimed (the merge below may
        -- leave some).
        group.found = key_limited_candidates(group, take, room, candidates)
        group.held_back = group.found < take
      elseif group.rate then
        group.found = head_candidates(group, take, room, candidates)
      else
        head_candidates(group, take, take, candidates)
      end
    end
  end
end
if #groups > 1 then
  table.sort(candidates, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
end

-- The starts to record: the start sets (in `buffers`, see add_member) and their rates.
local starts, rates = {}, {}
local function record_start(key, rate, token)
  add_member(starts, key, t_text, token)
  rates[key] = rate
end

-- What a claim writes in a job's hash (see take), refilled per job with its attempt and
-- lease token.
local claim_values = { 'state', 'running', 'attempt', '', 'attempted_at', now_text, 'lease_token', '',
  'lease_expires_at', deadline_text, 'claimed_by', worker }
-- The text of each attempt number met (num() keeps only the last number's).
local attempt_texts = {}

-- Claims the job whose hash is `key` under lease `token` with one HGETALL and one
-- HSET (attempt + 1, state, attempted_at, the lease fields, claimed_by). Returns its
-- fields as read, with the new attempt: the others the claim wrote are the same for
-- every job but the token, so the reply gives them once (the worker knows the tokens).
local function take(key, token)
  local fields = redis.call('HGETALL', key)
  local attempt, at = 1, nil
  for j = 1, #fields, 2 do
    if fields[j] == 'attempt' then
      at, attempt = j + 1, (tonumber(fields[j + 1]) or 0) + 1
      break
    end
  end
  local text = attempt_texts[attempt]
  if not text then
    text = num(attempt)
    -- NaN (an attempt of 'nan' written by hand) cannot be a table key: the job is
    -- claimed with it, then discarded by the worker as a job that does not read back.
    if attempt == attempt then attempt_texts[attempt] = text end
  end
  if at then
    fields[at] = text
  else
    fields[#fields + 1] = 'attempt'
    fields[#fields + 1] = text
  end
  claim_values[4], claim_values[8] = text, token
  redis.call('HSET', key, unpack(claim_values))
  return fields
end

-- The claimed jobs' running-set entries (see add_member), and per group the members
-- they had in its available set (group.taken), both written once the jobs are taken.
local running = {}
local claimed, wait = {}, nil
-- The index in `candidates` of the job being claimed, for the failure that stops at it.
local current
-- Claims the candidates from the `first`; run under pcall so that, should a job raise
-- an error, the jobs taken before it still move to the running sets below and are
-- handed over (a script's writes are not undone, and a job marked running must reach
-- a worker).
local function claim_all(first)
  for i = first, #candidates do
    local candidate = candidates[i]
    if #claimed >= limit then break end
    local group = candidate[3]
    if candidate[4] then
      -- Held back by a rate limit, and within the claim's limit: it would be claimed.
      if not wait or candidate[4] < wait then wait = candidate[4] end
    else
      current = i
      local id = member_id(candidate[2])
      local token = ARGV[tokens + #claimed]
      local fields = take(group.prefix .. id, token)
      group.taken = group.taken or {}
      group.taken[#group.taken + 1] = candidate[2]
      add_member(running, group.running, deadline_text, id)
      group.claimed = (group.claimed or 0) + 1
      claimed[#claimed + 1] = fields
      local limit_key = field(fields, 'limit_key')
      if group.rate then record_start(group.starts, group.rate, token) end
      if limit_key and group.key_rate then record_start(key_starts(group, limit_key), group.key_rate, token) end
      if limit_key then redis.call('HINCRBY', group.key_running, limit_key, 1) end
    end
  end
end

-- A member whose key is not a hash is no job: the claim takes it out of its available
-- set (leaving the key as it is), says so, and goes on past it; without this it would
-- stay at the head and fail every claim of its queue. Its type is read only then.
local not_jobs = {}
local claimed_all, failure = pcall(claim_all, 1)
while not claimed_all do
  local candidate = current and candidates[current]
  if not candidate then break end
  local key_type = redis.call('TYPE', candidate[3].prefix .. member_id(candidate[2])).ok
  if key_type == 'hash' or key_type == 'none' then break end
  redis.call('ZREM', candidate[3].available, candidate[2])
  not_jobs[#not_jobs + 1] = member_id(candidate[2]) .. ' (its key holds a ' .. key_type .. ')'
  claimed_all, failure = pcall(claim_all, current + 1)
end
flush_members(running)
for _, group in ipairs(groups) do
  if group.taken then remove_members(group.available, group.taken) end
end
local notes = {}
if #not_jobs > 0 then
  notes[1] = 'took out of the queue, as no job: ' .. table.concat(not_jobs, ', ')
end
if not claimed_all then
  if #claimed == 0 and #notes == 0 then error(failure) end
  -- Redis 7's pcall gives the error as a string (a table with `err` on older servers).
  local reason = type(failure) == 'table' and failure.err or failure
  notes[#notes + 1] = 'failed at job ' .. member_id(candidates[current][2]) .. ': ' .. tostring(reason)
  if #claimed == 0 then error(table.concat(notes, '; ')) end
end
failure = #notes > 0 and table.concat(notes, '; ') or nil
flush_members(starts)
for _, key in ipairs(starts) do
  local rate = rates[key]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', num(t - rate.period))
  redis.call('ZREMRANGEBYRANK', key, 0, -rate.starts - 1)
  redis.call('PEXPIRE', key, rate.period)
end

for _, group in ipairs(groups) do
  local all_found_claimed = group.held_back and (group.claimed or 0) >= group.found
  if group.woken and (all_found_claimed or redis.call('ZCARD', group.available) == 0
      or (group.concurrency and redis.call('ZCARD', group.running) >= group.concurrency)) then
    group.woken = false
  end
end
publish(channel, groups)
-- The jobs as one JSON text: a reply of nested tables costs the server far more to
-- write than the one string cjson makes of them.
local jobs = #claimed == 0 and '[]' or cjson.encode(claimed)
if failure then return { wait or -1, now_text, deadline_text, jobs, failure } end
return { wait or -1, now_text, deadline_text, jobs }
