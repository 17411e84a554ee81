-- room_join.lua: a media node mixes a call into a conference room; the room record says
-- which node mixes the room, so that every member ends up on that one node.
--
-- KEYS[1]   the room record ({room:NAME}:room, hash): name, media_node, created_at,
--           node_since, moves
-- KEYS[2]   the room's members ({room:NAME}:members, hash): session id -> member flags
--           ("muted=0 deaf=0 gain_db=0 whisper_to=")
-- ARGV[1]   the room name
-- ARGV[2]   the joining node
-- ARGV[3]   the member's session id
-- ARGV[4]   the time now (unix seconds)
-- ARGV[5]   a node the caller found dead (no heartbeat), whose room it may take over, or ""
-- ARGV[6]   the member's flags if it has none stored yet
-- ARGV[7]   the TTL of both keys, in seconds (renewed at every join)
-- Returns:  {"OK", flags, members}   joined on this node (the room now lives here; the
--                                    stored flags win over ARGV[6])
--           {"ELSEWHERE", node, 0}   the room lives on another live node: move the call

local room, members = KEYS[1], KEYS[2]
local name, node, sid, now, dead = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local cur = redis.call('HGET', room, 'media_node')
if cur and cur ~= '' and cur ~= node and cur ~= dead then
  return {'ELSEWHERE', cur, 0}
end
if redis.call('HEXISTS', room, 'created_at') == 0 then
  redis.call('HSET', room, 'name', name, 'created_at', now, 'moves', '0')
end
if cur ~= node then
  redis.call('HSET', room, 'media_node', node, 'node_since', now)
  if cur and cur ~= '' then
    redis.call('HINCRBY', room, 'moves', 1)
  end
end
local flags = redis.call('HGET', members, sid)
if not flags then
  flags = ARGV[6]
  redis.call('HSET', members, sid, flags)
end
redis.call('EXPIRE', room, ARGV[7])
redis.call('EXPIRE', members, ARGV[7])
return {'OK', flags, redis.call('HLEN', members)}
