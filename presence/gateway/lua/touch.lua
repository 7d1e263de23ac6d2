-- touch: refresh the presence entries of one server's live tabs in many workspaces at once (one
-- heartbeat tick), and prune entries whose server stopped refreshing them (announced as 'left').
-- Libraries: _clock.lua, _workspace.lua, _lib.lua
-- KEYS[1..]  workspaces {tabs, info, seq, queue, request, locks, lock_base} - per workspace, these
--                          of its keys (as _workspace.lua names them; queue and request: the
--                          workspace's own lease's): any slots on plain Redis, one slot per call on
--                          Cluster
-- ARGV[1]    presence_ttl_ms - the presence TTL
-- ARGV[2]    publish         - the publish command ('PUBLISH' or 'SPUBLISH')
-- ARGV[3]    key_idle_ms     - the TTL of the seq counter (when a prune publishes), the wait queue
--                              and the locks set
-- ARGV[4..]  workspaces {channel, n, conns} - per workspace in KEYS order: its channel, n, then the
--                          n conns of this server's live tabs there
-- Returns per workspace {missing, event JSON...}: missing = '' or a JSON map of the given conns that
-- had no entry any more (pruned while this server was paused: the server joins them again); the
-- events ('left' for the pruned entries, then per named lock whose queue or request they left
-- 'dequeued' or 'request_ended') are the ones published on that workspace's channel.
local presence_ttl = tonumber(ARGV[1])
local now = now_ms()
local out = {}
local idle = ARGV[3]
local a = 4
for w = 1, #KEYS / 7 do
  local k = 7 * (w - 1)
  -- Only the presence keys and the way to the named locks: touch never reads or changes a lease,
  -- so the helpers it calls (prune, emit_pruned) need no lease, holder, fence, TTL or scope.
  local ws = {tabs = KEYS[k + 1], info = KEYS[k + 2], seq = KEYS[k + 3], queue = KEYS[k + 4],
              request = KEYS[k + 5], locks = KEYS[k + 6], lock_base = KEYS[k + 7], lock = '',
              channel = ARGV[a], pubcmd = ARGV[2], idle = idle, events = {}}
  local n = tonumber(ARGV[a + 1])
  local removed, any, dropped = prune(ws, now)
  if any then emit_pruned(ws, removed, dropped) end
  local missing = {}
  for i = 1, n do
    local conn = ARGV[a + 1 + i]
    if redis.call('ZADD', ws.tabs, 'XX', 'CH', now + presence_ttl, conn) == 0
        and not redis.call('ZSCORE', ws.tabs, conn) then
      missing[conn] = 1
    end
  end
  redis.call('PEXPIRE', ws.tabs, presence_ttl * 2)
  redis.call('PEXPIRE', ws.info, presence_ttl * 2)
  -- The wait queue and the list of named locks live while their workspace has live tabs (a
  -- waiter is one of them).
  redis.call('PEXPIRE', ws.queue, idle)
  redis.call('PEXPIRE', ws.locks, idle)
  local res = {next(missing) ~= nil and cjson.encode(missing) or ''}
  for i = 1, #ws.events do res[#res + 1] = ws.events[i] end
  out[w] = res
  a = a + 2 + n
end
return out
