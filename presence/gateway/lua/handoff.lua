-- handoff: resolve a pending polite-handoff request without a release.
--   'decline': the holder (compare-and-set on its fence) keeps the lease; the request ends.
--   'cancel':  the requester withdraws its own request.
--   'timeout': the requester's server, once the deadline passed in Redis time: with takeover
--              allowed the requester takes the lease over (fence bumped, 'taken_over'), else the
--              request ends unanswered.
-- KEYS: the eight workspace keys; ARGV[1..4]: channel, publish command, lease TTL, scope (_lib.lua).
-- ARGV: [5] mode [6] fence (decline) or requester conn (cancel, timeout) [7] takeover allowed '1'/'0'
--       [8] by: JSON person who declined, or ''
-- Returns {'ended', {reason}, events...}           the request ended (reason declined/cancelled/timeout)
--         {'taken_over', {fence, ttl_ms, from}, events...}  timeout: the requester took it over
--         {'early', {left_ms}}                      timeout called before the deadline
--         {'none', ''}                              no such request (already resolved)
local mode, arg, may_take, by = ARGV[5], ARGV[6], ARGV[7] == '1', ARGV[8]
local now = now_ms()
local h = settle()
local r = request()
if not r then return reply('none', nil) end
local reason
if mode == 'decline' then
  if not h or h.fence ~= arg then return reply('none', nil) end
  reason = 'declined'
elseif mode == 'cancel' then
  if r.conn ~= arg then return reply('none', nil) end
  reason = 'cancelled'
else
  if r.conn ~= arg then return reply('none', nil) end
  local left = tonumber(r.deadline) - now
  if left > 0 then return reply('early', {left_ms = left}) end
  reason = 'timeout'
  local t = live_info(r.conn, now)
  if may_take and h and t then
    redis.call('DEL', K_REQUEST)
    local g = grant(t[1], t[2], t[3], true)
    redis.call('LREM', K_QUEUE, 0, r.conn)
    emit({kind = 'taken_over', lease = true, holder = holder_json(g), ttl_ms = LEASE_TTL, user = person(g),
          from = person(h), reason = 'taken_over', prev = holder_json(h), handoff = r.conn,
          request = cjson.null, queue = queue_map()})
    return reply('taken_over', {fence = g.fence, ttl_ms = LEASE_TTL, from = person(h)})
  end
end
redis.call('DEL', K_REQUEST)
local ev = {kind = 'request_ended', request = cjson.null, reason = reason, target = r.conn}
if by ~= '' then ev.by = cjson.decode(by) end
emit(ev)
return reply('ended', {reason = reason})
