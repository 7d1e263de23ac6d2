-- _clock.lua: Redis time, prepended (before _lib.lua where both are) to every script that reads
-- the time: acquire, takeover, release, join, leave, status, snapshot, expire, touch, request,
-- handoff (through _lib.lua), announce and census. Scripts take time from Redis TIME only, never
-- from a server's clock: servers' clocks disagree, and a script must not depend on its caller's.
--   now_ms()  the Redis time in epoch milliseconds (a number)
--   str(n)    an integer as a decimal string

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- cjson and tostring print 14 significant digits only: too few for epoch ms and counters.
local function str(n)
  return string.format('%.0f', n)
end
