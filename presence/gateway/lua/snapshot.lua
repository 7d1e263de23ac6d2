-- snapshot: read the whole workspace, every lock of it (after announcing silent expiries and
-- pruning dead tabs).
-- Libraries: _clock.lua, _workspace.lua, _lib.lua
-- KEYS[1..10] - the workspace keys (_workspace.lua), the first five the workspace's own lease's
-- ARGV[1..6]  - the workspace head (_workspace.lua), lock ''
-- Returns {reply JSON, event JSON...}, the events in the order published; the replies, by status:
--   snapshot {seq, at, holder, ttl_ms, tabs, queue, request, locks}  (at: Redis time of the read,
--            ms; holder, ttl_ms, queue and request: the workspace's own lease; locks: the named
--            locks that have a holder, queue or request, {lock = {holder, ttl_ms, queue, request}},
--            or null)
-- Events: silent expiries ('expired', then the handoff's events: the workspace's own lease's,
-- then each named lock's), then pruned tabs ('left', then the named locks' queues and requests
-- they left: 'dequeued' or 'request_ended').
local ws = workspace(KEYS, ARGV)
local now = now_ms()
settle(ws)
settle_locks(ws)
return reply(ws, 'snapshot', snapshot(ws, now))
