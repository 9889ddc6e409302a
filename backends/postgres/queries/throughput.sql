-- The per-minute throughput samples from the minute holding `since` on, by queue (byte
-- order) then minute. Minutes nobody recorded have no row.
--
-- $1 since  timestamptz  truncated to its minute here (in UTC)
SELECT queue, minute, completed, failed
FROM {schema}.throughput
WHERE minute >= date_trunc('minute', $1::timestamptz, 'UTC')
ORDER BY queue COLLATE "C", minute
