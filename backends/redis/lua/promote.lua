-- promote.lua: makes due scheduled and retryable jobs available.
--
-- KEYS: 11 keys per queue group (see lib.lua); no global key.
-- ARGV: the common head (lib.lua), then the most jobs to move per set and group.
-- Returns: {moved, more}: how many jobs became available, and 1 when a set had more
--       due jobs than the limit (call again), else 0.
-- Effects: state = available (run_at kept), moved from the scheduled or retryable set
--       to the available set; one wake-up per queue that got jobs.

local now, channel, _, groups, first = read_head()
local limit = tonumber(ARGV[first])

local moved, more = 0, 0
for _, group in ipairs(groups) do
  local n, again = promote(group, now, limit)
  moved = moved + n
  if again then more = 1 end
end
publish(channel, groups)
return { moved, more }
