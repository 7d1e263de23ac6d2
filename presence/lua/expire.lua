-- expire: the expiry watcher's check, run when a lease's PTTL has run out locally. Announces the
-- expiry if the lease key is gone (idempotent: only the first watcher finds anything to announce).
-- KEYS: the seven workspace keys (see _lib.lua).
-- ARGV: [1] channel [2] publish command
-- Returns {'held', {ttl_ms}} while a lease is alive, {'free', '', events...} otherwise.
local h = settle()
if h then return reply('held', {ttl_ms = redis.call('PTTL', K_LEASE)}) end
return reply('free', nil)
