-- register.lua: apply one REGISTER to an address-of-record's bindings (RFC 3261 10.3 steps
-- 6-8), atomically, whichever edge received it; expired bindings are dropped on the way, so
-- nothing outlives its expiry: the key's own TTL is that of its longest binding.
--
-- KEYS[1]   the AOR's location hash (location:<user>@<domain>): contact URI -> binding, a
--           JSON object with at least expires_at (unix seconds), call_id and cseq
-- ARGV[1]   now (unix seconds, the edge's clock)
-- ARGV[2]   the REGISTER's Call-ID
-- ARGV[3]   its CSeq number
-- ARGV[4]   "*" to remove every binding (Contact: *), "" otherwise
-- ARGV[5]   the most bindings the AOR may hold
-- ARGV[6..] triples: contact URI, seconds granted (0: remove it), binding JSON to store
-- Returns:  {"OK", created, removed, expired, binding...}  every binding now held (JSON)
--           {"OUT_OF_ORDER", contact}  a binding of this Call-ID has this CSeq or a newer
--                                      one (10.3 step 7: the request fails, nothing changes)
--           {"TOO_MANY", held}         the update would leave more than ARGV[5] bindings

local key = KEYS[1]
local now = tonumber(ARGV[1])
local call_id, cseq, wildcard = ARGV[2], tonumber(ARGV[3]), ARGV[4] == '*'
local most = tonumber(ARGV[5])

local live, count, expired = {}, 0, 0
local flat = redis.call('HGETALL', key)
for i = 1, #flat, 2 do
  local ok, b = pcall(cjson.decode, flat[i + 1])
  if ok and type(b) == 'table' and tonumber(b.expires_at) and tonumber(b.expires_at) > now then
    b.json = flat[i + 1]
    live[flat[i]] = b
    count = count + 1
  else
    redis.call('HDEL', key, flat[i])
    expired = expired + 1
  end
end

local function older(b)
  return b.call_id == call_id and (tonumber(b.cseq) or 0) >= cseq
end

local created, removed = 0, 0
if wildcard then
  for contact, b in pairs(live) do
    if older(b) then return {'OUT_OF_ORDER', contact} end
  end
  for contact in pairs(live) do
    redis.call('HDEL', key, contact)
  end
  removed, live = count, {}
else
  local after = count
  for i = 6, #ARGV, 3 do
    local b = live[ARGV[i]]
    if b ~= nil and older(b) then return {'OUT_OF_ORDER', ARGV[i]} end
    local keep = tonumber(ARGV[i + 1]) > 0
    if b == nil and keep then after = after + 1 end
    if b ~= nil and not keep then after = after - 1 end
  end
  if after > most and after > count then return {'TOO_MANY', tostring(count)} end
  for i = 6, #ARGV, 3 do
    local contact = ARGV[i]
    if tonumber(ARGV[i + 1]) > 0 then
      if live[contact] == nil then created = created + 1 end
      redis.call('HSET', key, contact, ARGV[i + 2])
      live[contact] = cjson.decode(ARGV[i + 2])
      live[contact].json = ARGV[i + 2]
    elseif live[contact] ~= nil then
      redis.call('HDEL', key, contact)
      live[contact] = nil
      removed = removed + 1
    end
  end
end

local out, latest = {'OK', created, removed, expired}, 0
for _, b in pairs(live) do
  out[#out + 1] = b.json
  latest = math.max(latest, tonumber(b.expires_at))
end
if latest > now then
  redis.call('EXPIRE', key, math.ceil(latest - now) + 1)
else
  redis.call('DEL', key)
end
return out
