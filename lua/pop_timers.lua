-- pop_timers.lua: move due timers of one partition into that partition's event stream.
-- Removing a timer and appending its event happen in one step, so a timer fires exactly once
-- no matter how many workers poll, and a worker that dies after this call loses nothing:
-- the event is in the stream, owned by the consumer group.
--
-- KEYS[1]  timers sorted set of the partition (member "sid|event|epoch", score = due time)
-- KEYS[2]  events stream of the same partition
-- ARGV[1]  now, unix seconds
-- ARGV[2]  the most timers to pop in this call
-- ARGV[3]  events stream MAXLEN (approximate)
-- Returns: the number of timers that fired

local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  local sid, event, epoch = string.match(member, '^([^|]*)|([^|]*)|([^|]*)$')
  if sid then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*',
      'id', 'timer:' .. member, 'type', event, 'sid', sid, 'epoch', epoch)
  end
end
return #due
