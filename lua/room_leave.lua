-- room_leave.lua: a call leaves a conference room; the last one out removes the room.
--
-- KEYS[1]   the room record ({room:NAME}:room, hash)
-- KEYS[2]   the room's members ({room:NAME}:members, hash): session id -> member flags
-- ARGV[1]   the member's session id
-- Returns:  {"LEFT", members}   removed; this many members are left
--           {"EMPTY", 0}        removed, and it was the last: both keys are deleted
--           {"ABSENT", members} it was not a member (a repeated leave)

local room, members = KEYS[1], KEYS[2]
if redis.call('HDEL', members, ARGV[1]) == 0 then
  return {'ABSENT', redis.call('HLEN', members)}
end
local left = redis.call('HLEN', members)
if left == 0 then
  redis.call('DEL', room, members)
  return {'EMPTY', 0}
end
return {'LEFT', left}
