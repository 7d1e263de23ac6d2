-- leave: a tab leaves the workspace (and every queue, and its pending handoff requests). When it
-- closed cleanly and was the holder's last live tab, the TTL of each lease it held (the
-- workspace's own and each named lock's) is shortened to the grace period (never lengthened): a
-- reload within grace rejoins them, otherwise they expire and the expiry watchers announce them
-- (and hand them on).
-- Libraries: _clock.lua, _workspace.lua, _lib.lua
-- KEYS[1..10] - the workspace keys (_workspace.lua), the first five the workspace's own lease's
-- ARGV[1..6]  - the workspace head (_workspace.lua), lock ''
-- ARGV[7]     conn     - conn
-- ARGV[8]     clean    - '1' when the tab closed cleanly, else '0'
-- ARGV[9]     grace_ms - the grace period
-- Returns {reply JSON, event JSON...}, the events in the order published; the replies, by status:
--   left {ttl_ms?}  event 'left'. Its ttl_ms (and the reply's) when the holder's last tab left
--                   cleanly: what is left of the workspace's own lease, at most grace; its ttls =
--                   {lock = ms} the same for the named locks. Without grace the leases are
--                   released at once: the reply's ttl_ms is 0, the event has neither, and each
--                   lease's 'released' (then its handoff's events) follows
--   gone {}         the tab had no presence entry (no 'left'; the queues and requests it left are
--                   announced, as below)
-- Events, in order: silent expiries noticed first ('expired', then the handoff's events), 'left',
-- then per named lock whose queue or request the tab left 'dequeued' or 'request_ended', then
-- the releases without grace.
local ws = workspace(KEYS, ARGV)
local conn, clean, grace = ARGV[7], ARGV[8] == '1', tonumber(ARGV[9])
local info = redis.call('HGET', ws.info, conn)
local dequeued = redis.call('LREM', ws.queue, 0, conn) > 0
local r = request(ws)
local unrequested = r and r.conn == conn
if unrequested then redis.call('DEL', ws.request) end
local dropped = drop_conns(ws, {conn})
if not info then
  if dequeued or unrequested then
    table.insert(dropped, 1, {l = ws, dequeued = dequeued, unrequested = unrequested})
  end
  emit_dropped(dropped, conn)
  return reply(ws, 'gone', nil)
end
local now = now_ms()
local h = settle(ws)
local named = settle_locks(ws)
redis.call('ZREM', ws.tabs, conn)
redis.call('HDEL', ws.info, conn)
local t = cjson.decode(info)
local ev = {kind = 'left', user = {id = t[1], name = t[2]}, rm = {[conn] = 1}, origin = conn}
if dequeued then ev.queue = queue_map(ws) end
if unrequested then ev.request = cjson.null end
-- Has the user (the tab, in scope tab) no other live tab? Asked once, and only of a holder.
local last = nil
local function last_tab()
  if last == nil then last = not holder_has_other_tab(ws, {user = t[1], tab = t[3]}, conn, now) end
  return last
end
local ending, ttls = {}, {}
local function shorten(l, lh)
  if not (clean and lh and matches(l, lh, t[1], t[3]) and last_tab()) then return nil end
  if grace <= 0 then
    ending[#ending + 1] = {l = l, h = lh}
    return nil
  end
  local pttl = redis.call('PTTL', l.lease)
  if pttl > grace then
    redis.call('PEXPIRE', l.lease, grace)
    pttl = grace
  end
  return pttl
end
ev.ttl_ms = shorten(ws, h)
for _, n in ipairs(named) do ttls[n.l.lock] = shorten(n.l, n.h) end
if next(ttls) ~= nil then ev.ttls = ttls end
emit(ws, ev)
emit_dropped(dropped, conn)
for _, e in ipairs(ending) do
  end_lease(e.l, e.h, 'released', '', nil, now)
  tidy(e.l)
end
if grace <= 0 and #ending > 0 and ending[1].l == ws then return reply(ws, 'left', {ttl_ms = 0}) end
return reply(ws, 'left', {ttl_ms = ev.ttl_ms})
