-- status: update a tab's presence info (active flag, meta).
-- KEYS: the seven workspace keys (see _lib.lua).
-- ARGV: [1] channel [2] publish command [3] conn [4] tab info JSON
-- Returns {'ok', '', events...} | {'gone', ''} when the tab has no presence entry.
local conn, info = ARGV[3], ARGV[4]
if redis.call('HEXISTS', K_INFO, conn) == 0 then return reply('gone', nil) end
redis.call('HSET', K_INFO, conn, info)
local t = cjson.decode(info)
emit({kind = 'status', user = {id = t[1], name = t[2]}, add = {[conn] = info}, origin = conn})
return reply('ok', nil)
