-- renew: replace the TTL of many leases in one call (one heartbeat tick), each only while its
-- value is still the caller's fence: compare-and-set, so a holder whose lease expired and was
-- granted to someone else cannot renew its successor's lease. Renew replaces, never adds.
-- (Standalone: _lib.lua is not prepended.)
-- KEYS: lease keys, one per lease (any slots on plain Redis; one slot per call on Cluster)
-- ARGV: [1] ttl ms, [1 + i] the fence expected in KEYS[i]
-- Returns one integer per lease: 1 renewed, 0 not ours any more (expired or replaced).
local ttl = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i + 1] then
    redis.call('PEXPIRE', KEYS[i], ttl)
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
