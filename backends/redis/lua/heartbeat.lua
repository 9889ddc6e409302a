-- heartbeat.lua: extends the leases still held.
--
-- KEYS: 11 keys per queue group (see lib.lua); no global key.
-- ARGV: the common head (lib.lua), then the lease (µs), then 3 values per claim:
--       group number, job id, lease token.
-- Returns: one integer per claim, in order: 0 lost (the job is not running under this
--       token), 1 extended, 2 extended and a cancel was requested.
-- Effects: lease_expires_at = now + lease, and the running set's score with it.

local now, _, _, groups, first = read_head()
local deadline = clamp(now + tonumber(ARGV[first]))

local results = {}
for j = first + 1, #ARGV, 3 do
  local group, id, token = groups[tonumber(ARGV[j])], ARGV[j + 1], ARGV[j + 2]
  local key = group.prefix .. id
  local f = redis.call('HMGET', key, 'state', 'lease_token', 'cancel_requested_at')
  if f[1] == 'running' and f[2] == token then
    redis.call('HSET', key, 'lease_expires_at', num(deadline))
    redis.call('ZADD', group.running, num(deadline), id)
    if f[3] then results[#results + 1] = 2 else results[#results + 1] = 1 end
  else
    results[#results + 1] = 0
  end
end
return results
