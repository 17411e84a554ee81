-- create.lua: create a session if absent, map it in the registry, and apply its first
-- transition, atomically. Two workers racing on the same new call cannot both create it:
-- the loser is told which session won and treats its event as one for that session.
-- The hash check is also what refuses a late copy of the INVITE (a retransmission, a replay,
-- a stalled worker's batch) after the call ended and its registry entries were deleted: a
-- UAS session id is derived from the INVITE's event id, and the ended hash lives on for the
-- ended TTL (at least the redelivery window), so the copy is told the session that exists.
--
-- KEYS[1]   session hash
-- KEYS[2]   history list (one text line per step, capped)
-- KEYS[3]   applied-events hash of an older sessiond (unused: the markers are the session
--           hash's field ``applied``)
-- KEYS[4]   outboxes hash: event id -> outbox, until the worker has emitted it (Redis
--           Cluster: elsewhere the commands go out here, as in transition.lua)
-- KEYS[5..] registry entries to create, each set to the session id
-- then      the d destination keys of the ops (d: see below), one per op, in order
-- ARGV[1]   unused (kept so create and transition share one argument layout)
-- ARGV[2]   event id of the first event
-- ARGV[3]   TTL in seconds applied to every key above
-- ARGV[4]   history length cap
-- ARGV[5]   outbox of the first transition to keep ("" when it has none, or they are ops)
-- ARGV[6]   unused
-- ARGV[7]   session id
-- ARGV[8]   the first event id's digest (store/applied.py): field ``applied``
-- ARGV[9]   unused (how many digests ``applied`` keeps)
-- ARGV[10]  n, then n field/value pairs: the whole initial session (sid, created_at and
--           version 1 included), after its first step
-- then      m, then m history lines
-- then      the streams' MAXLEN, d, then d ops run after the write (as in transition.lua)
-- Returns:
--   {"CREATED", "1"}        new session at version 1
--   {"EXISTS", sid}         a registry entry (or the session) already exists: sid owns it

local session, history, applied, outboxes = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local event_id, ttl, sid = ARGV[2], tonumber(ARGV[3]), ARGV[7]
local n = tonumber(ARGV[10])
local m = tonumber(ARGV[11 + 2 * n])
local ops = 12 + 2 * n + m  -- MAXLEN, d, the ops
local d = tonumber(ARGV[ops + 1])
local last = #KEYS - d  -- the last registry entry

for i = 5, last do
  local owner = redis.call('GET', KEYS[i])
  if owner then
    return {'EXISTS', owner}
  end
end
if redis.call('EXISTS', session) == 1 then
  return {'EXISTS', sid}
end

local pos = 11
redis.call('HSET', session, 'applied', ARGV[8])
if n > 0 then
  redis.call('HSET', session, unpack(ARGV, pos, pos + 2 * n - 1))
end
pos = pos + 2 * n

if m > 0 then
  local length = redis.call('RPUSH', history, unpack(ARGV, pos + 1, pos + m))
  if length > tonumber(ARGV[4]) then
    redis.call('LTRIM', history, -tonumber(ARGV[4]), -1)
  end
  redis.call('EXPIRE', history, ttl)
end

if ARGV[5] ~= '' then
  redis.call('HSET', outboxes, event_id, ARGV[5])
  redis.call('EXPIRE', outboxes, ttl)
end
redis.call('EXPIRE', session, ttl)
for i = 5, last do
  redis.call('SET', KEYS[i], sid, 'EX', ttl)
end

local maxlen = ARGV[ops]
pos = ops + 2
for i = last + 1, #KEYS do
  local op = ARGV[pos]
  if op == 'x' then
    redis.call('XADD', KEYS[i], 'MAXLEN', '~', maxlen, '*', 'id', ARGV[pos + 1],
      'type', ARGV[pos + 2], 'sid', ARGV[pos + 3], 'data', ARGV[pos + 4])
    pos = pos + 5
  elseif op == 'a' then
    redis.call('ZADD', KEYS[i], ARGV[pos + 2], ARGV[pos + 1])
    pos = pos + 3
  else
    redis.call('ZREM', KEYS[i], ARGV[pos + 1])
    pos = pos + 2
  end
end
return {'CREATED', '1'}
