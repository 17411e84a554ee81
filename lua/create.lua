-- create.lua: create a session if absent, map it in the registry, and apply its first
-- transition, atomically. Two workers racing on the same new call cannot both create it:
-- the loser is told which session won and treats its event as one for that session.
-- The hash check is also what refuses a late copy of the INVITE (a retransmission, a replay,
-- a stalled worker's batch) after the call ended and its registry entries were deleted: a
-- UAS session id is derived from the INVITE's event id, and the ended hash lives on for the
-- ended TTL (at least the redelivery window), so the copy is told the session that exists.
--
-- KEYS[1]   session hash
-- KEYS[2]   history stream (capped)
-- KEYS[3]   applied-events hash: event id -> outbox
-- KEYS[4..] registry entries to create, each set to the session id
-- ARGV[1]   unused (kept so create and transition share one argument layout)
-- ARGV[2]   event id of the first event
-- ARGV[3]   TTL in seconds applied to every key above
-- ARGV[4]   history MAXLEN (approximate trimming)
-- ARGV[5]   outbox of the first transition
-- ARGV[6]   worker name (history)
-- ARGV[7]   now, unix seconds as text (history)
-- ARGV[8]   unused
-- ARGV[9]   session id
-- ARGV[10]  n, then n field/value pairs: the whole initial session (sid and created_at
--           included), after its first step
-- then      m, then m steps for the history: from, event, to, actions, k, then k
--           field/value pairs of the event's payload (digit, code, target...)
-- Returns:
--   {"CREATED", "1"}        new session at version 1
--   {"EXISTS", sid}         a registry entry (or the session) already exists: sid owns it

local session, history, applied = KEYS[1], KEYS[2], KEYS[3]
local event_id, ttl, sid = ARGV[2], tonumber(ARGV[3]), ARGV[9]

for i = 4, #KEYS do
  local owner = redis.call('GET', KEYS[i])
  if owner then
    return {'EXISTS', owner}
  end
end
if redis.call('EXISTS', session) == 1 then
  return {'EXISTS', sid}
end

local n = tonumber(ARGV[10])
local pos = 11
if n > 0 then
  redis.call('HSET', session, unpack(ARGV, pos, pos + 2 * n - 1))
end
pos = pos + 2 * n
redis.call('HSET', session, 'version', '1')

local m = tonumber(ARGV[pos])
pos = pos + 1
for i = 1, m do
  local entry = {'event_id', event_id, 'version', '1',
    'from', ARGV[pos], 'event', ARGV[pos + 1], 'to', ARGV[pos + 2], 'actions', ARGV[pos + 3],
    'worker', ARGV[6], 'at', ARGV[7]}
  local k = tonumber(ARGV[pos + 4])
  for j = pos + 5, pos + 4 + 2 * k do
    entry[#entry + 1] = ARGV[j]
  end
  redis.call('XADD', history, 'MAXLEN', '~', ARGV[4], '*', unpack(entry))
  pos = pos + 5 + 2 * k
end

redis.call('HSET', applied, event_id, ARGV[5])
redis.call('EXPIRE', session, ttl)
redis.call('EXPIRE', history, ttl)
redis.call('EXPIRE', applied, ttl)
for i = 4, #KEYS do
  redis.call('SET', KEYS[i], sid, 'EX', ttl)
end
return {'CREATED', '1'}
