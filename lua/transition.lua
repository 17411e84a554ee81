-- transition.lua: apply one decided transition to an existing session, atomically.
--
-- The worker read the session at version V, decided, and now asks: "if the session is still
-- at V and this event was never applied, write the new fields, bump the version, append the
-- steps to the history and send its commands". Anything else is refused, never half-applied.
-- Its commands go out here, with the write (direct emission, on a store that is not a Redis
-- Cluster: the ops after the history lines, their keys the last KEYS), or in a Redis Cluster,
-- where their streams are on other slots, as an outbox kept until the worker has emitted it
-- (its last round deletes it from the outboxes hash): a redelivered event whose outbox is
-- still there gets it again (an older sessiond's too), one whose outbox went out gets "".
--
-- KEYS[1]   session hash
-- KEYS[2]   history list (one text line per step, capped)
-- KEYS[3]   applied-events hash: the markers that overflowed field ``applied`` (digest ->
--           ""), and those an older sessiond wrote (event id -> "", or the outbox itself)
-- KEYS[4]   outboxes hash: event id -> outbox, until the worker has emitted it
-- KEYS[5..] registry entries that map to this session (TTL refreshed; removed at the end)
-- then      the d destination keys of the ops (d: see below), one per op, in order
-- ARGV[1]   expected version (decimal text)
-- ARGV[2]   event id
-- ARGV[3]   TTL in seconds applied to every key above (when the state is terminal, or when
--           the session's TTL has run down by more than a minute: so a busy call costs one
--           TTL read per transition, not an EXPIRE per key)
-- ARGV[4]   history length cap
-- ARGV[5]   outbox to keep: opaque bytes ("" when there are no commands, or they are ops)
-- ARGV[6]   "1" if the new state is terminal: registry entries pointing here are deleted
-- ARGV[7]   session id (registry entries are deleted only if they still point to it)
-- ARGV[8]   the event id's digest (store/applied.py: 8 characters), appended to field
--           ``applied``
--           (space-separated, the newest ARGV[9] kept there; older ones move to KEYS[3])
-- ARGV[9]   how many digests ``applied`` keeps
-- ARGV[10]  n, then n field/value pairs for HSET, ``version`` (expected + 1) among them
-- then      m, then m history lines
-- then      the streams' MAXLEN (approximate), d, then d ops run after the write, in order,
--           each on its key: "x" id type sid data (XADD of a command entry), "a" member
--           score (ZADD), "r" member (ZREM)
-- Returns:
--   {"OK", new_version}
--   {"DUPLICATE", outbox}   this event id was applied before: re-emit its outbox ("" once
--                           it was emitted, or when its commands went out with it)
--   {"CONFLICT", version}   the session is no longer at the expected version
--   {"MISSING", ""}         there is no such session (never created, or expired)

local session, history, applied, outboxes = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local event_id, ttl = ARGV[2], tonumber(ARGV[3])

local digest, keep = ARGV[8], tonumber(ARGV[9])
local version = redis.call('HGET', session, 'version')
if not version then
  return {'MISSING', ''}
end
local done = redis.call('HGET', session, 'applied') or ''  -- (HGET: the ACL has no HMGET)
if string.find(' ' .. done .. ' ', ' ' .. digest .. ' ', 1, true) then
  return {'DUPLICATE', redis.call('HGET', outboxes, event_id) or ''}
end
local full = #done >= keep * (#digest + 1) - 1  -- only then have markers moved to KEYS[3]
local marker = (full and redis.call('HGET', applied, digest)) or redis.call('HGET', applied, event_id)
if marker then  -- (an older sessiond's marker is the event id; older still, it was the outbox)
  return {'DUPLICATE', redis.call('HGET', outboxes, event_id) or marker}
end
if version ~= ARGV[1] then
  return {'CONFLICT', version}
end

local new_version = tostring(tonumber(version) + 1)
if done ~= '' then
  done = done .. ' ' .. digest
  if #done > keep * (#digest + 1) - 1 then  -- full: the oldest marker moves to KEYS[3]
    redis.call('HSET', applied, string.sub(done, 1, #digest), '')
    redis.call('EXPIRE', applied, redis.call('TTL', session))
    done = string.sub(done, #digest + 2)
  end
else
  done = digest
end
redis.call('HSET', session, 'applied', done)
local n = tonumber(ARGV[10])
local pos = 11
if n > 0 then
  redis.call('HSET', session, unpack(ARGV, pos, pos + 2 * n - 1))
end
pos = pos + 2 * n

local m = tonumber(ARGV[pos])
local ops = pos + m + 1  -- MAXLEN, d, the ops
local d = tonumber(ARGV[ops + 1])
if m > 0 then
  -- pcall: a call's history written by an older sessiond is a stream (WRONGTYPE): such a
  -- call keeps the history it has rather than failing its transitions
  local length = redis.pcall('RPUSH', history, unpack(ARGV, pos + 1, pos + m))
  if type(length) == 'number' and length > tonumber(ARGV[4]) then
    redis.call('LTRIM', history, -tonumber(ARGV[4]), -1)
  elseif length == m then  -- no history before (none at its creation): give it the TTL
    redis.call('EXPIRE', history, redis.call('TTL', session))
  end
end

if ARGV[5] ~= '' then
  redis.call('HSET', outboxes, event_id, ARGV[5])
  redis.call('EXPIRE', outboxes, ttl)
end
local terminal = ARGV[6] == '1'
if terminal or redis.call('TTL', session) < ttl - 60 then
  redis.call('EXPIRE', session, ttl)
  redis.call('EXPIRE', history, ttl)
  redis.call('EXPIRE', applied, ttl)
  for i = 5, #KEYS - d do
    if terminal then
      if redis.call('GET', KEYS[i]) == ARGV[7] then
        redis.call('DEL', KEYS[i])
      end
    else
      redis.call('EXPIRE', KEYS[i], ttl)
    end
  end
end

local maxlen, first = ARGV[ops], #KEYS - d
pos = ops + 2
for i = first + 1, #KEYS do
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
return {'OK', new_version}
