-- takeover: force-take the lease. Replaces the holder, bumps the fence and publishes atomically,
-- so the old holder's next renew fails even if it never hears the message. Refused during the
-- takeover cooldown that follows a takeover (to stop takeover wars).
-- KEYS: the eight workspace keys; ARGV[1..4]: channel, publish command, lease TTL, scope (_lib.lua).
-- ARGV: [5] user [6] name [7] tab [8] origin conn [9] cooldown ms (0: none)
-- Returns {'acquired', {fence, ttl_ms}, events...}         it was free (event kind 'acquired')
--         {'taken_over', {fence, ttl_ms, from}, events...} replaced a holder ('taken_over')
--         {'rejoined', {fence, ttl_ms}}                     the caller already held it
--         {'cooldown', {retry_ms, holder}}                  too soon after the last takeover
local ws = workspace(KEYS, ARGV)
local user, name, tab, origin, cooldown = ARGV[5], ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])
local h = settle(ws)
if h and matches(ws, h, user, tab) then
  redis.call('PEXPIRE', ws.lease, ws.ttl)
  return reply(ws, 'rejoined', {fence = h.fence, ttl_ms = ws.ttl})
end
if h and h.took and cooldown > 0 then
  local left = tonumber(h.since) + cooldown - now_ms()
  if left > 0 then return reply(ws, 'cooldown', {retry_ms = left, holder = holder_json(h)}) end
end
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
return reply(ws, 'acquired', {fence = g.fence, ttl_ms = ws.ttl})
