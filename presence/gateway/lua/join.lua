-- join: a tab enters the workspace. Adds its presence entry, and replaces the TTL of every lease
-- the tab belongs to the holder of (same user; same tab id in tab scope), the workspace's own and
-- each named lock's, in the same step: a reload within the grace period keeps every lock it held,
-- each with its fence.
-- Libraries: _clock.lua, _workspace.lua, _lib.lua
-- KEYS[1..10] - the workspace keys (_workspace.lua), the first five the workspace's own lease's
-- ARGV[1..6]  - the workspace head (_workspace.lua), lock ''
-- ARGV[7]     conn            - conn
-- ARGV[8]     info            - tab info JSON [user, name, tab, active, meta, server]
-- ARGV[9]     user            - user id
-- ARGV[10]    tab             - tab id
-- ARGV[11]    presence_ttl_ms - the presence TTL
-- ARGV[12]    whole           - '1': answer with the whole workspace (the server has no copy of it
--                              yet), else ''
-- ARGV[13]    name            - user name (info's, passed apart: no JSON to decode)
-- Returns {reply JSON, event JSON...}, the events in the order published; the replies, by status:
--   entered {rejoined, fence?, locks?, seq, snapshot?}  event 'joined' (after a 'left' for pruned
--            tabs); rejoined and fence: the workspace's own lease; locks = {lock = fence} of the
--            named locks rejoined (absent: none); seq = the workspace's sequence number after
--            this join; snapshot (when asked) = the whole workspace then, as snapshot.lua's
-- Silent expiries noticed first are announced first ('expired', then the handoff's events: the
-- workspace's own lease's, then each named lock's), then pruned tabs ('left', then the named
-- locks' queues and requests they left).
local ws = workspace(KEYS, ARGV)
local conn, info, user, tab, presence_ttl = ARGV[7], ARGV[8], ARGV[9], ARGV[10], tonumber(ARGV[11])
local whole, name = ARGV[12] == '1', ARGV[13]
local now = now_ms()
local h = settle(ws)
local named = settle_locks(ws)
local removed, any, dropped = prune(ws, now)
if any then emit_pruned(ws, removed, dropped) end
redis.call('ZADD', ws.tabs, now + presence_ttl, conn)
redis.call('HSET', ws.info, conn, info)
local kept = str(presence_ttl * 2)
redis.call('PEXPIRE', ws.tabs, kept)
redis.call('PEXPIRE', ws.info, kept)
local rejoined = false
if h and matches(ws, h, user, tab) then
  redis.call('PEXPIRE', ws.lease, ws.px)
  keep_holder(ws)
  rejoined = true
end
local fences = {}
for _, n in ipairs(named) do
  if n.h and matches(n.l, n.h, user, tab) then
    redis.call('PEXPIRE', n.l.lease, ws.px)
    keep_holder(n.l)
    fences[n.l.lock] = n.h.fence
  end
end
local joined = {kind = 'joined', user = {id = user, name = name}, add = {[conn] = info}, origin = conn}
emit(ws, joined)
-- The whole workspace costs what the workspace is: only a server that has no copy of it asks.
-- The seq after this join is the joined event's: nothing published since.
local detail = {rejoined = rejoined, seq = joined.seq}
if whole then detail.snapshot = snapshot(ws, now) end
if rejoined then detail.fence = h.fence end
if next(fences) ~= nil then detail.locks = fences end
return reply(ws, 'entered', detail)
