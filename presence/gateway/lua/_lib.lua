-- _lib.lua: helpers prepended to every single-workspace script (Redis scripts cannot import).
--
-- Conventions shared by acquire, takeover, release, join, leave, status, snapshot and expire:
--   KEYS[1] lease   string  the lease itself: value = fence of the current grant, TTL = lease TTL
--   KEYS[2] holder  hash    the announced holder {fence, user, name, tab, since}; outlives the
--                           lease key until a script notices the expiry and announces it
--   KEYS[3] fence   string  fence counter, never expires, seeded from TIME when missing
--   KEYS[4] seq     string  change sequence counter, same seeding
--   KEYS[5] tabs    zset    conn -> presence expiry (Redis time, ms)
--   KEYS[6] info    hash    conn -> tab info JSON [user, name, tab, active, meta, server]
--   KEYS[7] queue   list    FIFO wait queue of conns
--   KEYS[8] request hash    the pending polite-handoff request {conn, user, name, message, deadline}
--   ARGV[1] channel, ARGV[2] 'PUBLISH' or 'SPUBLISH', ARGV[3] lease TTL ms, ARGV[4] scope
--   ('user' or 'tab'); each script's own arguments start at ARGV[5].
-- A lease that ends (released, expired, revoked, idle) goes at once to the pending handoff
-- requester, else to the first live waiter of the queue: in the same script, so atomically.
-- All keys share the hash tag {workspace}: one slot per script on Redis Cluster.
-- Every script returns {status, detail JSON or '', event JSON...}: the events it published, in order.
-- Time comes from Redis TIME only, never from a server's clock.
local K_LEASE, K_HOLDER, K_FENCE, K_SEQ = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_TABS, K_INFO, K_QUEUE, K_REQUEST = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local CHANNEL, PUBCMD, LEASE_TTL, SCOPE = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local events = {}
local unpack = unpack or table.unpack

-- A counter that survives data loss: when missing it restarts from Redis TIME in microseconds,
-- above anything it held before (a counter grows by far less than a million a second).
local function counter(key)
  if redis.call('EXISTS', key) == 0 then
    local t = redis.call('TIME')
    redis.call('SET', key, t[1] .. string.format('%06d', tonumber(t[2])))
  end
  return redis.call('INCR', key)
end

local function holder()
  local h = redis.call('HMGET', K_HOLDER, 'fence', 'user', 'name', 'tab', 'since', 'took')
  if not h[1] then return false end
  return {fence = h[1], user = h[2], name = h[3], tab = h[4], since = h[5], took = h[6] == '1'}
end

local function holder_json(h)
  return {fence = h.fence, user = h.user, name = h.name, tab = h.tab, since = h.since}
end

local function person(h)
  return {id = h.user, name = h.name}
end

local function matches(h, user, tab)
  return h.user == user and (SCOPE == 'user' or h.tab == tab)
end

local function emit(ev)
  ev.seq = str(counter(K_SEQ))
  ev.at = str(now_ms())
  local msg = cjson.encode(ev)
  redis.call(PUBCMD, CHANNEL, msg)
  events[#events + 1] = msg
end

local function reply(status, detail)
  -- cjson implementations differ on empty tables ({} or []): send '' for an empty detail.
  local out = {status, (detail and next(detail) ~= nil) and cjson.encode(detail) or ''}
  for i = 1, #events do out[#out + 1] = events[i] end
  return out
end

-- The queue as {conn = position} (cjson cannot encode an empty array: null when empty).
local function queue_map()
  local q = redis.call('LRANGE', K_QUEUE, 0, -1)
  if #q == 0 then return cjson.null end
  local m = {}
  for i = 1, #q do m[q[i]] = i end
  return m
end

local function request()
  local r = redis.call('HMGET', K_REQUEST, 'conn', 'user', 'name', 'message', 'deadline')
  if not r[1] then return false end
  return {conn = r[1], user = r[2], name = r[3], message = r[4], deadline = r[5]}
end

local function request_json(r)
  if not r then return cjson.null end
  return {conn = r.conn, user = r.user, name = r.name, message = r.message, deadline = r.deadline}
end

-- Remove presence entries whose Redis-time expiry passed; returns {conn = info} of the removed.
local function prune(now)
  local removed, any = {}, false
  local dead = redis.call('ZRANGEBYSCORE', K_TABS, '-inf', now)
  for i = 1, #dead do
    removed[dead[i]] = redis.call('HGET', K_INFO, dead[i]) or '[]'
    redis.call('HDEL', K_INFO, dead[i])
    redis.call('LREM', K_QUEUE, 0, dead[i])
    if redis.call('HGET', K_REQUEST, 'conn') == dead[i] then redis.call('DEL', K_REQUEST) end
    any = true
  end
  if any then redis.call('ZREMRANGEBYSCORE', K_TABS, '-inf', now) end
  return removed, any
end

local function emit_pruned(removed)
  local rm, who = {}, nil
  for conn, info in pairs(removed) do
    rm[conn] = 1
    if not who then
      local ok, t = pcall(cjson.decode, info)
      if ok and t[1] then who = {id = t[1], name = t[2]} end
    end
  end
  emit({kind = 'left', user = who or cjson.null, rm = rm, queue = queue_map(), request = request_json(request())})
end

-- Live tabs as {conn = info JSON}, after pruning the dead ones (announced as 'left').
local function live_tabs(now)
  local removed, any = prune(now)
  if any then emit_pruned(removed) end
  local conns = redis.call('ZRANGE', K_TABS, 0, -1)
  local tabs = {}
  if #conns > 0 then
    local infos = redis.call('HMGET', K_INFO, unpack(conns))
    for i = 1, #conns do
      if infos[i] then tabs[conns[i]] = infos[i] end
    end
  end
  return tabs
end

-- Is any live tab other than `except` one of the holder's (same user; same tab id in tab scope)?
local function holder_has_other_tab(h, except, now)
  local conns = redis.call('ZRANGEBYSCORE', K_TABS, '(' .. now, '+inf')
  for i = 1, #conns do
    if conns[i] ~= except then
      local info = redis.call('HGET', K_INFO, conns[i])
      if info then
        local t = cjson.decode(info)
        if matches(h, t[1], t[3]) then return true end
      end
    end
  end
  return false
end

-- Grant the lease to a new holder: a new fence, SET (NX unless forced) PX ttl, the holder record.
-- A forced grant (takeover) is remembered, for the takeover cooldown.
local function grant(user, name, tab, force)
  local fence = str(counter(K_FENCE))
  local ok
  if force then
    ok = redis.call('SET', K_LEASE, fence, 'PX', LEASE_TTL)
  else
    ok = redis.call('SET', K_LEASE, fence, 'NX', 'PX', LEASE_TTL)
  end
  if not ok then return false end
  local since = str(now_ms())
  redis.call('HSET', K_HOLDER, 'fence', fence, 'user', user, 'name', name, 'tab', tab, 'since', since,
             'took', force and '1' or '0')
  return {fence = fence, user = user, name = name, tab = tab, since = since}
end

local function live_info(conn, now)
  local score = redis.call('ZSCORE', K_TABS, conn)
  if not score or tonumber(score) <= now then return nil end
  local info = redis.call('HGET', K_INFO, conn)
  return info and cjson.decode(info)
end

-- The lease is free: give it to the pending handoff requester, else to the first live waiter
-- (dead waiters are dropped). Emits 'acquired' with origin '' so the grantee is told by pub/sub.
local function handoff(now)
  local r = request()
  if r then redis.call('DEL', K_REQUEST) end
  local conn = r and r.conn or redis.call('LPOP', K_QUEUE)
  while conn do
    local t = live_info(conn, now)
    if t then
      redis.call('LREM', K_QUEUE, 0, conn)
      local g = grant(t[1], t[2], t[3], false)
      emit({kind = 'acquired', lease = true, holder = holder_json(g), ttl_ms = LEASE_TTL,
            user = person(g), handoff = conn, queue = queue_map(), request = cjson.null})
      return g
    end
    conn = redis.call('LPOP', K_QUEUE)
  end
  if r then emit({kind = 'request_ended', request = cjson.null, queue = queue_map()}) end
  return false
end

-- End the current lease (already checked to be `h`) with `reason`, then hand it on.
local function end_lease(h, reason, origin, by, now)
  redis.call('DEL', K_LEASE, K_HOLDER)
  local ev = {kind = reason, lease = true, holder = cjson.null, reason = reason, user = person(h),
              origin = origin, prev = holder_json(h)}
  if by then ev.by = by end
  emit(ev)
  return handoff(now)
end

-- The announced holder if its lease is still alive; announces a silent expiry otherwise (and
-- returns the next holder the lease was handed to, if any).
local function settle()
  local h = holder()
  if h and redis.call('GET', K_LEASE) ~= h.fence then
    end_lease(h, 'expired', '', nil, now_ms())
    return holder()
  end
  return h
end



local function snapshot(now)
  local tabs = live_tabs(now)
  local h = holder()
  local seq = redis.call('GET', K_SEQ) or '0'
  return {seq = seq, holder = h and holder_json(h) or cjson.null,
          ttl_ms = h and redis.call('PTTL', K_LEASE) or -2,
          tabs = next(tabs) ~= nil and tabs or cjson.null,
          queue = queue_map(), request = request_json(request())}
end
