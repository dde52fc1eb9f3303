-- Drop hosts whose record has expired from the hosts set and the slots hash. Their scaler limit
-- stays (a host whose heartbeat was only late must not come back at its own cap); whoever stops
-- hosts removes it (remove_host).
-- KEYS[1] hosts set, KEYS[2] slots hash, KEYS[3] limits hash
-- ARGV[1] host key prefix, ARGV[2..] candidate host ids (checked again here, atomically)
-- Returns how many were dropped.
local dropped = 0
for i = 2, #ARGV do
  if redis.call('EXISTS', ARGV[1] .. ARGV[i]) == 0 then
    redis.call('SREM', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
    dropped = dropped + 1
  end
end
return dropped
