-- Forget a host: its record, index entries, slot counter and scaler limit; leave a tombstone so that
-- a heartbeat already on its way does not bring it back.
-- KEYS[1] host hash, KEYS[2] hosts set, KEYS[3] slots hash, KEYS[4] limits hash, KEYS[5] tombstone
-- ARGV[1] host id, ARGV[2] action-hosts key prefix, ARGV[3] tombstone TTL in ms
-- Returns 1 when the host had a live record, else 0.
local actions = redis.call('HGET', KEYS[1], 'actions')
if actions then
  for _, action in ipairs(cjson.decode(actions)) do redis.call('SREM', ARGV[2] .. action, ARGV[1]) end
end
local existed = redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('SET', KEYS[5], '1', 'PX', ARGV[3])
return existed
