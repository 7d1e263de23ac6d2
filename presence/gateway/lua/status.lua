-- status: update a tab's presence info (active flag, meta).
-- KEYS: the eight workspace keys; ARGV[1..4]: channel, publish command, lease TTL, scope (_lib.lua).
-- ARGV: [5] conn [6] tab info JSON
-- Returns {'ok', '', events...} | {'gone', ''} when the tab has no presence entry.
local ws = workspace(KEYS, ARGV)
local conn, info = ARGV[5], ARGV[6]
if redis.call('HEXISTS', ws.info, conn) == 0 then return reply(ws, 'gone', nil) end
redis.call('HSET', ws.info, conn, info)
local t = cjson.decode(info)
emit(ws, {kind = 'status', user = {id = t[1], name = t[2]}, add = {[conn] = info}, origin = conn})
return reply(ws, 'ok', nil)
