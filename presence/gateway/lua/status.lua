-- status: update a tab's presence info (active flag, meta).
-- KEYS[1..8] - the workspace keys: lease, holder, fence, seq, tabs, info, queue, request (_lib.lua)
-- ARGV[1..5] - channel, publish command, lease TTL ms, scope, key idle ms (_lib.lua)
-- ARGV[6]    - conn
-- ARGV[7]    - tab info JSON [user, name, tab, active, meta, server]
-- Returns {status, detail JSON or '', event JSON...}, the events in the order published:
--   'ok',   ''  event 'status' (none when the entry is unchanged: nothing to tell anyone)
--   'gone', ''  the tab has no presence entry (no events)
local ws = workspace(KEYS, ARGV)
local conn, info = ARGV[6], ARGV[7]
local old = redis.call('HGET', ws.info, conn)
if not old then return reply(ws, 'gone', nil) end
if old == info then return reply(ws, 'ok', nil) end
redis.call('HSET', ws.info, conn, info)
local t = cjson.decode(info)
emit(ws, {kind = 'status', user = {id = t[1], name = t[2]}, add = {[conn] = info}, origin = conn})
return reply(ws, 'ok', nil)
