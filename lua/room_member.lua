-- room_member.lua: store a conference member's changed flags, only while it is a member
-- (a flag change racing with a leave must not bring the member back).
--
-- KEYS[1]   the room's members ({room:NAME}:members, hash): session id -> member flags
-- ARGV[1]   the member's session id
-- ARGV[2]   its new flags ("muted=0 deaf=0 gain_db=0 whisper_to=")
-- Returns:  1 stored, 0 not a member

if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
