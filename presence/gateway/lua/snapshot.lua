-- snapshot: read the whole workspace (after announcing a silent expiry and pruning dead tabs).
-- KEYS[1..8] - the workspace keys: lease, holder, fence, seq, tabs, info, queue, request (_lib.lua)
-- ARGV[1..4] - channel, publish command, lease TTL ms, scope (_lib.lua)
-- Returns {status, detail JSON or '', event JSON...}, the events in the order published:
--   'sync', {seq, holder, ttl_ms, tabs, queue, request}
-- Events: a silent expiry ('expired', then the handoff's events), then pruned tabs ('left').
local ws = workspace(KEYS, ARGV)
local now = now_ms()
settle(ws)
return reply(ws, 'sync', snapshot(ws, now))
