-- save_periodic.lua: saves what a scheduler did with one periodic schedule; the
-- stored last tick never moves back (the compare-and-set of `Storage::save_periodic`).
--
-- KEYS: [1] the periodic records (hash: schedule name -> record), in the prefix's slot.
-- ARGV: [1] clock override in µs ('' = the server's TIME), [2] the schedule's name,
--       [3] the update's last tick in µs ('' = none: keep the stored one), [4] its next
--       tick in µs ('' = none), [5] its spec (any text).
-- A record is '<last_tick>|<next_tick>|<updated_at>|<spec>': three integers in µs
-- (an empty one for a tick that is not set), then the spec as the whole remainder, so
-- a spec holding '|' reads back unchanged.
-- Returns: 1 saved, 0 stale (nothing written).
-- Effects: when the stored record has the spec ARGV[5] and a last tick later than
--       ARGV[3], nothing (a record of another spec never makes a save stale). Otherwise the
--       record becomes the update's next tick and spec, the later of the two last
--       ticks, and updated_at = now. A stored value that is not a record (written by
--       hand) counts as no record and is replaced.

local now = read_clock(ARGV[1])
local given = nil
if ARGV[3] ~= '' then given = tonumber(ARGV[3]) end

local last = given
local stored = redis.call('HGET', KEYS[1], ARGV[2])
if stored then
  local kept, spec = string.match(stored, '^(-?%d+)|[^|]*|[^|]*|(.*)$')
  kept = tonumber(kept or '')
  if kept then
    if given and given < kept and spec == ARGV[5] then return 0 end
    if not given or given < kept then last = kept end
  end
end

local record = (last and num(last) or '') .. '|' .. ARGV[4] .. '|' .. num(now) .. '|' .. ARGV[5]
redis.call('HSET', KEYS[1], ARGV[2], record)
return 1
