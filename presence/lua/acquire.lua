-- acquire: take a free lease with SET NX PX, rejoin one the caller already holds, or report busy.
-- KEYS: the seven workspace keys (see _lib.lua).
-- ARGV: [1] channel [2] publish command [3] user [4] name [5] tab [6] origin conn [7] scope
--       [8] lease ttl ms
-- Returns {'acquired', {fence, ttl_ms}, events...}   a new grant (event kind 'acquired')
--         {'rejoined', {fence, ttl_ms}}               the caller already held it: TTL replaced
--         {'busy',     {holder}}                      someone else holds it
local user, name, tab, origin, scope, ttl = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
local h = settle()
if h then
  if matches(h, user, tab, scope) then
    redis.call('PEXPIRE', K_LEASE, ttl)
    return reply('rejoined', {fence = h.fence, ttl_ms = ttl})
  end
  return reply('busy', {holder = holder_json(h)})
end
local g = grant(user, name, tab, ttl, false)
if not g then
  return reply('busy', {holder = cjson.null})
end
emit({kind = 'acquired', lease = true, holder = holder_json(g), ttl_ms = ttl,
      user = person(g), origin = origin})
return reply('acquired', {fence = g.fence, ttl_ms = ttl})
