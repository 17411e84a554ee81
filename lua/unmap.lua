-- unmap.lua: remove registry entries, but only those that still point to the given session.
-- (A plain DEL could remove an entry that a newer session with the same dialog id now owns.)
--
-- KEYS[1..] registry entries (dialog, initial, media)
-- ARGV[1]   session id
-- Returns:  the number of entries removed

local removed = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    removed = removed + 1
  end
end
return removed
