-- Release one slot and record the completion for the action's pool, atomically.
-- KEYS[1] slots hash, KEYS[2] the action's stats hash, KEYS[3] the action's recent-durations list
-- ARGV[1] host id, ARGV[2] duration in ms ('' when not timed), ARGV[3] how many durations to keep
-- The counter never goes below 0 and is never recreated for a host that was dropped meanwhile.
-- Returns 1 when a slot was given back, 0 when there was none to give back.
local released = 0
if tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') > 0 then
  redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
  released = 1
end
redis.call('HINCRBY', KEYS[2], 'completed', 1)
if ARGV[2] ~= '' then
  redis.call('HINCRBYFLOAT', KEYS[2], 'duration_ms_sum', ARGV[2])
  redis.call('HINCRBY', KEYS[2], 'timed', 1)
  redis.call('LPUSH', KEYS[3], ARGV[2])
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[3]) - 1)
end
return released
