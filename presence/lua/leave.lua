-- leave: a tab leaves the workspace. When it closed cleanly and was the holder's last live tab,
-- the lease TTL is shortened to the grace period (never lengthened): a reload within grace
-- rejoins it, otherwise it expires and the expiry watchers announce it.
-- KEYS: the seven workspace keys (see _lib.lua).
-- ARGV: [1] channel [2] publish command [3] conn [4] clean ('1' or '0') [5] grace ms [6] scope
-- Returns {'left', {ttl_ms?}, events...} | {'gone', ''} when the tab had no presence entry.
local conn, clean, grace, scope = ARGV[3], ARGV[4] == '1', tonumber(ARGV[5]), ARGV[6]
local info = redis.call('HGET', K_INFO, conn)
redis.call('LREM', K_QUEUE, 0, conn)
if not info then return reply('gone', nil) end
local now = now_ms()
local h = settle()
redis.call('ZREM', K_TABS, conn)
redis.call('HDEL', K_INFO, conn)
local t = cjson.decode(info)
local ev = {kind = 'left', user = {id = t[1], name = t[2]}, rm = {[conn] = 1}, origin = conn}
if clean and h and matches(h, t[1], t[3], scope) and not holder_has_other_tab(h, scope, conn, now) then
  local pttl = redis.call('PTTL', K_LEASE)
  if grace <= 0 then
    redis.call('DEL', K_LEASE, K_HOLDER)
    emit(ev)
    emit({kind = 'released', lease = true, holder = cjson.null, reason = 'released', user = person(h),
          prev = holder_json(h)})
    return reply('left', {ttl_ms = 0})
  end
  if pttl > grace then
    redis.call('PEXPIRE', K_LEASE, grace)
    pttl = grace
  end
  ev.ttl_ms = pttl
end
emit(ev)
return reply('left', {ttl_ms = ev.ttl_ms})
