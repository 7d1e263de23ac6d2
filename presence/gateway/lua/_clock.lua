-- _clock.lua: Redis time, for every script that reads it (Redis scripts cannot import): each
-- names it in its Libraries line, as _lib.lua does (which needs it).
-- Libraries: none
-- Time comes from Redis TIME only, never from a server's clock: servers' clocks disagree, and every
-- expiry a script sets or compares must be on one clock. A script reads TIME once: every time it
-- takes is the one instant it runs at (as Redis itself takes one for the keys' expiries while a
-- script runs), and a TIME costs Redis as much as a command.
--   now_ms()   the Redis time in epoch milliseconds (a number)
--   time_us()  the same instant in epoch microseconds
--   str(n)     an integer as a decimal string

-- The one TIME of this call (nil until read: each call runs this anew).
local clock_ms, clock_us

local function read_clock()
  local t = redis.call('TIME')
  local s, us = tonumber(t[1]), tonumber(t[2])
  clock_ms, clock_us = s * 1000 + math.floor(us / 1000), s * 1000000 + us
end

local function now_ms()
  if not clock_ms then read_clock() end
  return clock_ms
end

local function time_us()
  if not clock_us then read_clock() end
  return clock_us
end

-- cjson and tostring print 14 significant digits only: too few for epoch ms and counters. '%d'
-- prints an integer exactly (up to 2^53 here) at half the cost of '%.0f'.
local function str(n)
  return string.format('%d', n)
end
