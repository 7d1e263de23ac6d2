-- release: end a lease. Compare-and-set on the fence, so a holder whose lease expired and was
-- granted to someone else cannot release its successor's lease.
-- KEYS: the seven workspace keys (see _lib.lua).
-- ARGV: [1] channel [2] publish command [3] fence the caller holds ('' = whoever holds it:
--       an operator's force release) [4] reason: 'released', 'revoked' or 'idle'
--       [5] origin conn [6] by: JSON person who caused it, or ''
-- Returns {'released', {fence}, events...} | {'not_holder', {holder}, events...}
local token, reason, origin, by = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local h = settle()
if not h or (token ~= '' and h.fence ~= token) then
  return reply('not_holder', {holder = h and holder_json(h) or cjson.null})
end
redis.call('DEL', K_LEASE, K_HOLDER)
local ev = {kind = reason, lease = true, holder = cjson.null, reason = reason, user = person(h),
            origin = origin, prev = holder_json(h)}
if by ~= '' then ev.by = cjson.decode(by) end
emit(ev)
return reply('released', {fence = h.fence})
