-- prune.lua: deletes up to `limit` finished jobs whose finish time is at or before
-- the cutoff of their state, oldest first (ties by id). The client keeps `limit`
-- small (see PRUNE_BATCH in src/ops/maintenance.rs) and calls again for more, so that
-- no run blocks the server for long.
--
-- KEYS: [1] the jobs index, [2] the queue set, [3] the unique index (when ARGV[3] = 3;
--       absent when 0, on a cluster, where the caller removes the returned members
--       from the indexes), then 11 keys per queue group (see lib.lua).
-- ARGV: the common head (lib.lua), then: limit, and how long (µs) completed, discarded
--       and cancelled jobs are kept; a job goes once finished_at <= now - that.
-- Returns: two values per deleted job: its jobs-index member '<id>:<queue>', and its
--       unique-index member '<digest>:<id>:<queue>' ('' when it has no unique key; for
--       a job stored before unique keys were digested, which has no `unique_digest`,
--       the member of that layout, '<key length>:<key>:<id>:<queue>').
-- Effects: each job hash is deleted and its id removed from its finished set (and
--       from the jobs index and the unique index).
-- Cost: the finished sets are read a page at a time and merged by (finish time, id),
--       so a run reads about `limit` due members in all, plus a small first page per
--       set (not `limit` per set), and the deletions are one HMGET per job plus a few
--       multi-key DEL and ZREM calls.

local now, _, globals, groups, first = read_head()
local limit = tonumber(ARGV[first])
local cutoffs = {
  completed = num(clamp(now - tonumber(ARGV[first + 1]))),
  discarded = num(clamp(now - tonumber(ARGV[first + 2]))),
  cancelled = num(clamp(now - tonumber(ARGV[first + 3]))),
}
local index, uniques
if globals == 3 then index, uniques = KEYS[1], KEYS[3] end
if limit < 1 then return {} end

-- Every finished set, read a page at a time: `id` and `score` are its next due member
-- (nil once it has none left). The first page of a set is its share of `limit` (at
-- least 4, at most 64); each next page is twice the last (at most `limit`), so many
-- sets cost little more than `limit` members read, and one set few calls.
local first_page = math.max(4, math.min(64, math.ceil(limit / (3 * #groups))))
local sources = {}

local function advance(source)
  source.at = source.at + 2
  if source.at > #source.items then
    source.id = nil
    if source.exhausted then return end
    local page = source.page
    source.items = redis.call('ZRANGEBYSCORE', source.key, '-inf', source.cutoff, 'WITHSCORES', 'LIMIT', source.read, page)
    source.read = source.read + page
    source.page = math.min(2 * page, math.max(limit, 4))
    source.at = 1
    if #source.items < 2 * page then source.exhausted = true end
    if #source.items == 0 then return end
  end
  source.id = source.items[source.at]
  source.score = tonumber(source.items[source.at + 1])
end

for _, group in ipairs(groups) do
  for _, state in ipairs({ 'completed', 'discarded', 'cancelled' }) do
    local source = { group = group, state = state, key = group[state], cutoff = cutoffs[state],
      items = {}, at = -1, read = 0, page = first_page, exhausted = false }
    advance(source)
    if source.id then sources[#sources + 1] = source end
  end
end

-- The `limit` oldest due jobs across the sets.
local chosen = {}
while #chosen < limit do
  local best
  for _, source in ipairs(sources) do
    if source.id and (not best or source.score < best.score
        or (source.score == best.score and source.id < best.id)) then
      best = source
    end
  end
  if not best then break end
  chosen[#chosen + 1] = { best.id, best.group, best.state }
  advance(best)
end

local deleted, hashes, members, unique_members = {}, {}, {}, {}
local by_set = {}
for _, job in ipairs(chosen) do
  local id, group, state = job[1], job[2], job[3]
  local key = group.prefix .. id
  local member_of_key = stored_unique_member(key, id, group.queue)
  hashes[#hashes + 1] = key
  local set = group[state]
  if not by_set[set] then
    by_set[set] = {}
    by_set[#by_set + 1] = set
  end
  by_set[set][#by_set[set] + 1] = id
  local member = id .. ':' .. group.queue
  members[#members + 1] = member
  if member_of_key ~= '' then unique_members[#unique_members + 1] = member_of_key end
  deleted[#deleted + 1] = member
  deleted[#deleted + 1] = member_of_key
end

call_chunked('DEL', false, hashes)
for _, set in ipairs(by_set) do call_chunked('ZREM', set, by_set[set]) end
if index then call_chunked('ZREM', index, members) end
if uniques then call_chunked('ZREM', uniques, unique_members) end
return deleted
