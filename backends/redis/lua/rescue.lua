-- rescue.lua: ends the leases whose deadline is at or before now.
--
-- KEYS: 11 keys per queue group (see lib.lua); no global key.
-- ARGV: the common head (lib.lua), then the most jobs per group, then the error to
--       record for a lost attempt.
-- Returns: {rescued, discarded, cancelled, more}; more is 1 when a group had more
--       expired leases than the limit (call again), else 0.
-- Effects: the lease is released (as in report.lua); a job whose cancel was
--       requested is cancelled; otherwise the error is recorded against the attempt,
--       and the job is discarded when attempt >= max_attempts, else available again
--       with run_at = now. One
--       wake-up per queue that got available jobs, or that has some and was at its
--       concurrency limit until these rescues freed a slot, or has a limit per key
--       that the key of one of these jobs was at.

local now, channel, _, groups, first = read_head()
local limit, message = tonumber(ARGV[first]), ARGV[first + 1]

local rescued, discarded, cancelled, more = 0, 0, 0, 0
for _, group in ipairs(groups) do
  local ids = redis.call('ZRANGEBYSCORE', group.running, '-inf', num(now), 'LIMIT', 0, limit)
  if #ids >= limit then more = 1 end
  for _, id in ipairs(ids) do
    local key = group.prefix .. id
    local f = redis.call('HMGET', key, 'state', 'attempt', 'max_attempts', 'cancel_requested_at', 'priority',
      'limit_key')
    release(group, key, id, f[6])
    if f[1] == 'running' then
      if f[4] then
        finish(group, key, id, 'cancelled', now)
        cancelled = cancelled + 1
      else
        local attempt = tonumber(f[2]) or 0
        record_error(key, attempt, now, message)
        if attempt >= (tonumber(f[3]) or 0) then
          finish(group, key, id, 'discarded', now)
          discarded = discarded + 1
        else
          make_available(group, key, id, f[5], now)
          rescued = rescued + 1
        end
      end
    end
  end
end
wake_freed(groups)
publish(channel, groups)
return { rescued, discarded, cancelled, more }
