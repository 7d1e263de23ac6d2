-- expire: the expiry watcher's check, run when a lease's PTTL has run out locally. Announces the
-- expiry if the lease key is gone, and hands the lease to the next in line (idempotent: only the
-- first watcher finds anything to announce).
-- KEYS: the eight workspace keys; ARGV[1..4]: channel, publish command, lease TTL, scope (_lib.lua).
-- Returns {'held', {ttl_ms}, events...} while a lease is alive (maybe just handed on),
--         {'free', '', events...} otherwise.
local ws = workspace(KEYS, ARGV)
local h = settle(ws)
if h then return reply(ws, 'held', {ttl_ms = redis.call('PTTL', ws.lease)}) end
return reply(ws, 'free', nil)
