-- lease.lua: hold up to N partition leases (worker affinity), renewing the ones held.
--
-- A partition's events go to the worker that holds its lease, so one worker sees all of a
-- session's events while it lives: its snapshot and route caches stay valid and the
-- compare-and-set rarely conflicts. Leases only steer reading; correctness never depends on
-- them (every transition is still a compare-and-set), so a lease that lapses is harmless.
--
-- KEYS[1..P] one lease per partition, in partition order (one hash slot: {leases})
-- ARGV[1]    worker name
-- ARGV[2]    lease time to live, milliseconds
-- ARGV[3]    how many leases to hold at most (0 releases every lease held)
-- Returns:   the partitions (0-based) this worker holds now

local me, ttl, target = ARGV[1], ARGV[2], tonumber(ARGV[3])
local held = {}
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == me then
    if #held < target then
      redis.call('PEXPIRE', KEYS[i], ttl)
      held[#held + 1] = i - 1
    else
      redis.call('DEL', KEYS[i])
    end
  end
end
for i = 1, #KEYS do
  if #held >= target then
    break
  end
  if redis.call('SET', KEYS[i], me, 'NX', 'PX', ttl) then
    held[#held + 1] = i - 1
  end
end
return held
