-- leave: a tab leaves the workspace (and the queue, and its pending handoff request). When it
-- closed cleanly and was the holder's last live tab, the lease TTL is shortened to the grace
-- period (never lengthened): a reload within grace rejoins it, otherwise it expires and the
-- expiry watchers announce it (and hand it on).
-- Libraries: _clock.lua, _lib.lua
-- KEYS[1..8] - the workspace keys (_lib.lua)
-- ARGV[1..5] - the workspace head (_lib.lua)
-- ARGV[6]    conn     - conn
-- ARGV[7]    clean    - '1' when the tab closed cleanly, else '0'
-- ARGV[8]    grace_ms - the grace period
-- Returns {reply JSON, event JSON...}, the events in the order published; the replies, by status:
--   left {ttl_ms?}  event 'left'. ttl_ms when the holder's last tab left cleanly: what is left
--                   of the lease, at most grace; 0 without grace, the lease released at once
--                   (event 'released', then the handoff's events)
--   gone {}         the tab had no presence entry (no events)
-- A silent expiry noticed first is announced first: 'expired', then the handoff's events.
local ws = workspace(KEYS, ARGV)
local conn, clean, grace = ARGV[6], ARGV[7] == '1', tonumber(ARGV[8])
local info = redis.call('HGET', ws.info, conn)
local dequeued = redis.call('LREM', ws.queue, 0, conn) > 0
local r = request(ws)
local unrequested = r and r.conn == conn
if unrequested then redis.call('DEL', ws.request) end
if not info then return reply(ws, 'gone', nil) end
local now = now_ms()
local h = settle(ws)
redis.call('ZREM', ws.tabs, conn)
redis.call('HDEL', ws.info, conn)
local t = cjson.decode(info)
local ev = {kind = 'left', user = {id = t[1], name = t[2]}, rm = {[conn] = 1}, origin = conn}
if dequeued then ev.queue = queue_map(ws) end
if unrequested then ev.request = cjson.null end
if clean and h and matches(ws, h, t[1], t[3]) and not holder_has_other_tab(ws, h, conn, now) then
  if grace <= 0 then
    emit(ws, ev)
    end_lease(ws, h, 'released', '', nil, now)
    return reply(ws, 'left', {ttl_ms = 0})
  end
  local pttl = redis.call('PTTL', ws.lease)
  if pttl > grace then
    redis.call('PEXPIRE', ws.lease, grace)
    pttl = grace
  end
  ev.ttl_ms = pttl
end
emit(ws, ev)
return reply(ws, 'left', {ttl_ms = ev.ttl_ms})
