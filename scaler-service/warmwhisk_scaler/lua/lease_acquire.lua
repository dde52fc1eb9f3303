-- Take the lease if free, or renew it if this holder has it.
-- KEYS[1] lease key; ARGV[1] holder id, ARGV[2] TTL in ms. Returns 1 when held by ARGV[1] afterwards.
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
