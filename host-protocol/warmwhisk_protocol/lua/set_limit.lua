-- Set the scaler's concurrency limit for a live host.
-- KEYS[1] host hash, KEYS[2] limits hash; ARGV[1] host id, ARGV[2] limit
-- Returns 1 when set, 0 when the host has no live record (nothing is stored then).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
