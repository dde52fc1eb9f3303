-- Drop hosts whose record has expired from the hosts set, the slots hash and the limits hash.
-- KEYS[1] hosts set, KEYS[2] slots hash, KEYS[3] limits hash
-- ARGV[1] host key prefix, ARGV[2..] candidate host ids (checked again here, atomically)
-- Returns how many were dropped.
local dropped = 0
for i = 2, #ARGV do
  if redis.call('EXISTS', ARGV[1] .. ARGV[i]) == 0 then
    redis.call('SREM', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
    redis.call('HDEL', KEYS[3], ARGV[i])
    dropped = dropped + 1
  end
end
return dropped
