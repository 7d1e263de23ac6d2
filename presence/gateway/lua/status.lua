-- status: update a tab's presence info (active flag, meta).
-- Libraries: _clock.lua, _workspace.lua, _lib.lua
-- KEYS[1..10] - the workspace keys (_workspace.lua)
-- ARGV[1..6]  - the workspace head (_workspace.lua)
-- ARGV[7]     conn - conn
-- ARGV[8]     info - tab info JSON [user, name, tab, active, meta, server]
-- ARGV[9]     user - user id (info's, passed apart: no JSON to decode)
-- ARGV[10]    name - user name (info's)
-- Returns {reply JSON, event JSON...}, the events in the order published; the replies, by status:
--   done {}  event 'status' (none when the entry is unchanged: nothing to tell anyone)
--   gone {}  the tab has no presence entry (no events)
local ws = workspace(KEYS, ARGV)
local conn, info, user, name = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local old = redis.call('HGET', ws.info, conn)
if not old then return reply(ws, 'gone', nil) end
if old == info then return reply(ws, 'done', nil) end
redis.call('HSET', ws.info, conn, info)
emit(ws, {kind = 'status', user = {id = user, name = name}, add = {[conn] = info}, origin = conn})
return reply(ws, 'done', nil)
