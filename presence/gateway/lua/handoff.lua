-- handoff: resolve a pending polite-handoff request without a release.
--   'decline': the holder (compare-and-set on its fence) keeps the lease; the request ends.
--   'cancel':  the requester withdraws its own request.
--   'timeout': the requester's server, once the deadline passed in Redis time: with takeover
--              allowed the requester takes the lease over (fence bumped, 'taken_over'), else the
--              request ends unanswered. During the takeover cooldown that follows a takeover the
--              lease is not forced away by this path either: the request ends with reason
--              'cooldown' (the holder keeps the lease; the requester may ask again later).
-- Libraries: _clock.lua, _workspace.lua, _lib.lua
-- KEYS[1..10] - the workspace keys (_workspace.lua)
-- ARGV[1..6]  - the workspace head (_workspace.lua)
-- ARGV[7]     mode          - 'decline', 'cancel' or 'timeout'
-- ARGV[8]     target        - the holder's fence (decline) or the requester's conn (cancel, timeout)
-- ARGV[9]     may_take_over - '1' when the requester may take the lease over at timeout, else '0'
-- ARGV[10]    by            - JSON person who declined, or ''
-- ARGV[11]    cooldown_ms   - the takeover cooldown (0: none)
-- Returns {reply JSON, event JSON...}, the events in the order published; the replies, by status:
--   ended      {reason}               the request ended: declined, cancelled, timeout or cooldown
--                                     (event 'request_ended')
--   taken_over {fence, ttl_ms, from}  timeout: the requester took it over (event 'taken_over')
--   early      {left_ms}              timeout called before the deadline
--   no_request {}                     no such request (already resolved)
-- A silent expiry noticed first is announced first: 'expired', then the handoff's events.
local ws = workspace(KEYS, ARGV)
local mode, arg, may_take, by, cooldown = ARGV[7], ARGV[8], ARGV[9] == '1', ARGV[10], tonumber(ARGV[11])
local now = now_ms()
local h = settle(ws) or orphan(ws)  -- an orphaned lease is someone unknown's
local r = request(ws)
if not r then return reply(ws, 'no_request', nil) end
local reason
if mode == 'decline' then
  if not h or h.fence ~= arg then return reply(ws, 'no_request', nil) end
  reason = 'declined'
elseif mode == 'cancel' then
  if r.conn ~= arg then return reply(ws, 'no_request', nil) end
  reason = 'cancelled'
else
  if r.conn ~= arg then return reply(ws, 'no_request', nil) end
  local left = tonumber(r.deadline) - now
  if left > 0 then return reply(ws, 'early', {left_ms = left}) end
  reason = 'timeout'
  local t = live_info(ws, r.conn, now)
  if may_take and h and t and h.took and cooldown > 0 and tonumber(h.since) + cooldown > now then
    reason = 'cooldown'  -- the same rule as takeover.lua: no path forces the lease away meanwhile
  elseif may_take and h and t then
    redis.call('DEL', ws.request)
    local g = grant(ws, t[1], t[2], t[3], true)
    redis.call('LREM', ws.queue, 0, r.conn)
    emit(ws, {kind = 'taken_over', lease = true, holder = holder_json(g), ttl_ms = ws.ttl, user = person(g),
              from = person(h), reason = 'taken_over', prev = holder_json(h), handoff = r.conn,
              request = cjson.null, queue = queue_map(ws)})
    return reply(ws, 'taken_over', {fence = g.fence, ttl_ms = ws.ttl, from = person(h)})
  end
end
redis.call('DEL', ws.request)
local ev = {kind = 'request_ended', request = cjson.null, reason = reason, target = r.conn}
if by ~= '' then ev.by = cjson.decode(by) end
emit(ws, ev)
return reply(ws, 'ended', {reason = reason})
