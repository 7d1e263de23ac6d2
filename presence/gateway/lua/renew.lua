-- renew: replace the TTL of many leases in one call (one heartbeat tick), each only while its
-- value is still the caller's fence: compare-and-set, so a holder whose lease expired and was
-- granted to someone else cannot renew its successor's lease. Renew replaces, never adds. The
-- leases may be any locks of any workspaces (a workspace's own lease or a named lock's). Now and
-- then (key_idle_ms > 0) a renewed lease's holder record, wait queue and its workspace's locks
-- set get the key idle time again: they must outlive the lease, and a grant gave them that time,
-- so one refresh in a quarter of it is plenty.
-- Also how a stopping process keeps its tabs' leases for the restart grace (lease_ttl_ms = the
-- grace): the same compare-and-set, the new TTL counted by Redis from when it runs.
-- Libraries: none
-- KEYS[1..]  leases       - per lease: its lease key, then (only when key_idle_ms > 0) its holder
--                           key, its queue key and its workspace's locks key (any slots on plain
--                           Redis; one slot per call on Cluster)
-- ARGV[1]    lease_ttl_ms - the leases' new TTL (the lease TTL, or the restart grace)
-- ARGV[2]    fences       - the fences expected, one per lease in KEYS order, separated by ','
-- ARGV[3]    key_idle_ms  - the new TTL of the holder records, queues and locks sets, or 0: those
--                           left as they are
-- Returns a string with one character per lease: '1' renewed, '0' not ours any more (expired or
-- replaced). One string and one argument for all fences, not one value each: for 10,000 leases
-- that halves what the client packs and leaves it one reply to parse instead of 10,000.
-- The TTLs go to Redis as the strings they came as: a Lua number is formatted again on every call.
local ttl, idle = ARGV[1], ARGV[3]
local stride = tonumber(idle) > 0 and 4 or 1
local out = {}
local i = 0
for fence in string.gmatch(ARGV[2], '[^,]+') do
  i = i + 1
  local at = stride * (i - 1)
  if redis.call('GET', KEYS[at + 1]) == fence then
    redis.call('PEXPIRE', KEYS[at + 1], ttl)
    if stride == 4 then
      redis.call('PEXPIRE', KEYS[at + 2], idle)
      redis.call('PEXPIRE', KEYS[at + 3], idle)
      redis.call('PEXPIRE', KEYS[at + 4], idle)
    end
    out[i] = '1'
  else
    out[i] = '0'
  end
end
return table.concat(out)
