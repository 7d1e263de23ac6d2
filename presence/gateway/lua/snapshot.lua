-- snapshot: read the whole workspace (after announcing a silent expiry and pruning dead tabs).
-- Libraries: _clock.lua, _lib.lua
-- KEYS[1..8] - the workspace keys (_lib.lua)
-- ARGV[1..5] - the workspace head (_lib.lua)
-- Returns {reply JSON, event JSON...}, the events in the order published; the replies, by status:
--   snapshot {seq, at, holder, ttl_ms, tabs, queue, request}  (at: Redis time of the read, ms)
-- Events: a silent expiry ('expired', then the handoff's events), then pruned tabs ('left').
local ws = workspace(KEYS, ARGV)
local now = now_ms()
settle(ws)
return reply(ws, 'snapshot', snapshot(ws, now))
