-- snapshot: read the whole workspace (after announcing a silent expiry and pruning dead tabs).
-- KEYS[1..8] - the workspace keys: lease, holder, fence, seq, tabs, info, queue, request (_lib.lua)
-- ARGV[1..5] - channel, publish command, lease TTL ms, scope, key idle ms (_lib.lua)
-- Returns {status, detail JSON or '', event JSON...}, the events in the order published:
--   'sync', {seq, at, holder, ttl_ms, tabs, queue, request}  (at: Redis time of the read, ms)
-- Events: a silent expiry ('expired', then the handoff's events), then pruned tabs ('left').
local ws = workspace(KEYS, ARGV)
local now = now_ms()
settle(ws)
return reply(ws, 'sync', snapshot(ws, now))
