-- transition.lua: apply one decided transition to an existing session, atomically.
--
-- The worker read the session at version V, decided, and now asks: "if the session is still
-- at V and this event was never applied, write the new fields, bump the version, append the
-- steps to the history and keep the outbox". Anything else is refused, never half-applied.
--
-- KEYS[1]   session hash
-- KEYS[2]   history stream (capped)
-- KEYS[3]   applied-events hash: event id -> outbox
-- KEYS[4..] registry entries that map to this session (TTL refreshed; removed at the end)
-- ARGV[1]   expected version (decimal text)
-- ARGV[2]   event id
-- ARGV[3]   TTL in seconds applied to every key above (when the state is terminal, or when
--           the session's TTL has run down by more than a minute: so a busy call costs one
--           TTL read per transition, not an EXPIRE per key)
-- ARGV[4]   history MAXLEN (approximate trimming)
-- ARGV[5]   outbox: opaque bytes, returned again if the event is redelivered
-- ARGV[6]   worker name (history)
-- ARGV[7]   now, unix seconds as text (history)
-- ARGV[8]   "1" if the new state is terminal: registry entries pointing here are deleted
-- ARGV[9]   session id (registry entries are deleted only if they still point to it)
-- ARGV[10]  n, then n field/value pairs for HSET
-- then      m, then m steps for the history: from, event, to, actions, k, then k
--           field/value pairs of the event's payload (digit, code, target...)
-- Returns:
--   {"OK", new_version}
--   {"DUPLICATE", outbox}   this event id was applied before: re-emit its outbox
--   {"CONFLICT", version}   the session is no longer at the expected version
--   {"MISSING", ""}         there is no such session (never created, or expired)

local session, history, applied = KEYS[1], KEYS[2], KEYS[3]
local event_id, ttl = ARGV[2], tonumber(ARGV[3])

local version = redis.call('HGET', session, 'version')
if not version then
  return {'MISSING', ''}
end
local outbox = redis.call('HGET', applied, event_id)
if outbox then
  return {'DUPLICATE', outbox}
end
if version ~= ARGV[1] then
  return {'CONFLICT', version}
end

local new_version = tostring(tonumber(version) + 1)
local n = tonumber(ARGV[10])
local pos = 11
if n > 0 then
  redis.call('HSET', session, unpack(ARGV, pos, pos + 2 * n - 1))
end
pos = pos + 2 * n
redis.call('HSET', session, 'version', new_version)

local m = tonumber(ARGV[pos])
pos = pos + 1
for i = 1, m do
  local entry = {'event_id', event_id, 'version', new_version,
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
local terminal = ARGV[8] == '1'
if terminal or redis.call('TTL', session) < ttl - 60 then
  redis.call('EXPIRE', session, ttl)
  redis.call('EXPIRE', history, ttl)
  redis.call('EXPIRE', applied, ttl)
  for i = 4, #KEYS do
    if terminal then
      if redis.call('GET', KEYS[i]) == ARGV[9] then
        redis.call('DEL', KEYS[i])
      end
    else
      redis.call('EXPIRE', KEYS[i], ttl)
    end
  end
end
return {'OK', new_version}
