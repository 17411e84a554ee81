-- media_route.lua: where a command for a leg goes when the session did not know the leg's
-- node (it reached the pool stream: the call ended, or was moved, before its MediaReady).
-- A destroy also marks the leg destroyed, so a create that claims it later makes no leg.
--
-- KEYS[1]   the leg's owner record ({T}:media-owner:<media id>, see media_claim.lua)
-- ARGV[1]   "1" for a destroy, else "0"
-- Returns:  the owner node's name, or "" when no node has claimed the leg

if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], 'destroyed', '1')
  if redis.call('TTL', KEYS[1]) < 0 then
    redis.call('EXPIRE', KEYS[1], 3600)
  end
end
return redis.call('HGET', KEYS[1], 'node') or ''
