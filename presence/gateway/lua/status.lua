-- status: update a tab's presence info (active flag, meta).
-- KEYS: the eight workspace keys; ARGV[1..4]: channel, publish command, lease TTL, scope (_lib.lua).
-- ARGV: [5] conn [6] tab info JSON
-- Returns {'ok', '', events...} | {'gone', ''} when the tab has no presence entry.
local conn, info = ARGV[5], ARGV[6]
if redis.call('HEXISTS', K_INFO, conn) == 0 then return reply('gone', nil) end
redis.call('HSET', K_INFO, conn, info)
local t = cjson.decode(info)
emit({kind = 'status', user = {id = t[1], name = t[2]}, add = {[conn] = info}, origin = conn})
return reply('ok', nil)
