-- Acquire one slot for an action, atomically.
-- KEYS[1] action-hosts set, KEYS[2] slots hash, KEYS[3] the action's stats hash,
-- KEYS[4] the action's registration
-- ARGV[1] host key prefix, ARGV[2] the host-hash field that marks the action as served,
-- ARGV[3] unreachable-report key prefix, ARGV[4] the limits hash (read-only for a namespace's user,
-- so not among KEYS, which Redis checks for writing), ARGV[5..] hosts to skip (this caller saw them
-- fail)
-- Among live, warm hosts that serve the action with slots in use below min(own cap, scaler limit),
-- and that no router reported unreachable, pick the fullest (packing); ties go to the lowest host id
-- (string order). Index entries whose host record expired, or that no longer serves the action,
-- are dropped on the way.
-- Returns {host_id, address, slots in use after this acquire, keep-alive (s) the host advertises,
-- 1 if the action is registered else 0 (Redis lost it: the caller registers it again),
-- the host's token (sent with the forwarded run)},
-- or false when no host has a free slot.
-- Cost: a few Redis calls per host serving the action (unpack() bounds that set to ~7,900 hosts).
local ids = redis.call('SMEMBERS', KEYS[1])
local skip = {}
for i = 5, #ARGV do skip[ARGV[i]] = true end
local best, best_used, best_address, best_keepalive, best_token = nil, -1, nil, nil, nil
if #ids > 0 then
  local used = redis.call('HMGET', KEYS[2], unpack(ids))
  local scaler_limits = redis.call('HMGET', ARGV[4], unpack(ids))
  for i, id in ipairs(ids) do
    local rec = redis.call('HMGET', ARGV[1] .. id, 'state', 'limit', 'address', ARGV[2], 'keepalive_s', 'token')
    if not rec[1] then
      -- expired or removed: forget the host everywhere acquire can see it
      redis.call('SREM', KEYS[1], id)
      redis.call('HDEL', KEYS[2], id)
    elseif not rec[4] then
      redis.call('SREM', KEYS[1], id)
    elseif rec[1] == 'warm' and not skip[id] and redis.call('EXISTS', ARGV[3] .. id) == 0 then
      local limit = tonumber(rec[2]) or 0
      if scaler_limits[i] then limit = math.min(limit, tonumber(scaler_limits[i])) end
      local n = tonumber(used[i]) or 0
      if n < limit and (n > best_used or (n == best_used and id < best)) then
        best, best_used, best_address, best_keepalive, best_token = id, n, rec[3], rec[5], rec[6]
      end
    end
  end
end
if not best then
  redis.call('HINCRBY', KEYS[3], 'rejected', 1)
  return false
end
redis.call('HINCRBY', KEYS[3], 'acquired', 1)
local in_use = redis.call('HINCRBY', KEYS[2], best, 1)
return {best, best_address, in_use, best_keepalive or '', redis.call('EXISTS', KEYS[4]), best_token or ''}
