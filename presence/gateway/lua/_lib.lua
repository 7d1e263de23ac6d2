-- _lib.lua: the workspace helpers (Redis scripts cannot import).
-- Libraries: _clock.lua
--
-- Every workspace script but touch acts on one workspace: its header cites these KEYS and the head
-- of its ARGV, `KEYS[1..8] - ... (_lib.lua)` and `ARGV[1..5] - ... (_lib.lua)`, its own arguments
-- follow from ARGV[6], and it starts with `local ws = workspace(KEYS, ARGV)`. touch refreshes many
-- workspaces in one call and builds the table itself, one per workspace, with the fields its
-- helpers read (see touch.lua). The keys share the hash tag {workspace} (one slot per call on
-- Redis Cluster):
-- KEYS[1] lease   - string: the lease itself: value = fence of the current grant, TTL = lease TTL
-- KEYS[2] holder  - hash: the announced holder {fence, user, name, tab, since, took}; outlives the
--                   lease key until a script notices the expiry and announces it (TTL: key idle
--                   time, refreshed by every grant and rejoin, and by renewals now and then)
-- KEYS[3] fence   - string: the last fence issued; TTL: key idle time, refreshed by every grant
-- KEYS[4] seq     - string: change sequence counter, seeded from TIME when missing; TTL: key idle
--                   time, refreshed by every change
-- KEYS[5] tabs    - zset: conn -> presence expiry (Redis time, ms); TTL: twice the presence TTL
-- KEYS[6] info    - hash: conn -> tab info JSON [user, name, tab, active, meta, server]; same TTL
-- KEYS[7] queue   - list: FIFO wait queue of conns; TTL: key idle time, refreshed when one joins it
-- KEYS[8] request - hash: the pending polite-handoff request {conn, user, name, message, deadline}
-- ARGV[1] channel      - the workspace's pub/sub channel
-- ARGV[2] publish      - the publish command: 'PUBLISH', or 'SPUBLISH' on Cluster
-- ARGV[3] lease_ttl_ms - the TTL of a grant or renewal the script makes
-- ARGV[4] scope        - the lease scope: 'user' or 'tab'
-- ARGV[5] key_idle_ms  - the key idle time
-- So no key outlives the workspace's last use by more than the key idle time
-- (PRESENCE_KEY_IDLE_DAYS): that is safe for the counters because of the fence rule in grant().
--
-- The helpers hold no state: all they act on is in `ws` (keys, channel, publish command, lease TTL,
-- scope) or in their arguments. ws.events collects the JSON of the events published so far, in
-- order, for the reply: {reply JSON, event JSON...}, the reply an object with its `status` (touch:
-- per workspace {missing, event JSON...}).
--
-- The helpers (`ws` a workspace table, `h` a holder from holder(ws), `now` Redis time in ms):
--   workspace(keys, argv)            the table of a single-workspace script, no events yet
--   counter(ws, key)                 INCR the seq counter, re-seeded from TIME when missing
--   next_fence(ws)                   the fence of a new grant: max(last + 1, TIME in µs)
--   holder(ws)                       the announced holder {fence, user, name, tab, since, took}, or false
--   holder_json(h), person(h)        h as event JSON: the holder record; the person {id, name}
--   matches(ws, h, user, tab)        is (user, tab) the holder, in ws.scope?
--   emit(ws, ev)                     give `ev` the next seq and the time, publish it, add it to ws.events
--   reply(ws, status, detail)        the script's reply: detail (a table or nil) with its status
--   queue_map(ws)                    the queue as {conn = position}, or null
--   request(ws)                      the pending request {conn, user, name, message, deadline}, or false
--   request_json(r)                  a request as event JSON, null for none
--   prune(ws, now)                   drop expired presence entries: {conn = info} of those, any dropped?
--   emit_pruned(ws, removed)         announce pruned entries ('left')
--   live_tabs(ws, now)               prune (announced), then {conn = info JSON} of the live tabs
--   holder_has_other_tab(ws, h, except, now)  has h a live tab besides the conn `except`?
--   grant(ws, user, name, tab, force)         the new holder, or false when the lease is taken
--   live_info(ws, conn, now)         a live tab's decoded info, or nil
--   handoff(ws, now)                 give the free lease to the requester or the first live waiter
--   end_lease(ws, h, reason, origin, by, now) end h's lease, announce it, hand it on
--   settle(ws)                       the holder, after announcing (and handing on) a silent expiry
--   snapshot(ws, now)                the whole workspace {seq, at, holder, ttl_ms, tabs, queue, request}
--   keep_holder(ws)                  the lease's TTL was replaced: the holder record's is too
--
-- A lease that ends (released, expired, revoked, idle) goes at once to the pending handoff
-- requester, else to the first live waiter of the queue: in the same script, so atomically.
local unpack = unpack or table.unpack

local function workspace(keys, argv)
  return {lease = keys[1], holder = keys[2], fence = keys[3], seq = keys[4],
          tabs = keys[5], info = keys[6], queue = keys[7], request = keys[8],
          channel = argv[1], pubcmd = argv[2], ttl = tonumber(argv[3]), scope = argv[4],
          idle = tonumber(argv[5]), events = {}}
end

local function time_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- The seq counter: when missing (lost, or expired after the key idle time) it restarts from Redis
-- TIME in microseconds, above anything it held before (it grows by far less than a million a
-- second). One that went back (a failover to a replica that missed the last changes) is caught
-- by the servers instead: an event whose seq is not above theirs but whose time is (core/replica.py).
local function counter(ws, key)
  if redis.call('EXISTS', key) == 0 then
    redis.call('SET', key, str(time_us()))
  end
  local n = redis.call('INCR', key)
  redis.call('PEXPIRE', key, ws.idle)
  return n
end

-- The fence rule: max(last fence + 1, Redis TIME in µs). The fence key may be lost (Redis restarted
-- without persistence), expired (idle), or behind (a replica promoted by a failover missed the last
-- grants): the clock still puts the new fence above every fence issued before, given Redis clocks
-- that agree within the time since that grant. The +1 keeps fences strictly increasing when grants
-- come faster than the clock's microseconds.
local function next_fence(ws)
  local fence = redis.call('INCR', ws.fence)
  local now = time_us()
  if now > fence then
    fence = now
    redis.call('SET', ws.fence, str(fence))
  end
  redis.call('PEXPIRE', ws.fence, ws.idle)
  return fence
end

local function holder(ws)
  local h = redis.call('HMGET', ws.holder, 'fence', 'user', 'name', 'tab', 'since', 'took')
  if not h[1] then return false end
  return {fence = h[1], user = h[2], name = h[3], tab = h[4], since = h[5], took = h[6] == '1'}
end

local function holder_json(h)
  return {fence = h.fence, user = h.user, name = h.name, tab = h.tab, since = h.since}
end

local function person(h)
  return {id = h.user, name = h.name}
end

local function matches(ws, h, user, tab)
  return h.user == user and (ws.scope == 'user' or h.tab == tab)
end

local function emit(ws, ev)
  ev.seq = str(counter(ws, ws.seq))
  ev.at = str(now_ms())
  local msg = cjson.encode(ev)
  redis.call(ws.pubcmd, ws.channel, msg)
  ws.events[#ws.events + 1] = msg
end

local function reply(ws, status, detail)
  detail = detail or {}
  detail.status = status  -- never an empty table, which cjson implementations encode as {} or []
  local out = {cjson.encode(detail)}
  for i = 1, #ws.events do out[#out + 1] = ws.events[i] end
  return out
end

-- cjson cannot encode an empty array: null for an empty queue.
local function queue_map(ws)
  local q = redis.call('LRANGE', ws.queue, 0, -1)
  if #q == 0 then return cjson.null end
  local m = {}
  for i = 1, #q do m[q[i]] = i end
  return m
end

local function request(ws)
  local r = redis.call('HMGET', ws.request, 'conn', 'user', 'name', 'message', 'deadline')
  if not r[1] then return false end
  return {conn = r[1], user = r[2], name = r[3], message = r[4], deadline = r[5]}
end

local function request_json(r)
  if not r then return cjson.null end
  return {conn = r.conn, user = r.user, name = r.name, message = r.message, deadline = r.deadline}
end

-- A dead tab also leaves the queue and withdraws its request: neither may outlive it.
local function prune(ws, now)
  local removed, any = {}, false
  local dead = redis.call('ZRANGEBYSCORE', ws.tabs, '-inf', now)
  for i = 1, #dead do
    removed[dead[i]] = redis.call('HGET', ws.info, dead[i]) or '[]'
    redis.call('HDEL', ws.info, dead[i])
    redis.call('LREM', ws.queue, 0, dead[i])
    if redis.call('HGET', ws.request, 'conn') == dead[i] then redis.call('DEL', ws.request) end
    any = true
  end
  if any then redis.call('ZREMRANGEBYSCORE', ws.tabs, '-inf', now) end
  return removed, any
end

local function emit_pruned(ws, removed)
  local rm, who = {}, nil
  for conn, info in pairs(removed) do
    rm[conn] = 1
    if not who then
      local ok, t = pcall(cjson.decode, info)
      if ok and t[1] then who = {id = t[1], name = t[2]} end
    end
  end
  emit(ws, {kind = 'left', user = who or cjson.null, rm = rm, queue = queue_map(ws),
            request = request_json(request(ws))})
end

local function live_tabs(ws, now)
  local removed, any = prune(ws, now)
  if any then emit_pruned(ws, removed) end
  local conns = redis.call('ZRANGE', ws.tabs, 0, -1)
  local tabs = {}
  if #conns > 0 then
    local infos = redis.call('HMGET', ws.info, unpack(conns))
    for i = 1, #conns do
      if infos[i] then tabs[conns[i]] = infos[i] end
    end
  end
  return tabs
end

-- Is any live tab other than `except` one of the holder's (same user; same tab id in tab scope)?
local function holder_has_other_tab(ws, h, except, now)
  local conns = redis.call('ZRANGEBYSCORE', ws.tabs, '(' .. now, '+inf')
  for i = 1, #conns do
    if conns[i] ~= except then
      local info = redis.call('HGET', ws.info, conns[i])
      if info then
        local t = cjson.decode(info)
        if matches(ws, h, t[1], t[3]) then return true end
      end
    end
  end
  return false
end

-- SET NX unless forced (takeover). A forced grant is remembered, for the takeover cooldown. A failed
-- SET NX still used up a fence number: harmless, fences only have to grow.
local function grant(ws, user, name, tab, force)
  local fence = str(next_fence(ws))
  local ok
  if force then
    ok = redis.call('SET', ws.lease, fence, 'PX', ws.ttl)
  else
    ok = redis.call('SET', ws.lease, fence, 'NX', 'PX', ws.ttl)
  end
  if not ok then return false end
  local since = str(now_ms())
  redis.call('HSET', ws.holder, 'fence', fence, 'user', user, 'name', name, 'tab', tab, 'since', since,
             'took', force and '1' or '0')
  redis.call('PEXPIRE', ws.holder, ws.idle)
  return {fence = fence, user = user, name = name, tab = tab, since = since}
end

local function keep_holder(ws)
  redis.call('PEXPIRE', ws.holder, ws.idle)
end

local function live_info(ws, conn, now)
  local score = redis.call('ZSCORE', ws.tabs, conn)
  if not score or tonumber(score) <= now then return nil end
  local info = redis.call('HGET', ws.info, conn)
  return info and cjson.decode(info)
end

-- The lease is free: give it to the pending handoff requester, else to the first live waiter
-- (dead waiters are dropped). Emits 'acquired' with origin '' so the grantee is told by pub/sub.
local function handoff(ws, now)
  local r = request(ws)
  if r then redis.call('DEL', ws.request) end
  local conn = r and r.conn or redis.call('LPOP', ws.queue)
  while conn do
    local t = live_info(ws, conn, now)
    if t then
      redis.call('LREM', ws.queue, 0, conn)
      local g = grant(ws, t[1], t[2], t[3], false)
      emit(ws, {kind = 'acquired', lease = true, holder = holder_json(g), ttl_ms = ws.ttl,
                user = person(g), handoff = conn, queue = queue_map(ws), request = cjson.null})
      return g
    end
    conn = redis.call('LPOP', ws.queue)
  end
  if r then emit(ws, {kind = 'request_ended', request = cjson.null, queue = queue_map(ws)}) end
  return false
end

-- The caller has checked that `h` holds the lease: no compare-and-set here.
local function end_lease(ws, h, reason, origin, by, now)
  redis.call('DEL', ws.lease, ws.holder)
  local ev = {kind = reason, lease = true, holder = cjson.null, reason = reason, user = person(h),
              origin = origin, prev = holder_json(h)}
  if by then ev.by = by end
  emit(ws, ev)
  return handoff(ws, now)
end

-- An expiry nobody announced yet (the lease key is gone, the holder record is not) is announced
-- here, by whichever script comes first, and the lease handed on.
local function settle(ws)
  local h = holder(ws)
  if h and redis.call('GET', ws.lease) ~= h.fence then
    end_lease(ws, h, 'expired', '', nil, now_ms())
    return holder(ws)
  end
  return h
end

local function snapshot(ws, now)
  local tabs = live_tabs(ws, now)
  local h = holder(ws)
  local seq = redis.call('GET', ws.seq) or '0'
  -- Read last: not before any event this script published (a replica tells a duplicate by it).
  return {seq = seq, at = str(now_ms()), holder = h and holder_json(h) or cjson.null,
          ttl_ms = h and redis.call('PTTL', ws.lease) or -2,
          tabs = next(tabs) ~= nil and tabs or cjson.null,
          queue = queue_map(ws), request = request_json(request(ws))}
end
