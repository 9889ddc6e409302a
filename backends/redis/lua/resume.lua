-- resume.lua: resumes one queue.
--
-- KEYS: [1] the queue's paused flag.
-- ARGV: [1] the pub/sub channel of wake-ups, [2] the queue name.
-- Returns: 1.
-- Effects: the flag is deleted and a wake-up for the queue is sent.

redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
