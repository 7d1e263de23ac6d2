-- _lib.lua: the workspace helpers (Redis scripts cannot import).
-- Libraries: _clock.lua, _workspace.lua
--
-- The helpers hold no state: all they act on is in `ws` (the table _workspace.lua makes: keys,
-- channel, publish command, lease TTL, scope, lock) or in their arguments. ws.events collects the
-- JSON of the events published so far, in order, for the reply: {reply JSON, event JSON...}, the
-- reply an object with its `status` (touch: per workspace {missing, event JSON...}). Every event
-- about a named lock's lease, queue or request carries `lock`; the presence events (joined,
-- status, left) do not.
--
-- The helpers (`ws` a workspace table, `h` a holder from holder(ws), `now` Redis time in ms):
--   counter(ws, key)                 INCR the seq counter, re-seeded from TIME when missing
--   next_fence(ws)                   the fence of a new grant: max(last + 1, TIME in µs)
--   holder(ws)                       the announced holder {fence, user, name, tab, since, took}, or false
--   holder_json(h), person(h)        h as event JSON: the holder record; the person {id, name}
--   matches(ws, h, user, tab)        is (user, tab) the holder, in ws.scope?
--   emit(ws, ev)                     give `ev` the next seq, the time and ws's lock, publish it, add
--                                    it to ws.events
--   reply(ws, status, detail)        the script's reply: detail (a table or nil) with its status
--   queue_map(ws)                    the queue as {conn = position}, or null
--   request(ws)                      the pending request {conn, user, name, message, deadline}, or false
--   request_json(r)                  a request as event JSON, null for none
--   drop_conns(ws, conns)            take conns out of every named lock's queue and request
--   emit_dropped(dropped, origin)    announce what drop_conns changed, one event per lock
--   prune(ws, now)                   drop expired presence entries: {conn = info} of those, any
--                                    dropped?, what that changed in the named locks
--   emit_pruned(ws, removed, dropped) announce pruned entries ('left', then the named locks' events)
--   live_tabs(ws, now)               prune (announced), then {conn = info JSON} of the live tabs
--   holder_has_other_tab(ws, h, except, now)  has h a live tab besides the conn `except`?
--   grant(ws, user, name, tab, force)         the new holder, or false when the lease is taken
--   too_many(ws, limit)              would a grant of ws's named lock make more than limit held?
--   live_info(ws, conn, now)         a live tab's decoded info, or nil
--   handoff(ws, now)                 give the free lease to the requester or the first live waiter
--   end_lease(ws, h, reason, origin, by, now) end h's lease, announce it, hand it on
--   settle(ws)                       the holder, after announcing (and handing on) a silent expiry
--   orphan(ws)                       a lease key without its holder record: someone unknown, or false
--   settle_locks(ws)                 settle every named lock: a list of {l = lock table, h = holder}
--   snapshot(ws, now)                the whole workspace {seq, at, holder, ttl_ms, tabs, queue,
--                                    request, locks}, locks = {lock = {holder, ttl_ms, queue, request}}
--   keep_holder(ws)                  the lease's TTL was replaced: the holder record's is too
--
-- A lease that ends (released, expired, revoked, idle) goes at once to the pending handoff
-- requester, else to the first live waiter of the queue: in the same script, so atomically.
-- The seq counter: when missing (lost, or expired after the key idle time) it restarts from Redis
-- TIME in microseconds, above anything it held before (it grows by far less than a million a
-- second). One that went back (a failover to a replica that missed the last changes) is caught
-- by the servers instead: an event whose seq is not above theirs but whose time is (core/replica.py).
-- INCR answers 1 only for a missing counter (a present one holds at least its seed): then it is
-- seeded, as if it had been before the INCR.
local function counter(ws, key)
  local n = redis.call('INCR', key)
  if n == 1 then
    n = time_us() + 1
    redis.call('SET', key, str(n))
  end
  redis.call('PEXPIRE', key, ws.idle)
  return n
end

-- The fence rule: max(last fence + 1, Redis TIME in µs), per lock (each has its own fence key). The
-- fence key may be lost (Redis restarted without persistence), expired (idle), or behind (a replica
-- promoted by a failover missed the last grants): the clock still puts the new fence above every
-- fence issued before, given Redis clocks that agree within the time since that grant. The +1 keeps
-- fences strictly increasing when grants come faster than the clock's microseconds.
local function next_fence(ws)
  local fence = math.max((tonumber(redis.call('GET', ws.fence)) or 0) + 1, time_us())
  redis.call('SET', ws.fence, str(fence), 'PX', ws.idle)
  return fence
end

-- The fence first: most reads find no holder, and one field costs Redis a third of six.
local function holder(ws)
  local fence = redis.call('HGET', ws.holder, 'fence')
  if not fence then return false end
  local h = redis.call('HMGET', ws.holder, 'user', 'name', 'tab', 'since', 'took')
  return {fence = fence, user = h[1], name = h[2], tab = h[3], since = h[4], took = h[5] == '1'}
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
  if ws.lock ~= '' then ev.lock = ws.lock end
  local msg = cjson.encode(ev)
  redis.call(ws.pubcmd, ws.channel, msg)
  ws.events[#ws.events + 1] = msg
end

-- A single-lock script replies last: its named lock leaves the locks set here once it has no keys.
local function reply(ws, status, detail)
  tidy(ws)
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

-- The conn first, as holder() reads the fence: most reads find no request.
local function request(ws)
  local conn = redis.call('HGET', ws.request, 'conn')
  if not conn then return false end
  local r = redis.call('HMGET', ws.request, 'user', 'name', 'message', 'deadline')
  return {conn = conn, user = r[1], name = r[2], message = r[3], deadline = r[4]}
end

local function request_json(r)
  if not r then return cjson.null end
  return {conn = r.conn, user = r.user, name = r.name, message = r.message, deadline = r.deadline}
end

-- The named locks' side of a tab that is gone: it leaves each queue and withdraws its request.
-- Returns, per named lock that changed, {l = lock table, dequeued, unrequested}.
local function drop_conns(ws, conns)
  local dropped = {}
  for _, name in ipairs(lock_names(ws)) do
    local l = lock_of(ws, name)
    local dequeued, unrequested = false, false
    local asking = redis.call('HGET', l.request, 'conn')
    for i = 1, #conns do
      if redis.call('LREM', l.queue, 0, conns[i]) > 0 then dequeued = true end
      if asking == conns[i] then unrequested = true end
    end
    if unrequested then redis.call('DEL', l.request) end
    if dequeued or unrequested then
      dropped[#dropped + 1] = {l = l, dequeued = dequeued, unrequested = unrequested}
    end
  end
  return dropped
end

-- One event per named lock: 'request_ended' (with the queue when it changed too) or 'dequeued'.
-- No target: nobody is told 'declined' for a request whose tab is gone.
local function emit_dropped(dropped, origin)
  for _, d in ipairs(dropped) do
    local ev = {kind = d.unrequested and 'request_ended' or 'dequeued', origin = origin}
    if d.dequeued then ev.queue = queue_map(d.l) end
    if d.unrequested then ev.request = cjson.null end
    emit(d.l, ev)
    tidy(d.l)
  end
end

-- A dead tab also leaves the queues and withdraws its requests: none may outlive it.
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
  if not any then return removed, false, {} end
  redis.call('ZREMRANGEBYSCORE', ws.tabs, '-inf', now)
  return removed, true, drop_conns(ws, dead)
end

local function emit_pruned(ws, removed, dropped)
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
  emit_dropped(dropped, '')
end

local function live_tabs(ws, now)
  local removed, any, dropped = prune(ws, now)
  if any then emit_pruned(ws, removed, dropped) end
  local conns = redis.call('ZRANGE', ws.tabs, 0, -1)
  local tabs = {}
  if #conns > 0 then
    -- The whole hash in one pass, not an HMGET naming every conn: Redis keeps a hash of up to
    -- hash-max-listpack-entries fields as a list, and would search it once per conn named.
    local all = redis.call('HGETALL', ws.info)
    local infos = {}
    for i = 1, #all, 2 do infos[all[i]] = all[i + 1] end
    for i = 1, #conns do
      local info = infos[conns[i]]
      if info then tabs[conns[i]] = info end
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
    ok = redis.call('SET', ws.lease, fence, 'PX', ws.px)
  else
    ok = redis.call('SET', ws.lease, fence, 'NX', 'PX', ws.px)
  end
  if not ok then return false end
  local since = str(now_ms())
  redis.call('HSET', ws.holder, 'fence', fence, 'user', user, 'name', name, 'tab', tab, 'since', since,
             'took', force and '1' or '0')
  redis.call('PEXPIRE', ws.holder, ws.idle)
  note(ws)
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

-- A lease key without its holder record (evicted, or expired before the key): held by someone
-- unknown. The scripts that act on a holder act on this one (a takeover replaces it, a request
-- asks nobody and ends at its deadline), never on nothing.
local function orphan(ws)
  local fence = redis.call('GET', ws.lease)
  if not fence then return false end
  return {fence = fence, user = '', name = 'someone', tab = '', since = '0', took = false}
end

local function settle_locks(ws)
  local out = {}
  for _, name in ipairs(lock_names(ws)) do
    local l = lock_of(ws, name)
    out[#out + 1] = {l = l, h = settle(l)}
    tidy(l)
  end
  return out
end

-- Counted only when the set could hold that many: a grant of a new named lock costs O(1) below
-- the limit. The count settles each lock first, so an expiry nobody announced yet frees its place
-- (and a handoff it makes takes it again, as it did before the expiry).
local function too_many(ws, limit)
  if ws.lock == '' or redis.call('SCARD', ws.locks) < limit then return false end
  local held = 0
  for _, name in ipairs(lock_names(ws)) do
    if name ~= ws.lock then
      local l = lock_of(ws, name)
      settle(l)
      tidy(l)
      if redis.call('EXISTS', l.lease) == 1 then held = held + 1 end
    end
  end
  return held >= limit
end

local function lock_record(l)
  local h, q, r = holder(l), queue_map(l), request(l)
  if not h and q == cjson.null and not r then return nil end
  return {holder = h and holder_json(h) or cjson.null, ttl_ms = h and redis.call('PTTL', l.lease) or -2,
          queue = q, request = request_json(r)}
end

local function snapshot(ws, now)
  local tabs = live_tabs(ws, now)
  local h = holder(ws)
  local locks = {}
  for _, name in ipairs(lock_names(ws)) do
    locks[name] = lock_record(lock_of(ws, name))
  end
  local seq = redis.call('GET', ws.seq) or '0'
  -- Read last: not before any event this script published (a replica tells a duplicate by it).
  return {seq = seq, at = str(now_ms()), holder = h and holder_json(h) or cjson.null,
          ttl_ms = h and redis.call('PTTL', ws.lease) or -2,
          tabs = next(tabs) ~= nil and tabs or cjson.null,
          queue = queue_map(ws), request = request_json(request(ws)),
          locks = next(locks) ~= nil and locks or cjson.null}
end
