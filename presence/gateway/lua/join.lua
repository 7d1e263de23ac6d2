-- join: a tab enters the workspace. Adds its presence entry, and when the tab belongs to the
-- holder (same user; same tab id in tab scope) replaces the lease TTL in the same step, so a
-- reload within the grace period keeps the lease and its fence.
-- Libraries: _clock.lua, _lib.lua
-- KEYS[1..8] - the workspace keys (_lib.lua)
-- ARGV[1..5] - the workspace head (_lib.lua)
-- ARGV[6]    conn            - conn
-- ARGV[7]    info            - tab info JSON [user, name, tab, active, meta, server]
-- ARGV[8]    user            - user id
-- ARGV[9]    tab             - tab id
-- ARGV[10]   presence_ttl_ms - the presence TTL
-- ARGV[11]   whole           - '1': answer with the whole workspace (the server has no copy of it
--                              yet), else ''
-- Returns {reply JSON, event JSON...}, the events in the order published; the replies, by status:
--   entered {rejoined, fence?, seq, snapshot?}  event 'joined' (after a 'left' for pruned tabs);
--                                               seq = the workspace's sequence number after this
--                                               join; snapshot (when asked) = the whole workspace
--                                               then {seq, at, holder, ttl_ms, tabs, queue, request}
-- A silent expiry noticed first is announced first: 'expired', then the handoff's events.
local ws = workspace(KEYS, ARGV)
local conn, info, user, tab, presence_ttl = ARGV[6], ARGV[7], ARGV[8], ARGV[9], tonumber(ARGV[10])
local whole = ARGV[11] == '1'
local now = now_ms()
local h = settle(ws)
local removed, any = prune(ws, now)
if any then emit_pruned(ws, removed) end
redis.call('ZADD', ws.tabs, now + presence_ttl, conn)
redis.call('HSET', ws.info, conn, info)
redis.call('PEXPIRE', ws.tabs, presence_ttl * 2)
redis.call('PEXPIRE', ws.info, presence_ttl * 2)
local rejoined = false
if h and matches(ws, h, user, tab) then
  redis.call('PEXPIRE', ws.lease, ws.ttl)
  keep_holder(ws)
  rejoined = true
end
local t = cjson.decode(info)
emit(ws, {kind = 'joined', user = {id = t[1], name = t[2]}, add = {[conn] = info}, origin = conn})
-- The whole workspace costs what the workspace is: only a server that has no copy of it asks.
local detail = {rejoined = rejoined, seq = redis.call('GET', ws.seq)}
if whole then detail.snapshot = snapshot(ws, now) end
if rejoined then detail.fence = h.fence end
return reply(ws, 'entered', detail)
