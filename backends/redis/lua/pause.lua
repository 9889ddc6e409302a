-- pause.lua: pauses one queue; claims skip it until it is resumed.
--
-- KEYS: [1] the queue's paused flag.
-- ARGV: none.
-- Returns: 1.
-- Effects: the flag is set ('1').

redis.call('SET', KEYS[1], '1')
return 1
