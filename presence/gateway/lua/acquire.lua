-- acquire: take a free lease with SET NX PX, rejoin one the caller already holds, report busy,
-- or (wait) join the FIFO queue.
-- KEYS: the eight workspace keys; ARGV[1..4]: channel, publish command, lease TTL, scope (_lib.lua).
-- ARGV: [5] user [6] name [7] tab [8] origin conn [9] wait ('1' or '0')
-- Returns {'acquired', {fence, ttl_ms}, events...}   a new grant (event kind 'acquired')
--         {'rejoined', {fence, ttl_ms}}               the caller already held it: TTL replaced
--         {'busy',     {holder}}                      someone else holds it
--         {'queued',   {holder, position}, events...} waiting in line (event kind 'queued')
local ws = workspace(KEYS, ARGV)
local user, name, tab, origin, wait = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9] == '1'
local h = settle(ws)
if h then
  if matches(ws, h, user, tab) then
    redis.call('PEXPIRE', ws.lease, ws.ttl)
    redis.call('LREM', ws.queue, 0, origin)
    return reply(ws, 'rejoined', {fence = h.fence, ttl_ms = ws.ttl})
  end
  if not wait then
    return reply(ws, 'busy', {holder = holder_json(h)})
  end
  local pos = redis.call('LPOS', ws.queue, origin)
  if not pos then
    redis.call('RPUSH', ws.queue, origin)
    emit(ws, {kind = 'queued', user = {id = user, name = name}, queue = queue_map(ws), origin = origin})
  end
  return reply(ws, 'queued', {holder = holder_json(h),
                              position = (redis.call('LPOS', ws.queue, origin) or 0) + 1})
end
local g = grant(ws, user, name, tab, false)
if not g then
  return reply(ws, 'busy', {holder = cjson.null})
end
redis.call('LREM', ws.queue, 0, origin)
emit(ws, {kind = 'acquired', lease = true, holder = holder_json(g), ttl_ms = ws.ttl,
          user = person(g), origin = origin})
return reply(ws, 'acquired', {fence = g.fence, ttl_ms = ws.ttl})
