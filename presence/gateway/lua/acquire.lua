-- acquire: take a free lease with SET NX PX, rejoin one the caller already holds, report busy,
-- or (wait) join the FIFO queue. For the workspace's own lease or one named lock (ARGV lock).
-- Libraries: _clock.lua, _workspace.lua, _lib.lua
-- KEYS[1..10] - the workspace keys (_workspace.lua)
-- ARGV[1..6]  - the workspace head (_workspace.lua)
-- ARGV[7]     user      - user id
-- ARGV[8]     name      - user name
-- ARGV[9]     tab       - tab id
-- ARGV[10]    origin    - origin conn
-- ARGV[11]    wait      - '1' to wait in the queue when someone else holds the lease, '0' not to
-- ARGV[12]    max_locks - named locks the workspace may hold at once (PRESENCE_MAX_LOCKS)
-- Returns {reply JSON, event JSON...}, the events in the order published; the replies, by status:
--   granted  {fence, ttl_ms}     a new grant (event 'acquired')
--   rejoined {fence, ttl_ms}     the caller already held it: TTL replaced
--   busy     {holder}            someone else holds it
--   waiting  {holder, position}  waiting in line (event 'queued' when it joined the line now)
--   too_many {limit}             a free named lock, but the workspace holds max_locks others:
--                                nothing changed
-- A silent expiry noticed first is announced first: 'expired', then the handoff's events.
local ws = workspace(KEYS, ARGV)
local user, name, tab, origin, wait = ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11] == '1'
local limit = tonumber(ARGV[12])
local h = settle(ws)
if h then
  if matches(ws, h, user, tab) then
    redis.call('PEXPIRE', ws.lease, ws.px)
    keep_holder(ws)
    redis.call('LREM', ws.queue, 0, origin)
    return reply(ws, 'rejoined', {fence = h.fence, ttl_ms = ws.ttl})
  end
  if not wait then
    return reply(ws, 'busy', {holder = holder_json(h)})
  end
  local pos = redis.call('LPOS', ws.queue, origin)
  if not pos then
    redis.call('RPUSH', ws.queue, origin)
    redis.call('PEXPIRE', ws.queue, ws.idle)
    note(ws)
    emit(ws, {kind = 'queued', user = {id = user, name = name}, queue = queue_map(ws), origin = origin})
  end
  return reply(ws, 'waiting', {holder = holder_json(h),
                               position = (redis.call('LPOS', ws.queue, origin) or 0) + 1})
end
if too_many(ws, limit) then return reply(ws, 'too_many', {limit = limit}) end
local g = grant(ws, user, name, tab, false)
if not g then
  return reply(ws, 'busy', {holder = cjson.null})
end
redis.call('LREM', ws.queue, 0, origin)
emit(ws, {kind = 'acquired', lease = true, holder = holder_json(g), ttl_ms = ws.ttl,
          user = person(g), origin = origin})
return reply(ws, 'granted', {fence = g.fence, ttl_ms = ws.ttl})
