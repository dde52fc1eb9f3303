-- Upsert a host's record, refresh its TTL and index it under each action it serves, atomically.
-- KEYS[1] host hash, KEYS[2] hosts set, KEYS[3] slots hash
-- ARGV[1] host id, ARGV[2] TTL in ms, ARGV[3] action-hosts key prefix, ARGV[4] actions (JSON list),
-- ARGV[5] reported in-flight, ARGV[6] the host's removal tombstone (read-only for a namespace's
-- user, so not among KEYS, which Redis checks for writing), ARGV[7..] the record's field/value pairs
-- The slot counter is never overwritten: it is only seeded, from the host's own in-flight count,
-- when missing (a new host, or Redis restarted and lost it). The scaler's limit is not touched.
-- Returns 0 (and writes nothing) for a host removed within the tombstone's lifetime, else 1.
if redis.call('EXISTS', ARGV[6]) == 1 then return 0 end
local served = {}
for _, action in ipairs(cjson.decode(ARGV[4])) do
  served[action] = true
  redis.call('SADD', ARGV[3] .. action, ARGV[1])
end
local old = redis.call('HGET', KEYS[1], 'actions')
if old then
  for _, action in ipairs(cjson.decode(old)) do
    if not served[action] then redis.call('SREM', ARGV[3] .. action, ARGV[1]) end
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HSETNX', KEYS[3], ARGV[1], ARGV[5])
return 1
