-- snapshot: read the whole workspace (after announcing a silent expiry and pruning dead tabs).
-- KEYS: the eight workspace keys; ARGV[1..4]: channel, publish command, lease TTL, scope (_lib.lua).
-- Returns {'sync', {seq, holder, ttl_ms, tabs, queue, request}, events...}
local ws = workspace(KEYS, ARGV)
local now = now_ms()
settle(ws)
return reply(ws, 'sync', snapshot(ws, now))
