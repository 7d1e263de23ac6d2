-- release: end a lease and hand it to the next in line. Compare-and-set on the fence, so a holder
-- whose lease expired and was granted to someone else cannot release its successor's lease.
-- Called by a waiter that does not hold the lease, it only leaves the queue.
-- Libraries: _clock.lua, _workspace.lua, _lib.lua
-- KEYS[1..10] - the workspace keys (_workspace.lua)
-- ARGV[1..6]  - the workspace head (_workspace.lua)
-- ARGV[7]     fence  - the fence the caller holds ('' = whoever holds it: an operator's force release)
-- ARGV[8]     reason - 'released', 'revoked' or 'idle' (the event's kind)
-- ARGV[9]     origin - origin conn ('' for none)
-- ARGV[10]    by     - JSON person who ended it, or ''
-- Returns {reply JSON, event JSON...}, the events in the order published; the replies, by status:
--   relinquished {fence, next?}  ended (event `reason`), then handed on (next: to whom)
--   dequeued     {}              the caller was only waiting: left the queue (event 'dequeued')
--   not_holder   {holder}
-- A silent expiry noticed first is announced first: 'expired', then the handoff's events.
local ws = workspace(KEYS, ARGV)
local token, reason, origin, by = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local h = settle(ws)
if not h or (token ~= '' and h.fence ~= token) then
  if origin ~= '' and redis.call('LREM', ws.queue, 0, origin) > 0 then
    emit(ws, {kind = 'dequeued', queue = queue_map(ws), origin = origin})
    return reply(ws, 'dequeued', nil)
  end
  return reply(ws, 'not_holder', {holder = h and holder_json(h) or cjson.null})
end
local g = end_lease(ws, h, reason, origin, by ~= '' and cjson.decode(by) or nil, now_ms())
return reply(ws, 'relinquished', {fence = h.fence, next = g and person(g) or nil})
