-- _clock.lua: Redis time, for every script that reads it (Redis scripts cannot import): each
-- names it in its Libraries line, as _lib.lua does (which needs it).
-- Libraries: none
-- Time comes from Redis TIME only, never from a server's clock: servers' clocks disagree, and every
-- expiry a script sets or compares must be on one clock.
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
