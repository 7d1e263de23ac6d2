-- takeover: force-take the lease (the workspace's own or a named lock's). Replaces the holder, bumps the fence and publishes atomically,
-- so the old holder's next renew fails even if it never hears the message. Refused during the
-- takeover cooldown that follows a takeover (to stop takeover wars).
-- Libraries: _clock.lua, _workspace.lua, _lib.lua
-- KEYS[1..10] - the workspace keys (_workspace.lua)
-- ARGV[1..6]  - the workspace head (_workspace.lua)
-- ARGV[7]     user        - user id
-- ARGV[8]     name        - user name
-- ARGV[9]     tab         - tab id
-- ARGV[10]    origin      - origin conn
-- ARGV[11]    cooldown_ms - the takeover cooldown (0: none)
-- ARGV[12]    max_locks   - named locks the workspace may hold at once (PRESENCE_MAX_LOCKS)
-- Returns {reply JSON, event JSON...}, the events in the order published; the replies, by status:
--   granted    {fence, ttl_ms}        it was free (event 'acquired')
--   taken_over {fence, ttl_ms, from}  replaced a holder (event 'taken_over')
--   rejoined   {fence, ttl_ms}        the caller already held it: TTL replaced
--   cooldown   {retry_ms, holder}     too soon after the last takeover
--   too_many   {limit}                a free named lock, but the workspace holds max_locks others:
--                                     nothing changed
-- A silent expiry noticed first is announced first: 'expired', then the handoff's events.
local ws = workspace(KEYS, ARGV)
local user, name, tab, origin, cooldown = ARGV[7], ARGV[8], ARGV[9], ARGV[10], tonumber(ARGV[11])
local limit = tonumber(ARGV[12])
local h = settle(ws) or orphan(ws)  -- an orphaned lease is someone unknown's
if h and matches(ws, h, user, tab) then
  redis.call('PEXPIRE', ws.lease, ws.px)
  keep_holder(ws)
  return reply(ws, 'rejoined', {fence = h.fence, ttl_ms = ws.ttl})
end
if h and h.took and cooldown > 0 then
  local left = tonumber(h.since) + cooldown - now_ms()
  if left > 0 then return reply(ws, 'cooldown', {retry_ms = left, holder = holder_json(h)}) end
end
if not h and too_many(ws, limit) then return reply(ws, 'too_many', {limit = limit}) end
local g = grant(ws, user, name, tab, h ~= false)
redis.call('LREM', ws.queue, 0, origin)
local ev = {kind = 'acquired', lease = true, holder = holder_json(g), ttl_ms = ws.ttl, user = person(g),
            origin = origin, queue = queue_map(ws)}
local r = request(ws)
if r and r.conn == origin then
  redis.call('DEL', ws.request)  -- the requester took it: its request is moot
  ev.request = cjson.null
end
if h then
  ev.kind, ev.from, ev.reason, ev.prev = 'taken_over', person(h), 'taken_over', holder_json(h)
  emit(ws, ev)
  return reply(ws, 'taken_over', {fence = g.fence, ttl_ms = ws.ttl, from = person(h)})
end
emit(ws, ev)
return reply(ws, 'granted', {fence = g.fence, ttl_ms = ws.ttl})
