-- takeover: force-take the lease. Replaces the holder, bumps the fence and publishes atomically,
-- so the old holder's next renew fails even if it never hears the message.
-- KEYS: the seven workspace keys (see _lib.lua).
-- ARGV: [1] channel [2] publish command [3] user [4] name [5] tab [6] origin conn [7] scope
--       [8] lease ttl ms
-- Returns {'acquired', {fence, ttl_ms}, events...}      it was free (event kind 'acquired')
--         {'taken_over', {fence, ttl_ms, from}, events...} replaced a holder ('taken_over')
--         {'rejoined', {fence, ttl_ms}}                  the caller already held it
local user, name, tab, origin, scope, ttl = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
local h = settle()
if h and matches(h, user, tab, scope) then
  redis.call('PEXPIRE', K_LEASE, ttl)
  return reply('rejoined', {fence = h.fence, ttl_ms = ttl})
end
local g = grant(user, name, tab, ttl, h ~= false)
if h then
  emit({kind = 'taken_over', lease = true, holder = holder_json(g), ttl_ms = ttl, user = person(g),
        from = person(h), reason = 'taken_over', origin = origin, prev = holder_json(h)})
  return reply('taken_over', {fence = g.fence, ttl_ms = ttl, from = person(h)})
end
emit({kind = 'acquired', lease = true, holder = holder_json(g), ttl_ms = ttl, user = person(g),
      origin = origin})
return reply('acquired', {fence = g.fence, ttl_ms = ttl})
