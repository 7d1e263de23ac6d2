-- join: a tab enters the workspace. Adds its presence entry, and when the tab belongs to the
-- holder (same user; same tab id in tab scope) replaces the lease TTL in the same step, so a
-- reload within the grace period keeps the lease and its fence.
-- KEYS: the eight workspace keys; ARGV[1..4]: channel, publish command, lease TTL, scope (_lib.lua).
-- ARGV: [5] conn [6] tab info JSON [7] user [8] tab [9] presence ttl ms
-- Returns {'joined', {rejoined, fence?, snapshot}, events...}: snapshot = the whole workspace
-- ({seq, holder, ttl_ms, tabs, queue, request}) right after this join.
local ws = workspace(KEYS, ARGV)
local conn, info, user, tab, presence_ttl = ARGV[5], ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])
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
  rejoined = true
end
local t = cjson.decode(info)
emit(ws, {kind = 'joined', user = {id = t[1], name = t[2]}, add = {[conn] = info}, origin = conn})
local detail = {rejoined = rejoined, snapshot = snapshot(ws, now)}
if rejoined then detail.fence = h.fence end
return reply(ws, 'joined', detail)
