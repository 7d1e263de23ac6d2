-- expire: the expiry watcher's check, run when a lease's PTTL has run out locally. Announces the
-- expiry if the lease key is gone, and hands the lease to the next in line (idempotent: only the
-- first watcher finds anything to announce). For the workspace's own lease or one named lock.
-- Libraries: _clock.lua, _workspace.lua, _lib.lua
-- KEYS[1..10] - the workspace keys (_workspace.lua)
-- ARGV[1..6]  - the workspace head (_workspace.lua)
-- Returns {reply JSON, event JSON...}, the events in the order published; the replies, by status:
--   held {ttl_ms}  a lease is alive (maybe just handed on)
--   free {}        no lease
-- An expiry this call notices is announced: 'expired', then the handoff's events.
local ws = workspace(KEYS, ARGV)
local h = settle(ws)
if h then return reply(ws, 'held', {ttl_ms = redis.call('PTTL', ws.lease)}) end
return reply(ws, 'free', nil)
