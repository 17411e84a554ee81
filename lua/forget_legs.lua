-- forget_legs.lua: drop a media node's legs hash, but only if it still belongs to the
-- incarnation the caller read (a node restarted under the same name rewrites the field
-- @incarnation first, and its new legs must not be forgotten); optionally start a new one.
--
-- KEYS[1]   the node's legs hash ({media:NAME}:legs)
-- ARGV[1]   the @incarnation the caller read ("" when the hash had none)
-- ARGV[2]   the new @incarnation to write, or "" to leave the hash deleted
-- Returns:  1 if the hash was dropped (and the new incarnation written), 0 if it had changed

local current = redis.call('HGET', KEYS[1], '@incarnation') or ''
if current ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], '@incarnation', ARGV[2])
end
return 1
