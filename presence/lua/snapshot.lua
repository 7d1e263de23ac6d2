-- snapshot: read the whole workspace (after announcing a silent expiry and pruning dead tabs).
-- KEYS: the seven workspace keys (see _lib.lua).
-- ARGV: [1] channel [2] publish command
-- Returns {'sync', {seq, holder, ttl_ms, tabs}, events...}
local now = now_ms()
settle()
return reply('sync', snapshot(now))
