-- request: politely ask the holder for the lease (the workspace's own or a named lock's). The
-- holder's tabs are told ('requested' event); the holder may release (the lease goes straight to
-- the requester), decline, or let the deadline pass (then the requester's server may take it
-- over, see handoff.lua). One request is
-- pending at a time; a free lease is simply granted.
-- Libraries: _clock.lua, _workspace.lua, _lib.lua
-- KEYS[1..10] - the workspace keys (_workspace.lua)
-- ARGV[1..6]  - the workspace head (_workspace.lua)
-- ARGV[7]     user       - user id
-- ARGV[8]     name       - user name
-- ARGV[9]     tab        - tab id
-- ARGV[10]    origin     - origin conn
-- ARGV[11]    message    - message to the holder
-- ARGV[12]    timeout_ms - how long the holder has to answer
-- ARGV[13]    max_locks  - named locks the workspace may hold at once (PRESENCE_MAX_LOCKS)
-- Returns {reply JSON, event JSON...}, the events in the order published; the replies, by status:
--   granted  {fence, ttl_ms}        it was free: granted (event 'acquired')
--   rejoined {fence, ttl_ms}        the caller already holds it: TTL replaced
--   asked    {deadline_ms, holder}  the holder was asked (event 'requested')
--   pending  {request, holder}      another request is pending
--   too_many {limit}                a free named lock, but the workspace holds max_locks others:
--                                   nothing changed
-- A silent expiry noticed first is announced first: 'expired', then the handoff's events.
local ws = workspace(KEYS, ARGV)
local user, name, tab, origin, message, timeout = ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], tonumber(ARGV[12])
local limit = tonumber(ARGV[13])
local now = now_ms()
local h = settle(ws) or orphan(ws)  -- an orphaned lease is someone unknown's
if not h then
  if too_many(ws, limit) then return reply(ws, 'too_many', {limit = limit}) end
  local g = grant(ws, user, name, tab, false)
  redis.call('LREM', ws.queue, 0, origin)
  emit(ws, {kind = 'acquired', lease = true, holder = holder_json(g), ttl_ms = ws.ttl, user = person(g),
            origin = origin, queue = queue_map(ws)})
  return reply(ws, 'granted', {fence = g.fence, ttl_ms = ws.ttl})
end
if matches(ws, h, user, tab) then
  redis.call('PEXPIRE', ws.lease, ws.px)
  keep_holder(ws)
  return reply(ws, 'rejoined', {fence = h.fence, ttl_ms = ws.ttl})
end
local r = request(ws)
if r and r.conn ~= origin and live_info(ws, r.conn, now) and tonumber(r.deadline) > now then
  return reply(ws, 'pending', {request = request_json(r), holder = holder_json(h)})
end
local deadline = now + timeout
redis.call('HSET', ws.request, 'conn', origin, 'user', user, 'name', name, 'message', message,
           'deadline', str(deadline))
redis.call('PEXPIRE', ws.request, timeout + 60000)
note(ws)
r = request(ws)
emit(ws, {kind = 'requested', user = {id = user, name = name}, request = request_json(r), origin = origin,
          wait_ms = timeout})
return reply(ws, 'asked', {deadline_ms = timeout, holder = holder_json(h)})
