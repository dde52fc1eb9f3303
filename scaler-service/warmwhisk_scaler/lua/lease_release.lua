-- Give the lease up, only if this holder has it. KEYS[1] lease key; ARGV[1] holder id.
-- Returns 1 when it was released.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
