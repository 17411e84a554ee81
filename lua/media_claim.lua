-- media_claim.lua: a media node asks to make the leg of a `create` command; the leg's owner
-- record says yes to exactly one node per create, so every later command for the leg can
-- reach the node that has it, and a re-sent or superseded create makes no second leg.
--
-- KEYS[1]   the session hash ({T}:session:<sid>): the session lives while it has no field
--           ended_by (set when it reaches a terminal state)
-- KEYS[2]   the leg's owner record ({T}:media-owner:<media id>, hash): node, incarnation,
--           create (the current create command id), c:<create id> for every create a later
--           one replaced (an older sessiond wrote it for the current one too), destroyed (a
--           destroy came before any owner)
-- ARGV[1]   session id
-- ARGV[2]   the claiming node's name
-- ARGV[3]   its incarnation
-- ARGV[4]   the create command id
-- ARGV[5]   "1" to take over a create another node claimed but never finished (the entry was
--           reclaimed from a node that stopped acking it), else "0"
-- ARGV[6]   "1" if the create moves the leg from a lost node (it carries `origin`)
-- Returns:  {"OK", ""}         make the leg (recorded as this node's)
--           {"ENDED", ""}      the session is terminal (its hash has ended_by), or the leg
--                              was destroyed; a session without a hash (expired long ago,
--                              or a test) is not refused
--           {"OWNED", node}    this create belongs to another node (a re-sent command)
--           {"STALE", ""}      an older create of this leg (a newer one replaced it)
--           {"FENCED", ""}     a relocation of a leg this very incarnation holds: the node
--                              was declared lost (stalled) and the call is being moved

local session, owner = KEYS[1], KEYS[2]
local node, inc, create = ARGV[2], ARGV[3], ARGV[4]

local live = redis.call('EXISTS', session) == 1
if (live and redis.call('HEXISTS', session, 'ended_by') == 1)
    or redis.call('HEXISTS', owner, 'destroyed') == 1 then
  return {'ENDED', ''}
end
local rec = redis.call('HMGET', owner, 'node', 'incarnation', 'create')
local cur_node, cur_inc, cur_create = rec[1], rec[2], rec[3]
if cur_create == create then
  if cur_node == node and cur_inc == inc then
    return {'OK', ''}
  end
  if ARGV[5] ~= '1' then
    return {'OWNED', cur_node}
  end
elseif cur_create and redis.call('HEXISTS', owner, 'c:' .. create) == 1 then
  return {'STALE', ''}
elseif cur_create and cur_node == node and cur_inc == inc and ARGV[6] == '1' then
  return {'FENCED', ''}
end
redis.call('HSET', owner, 'node', node, 'incarnation', inc, 'create', create)
if cur_create and cur_create ~= create then
  redis.call('HSET', owner, 'c:' .. cur_create, '1')  -- replaced: STALE from now on
end
local ttl = live and redis.call('PTTL', session) or 0
if ttl < 3600000 then
  ttl = 3600000
end
redis.call('PEXPIRE', owner, ttl)
return {'OK', ''}
