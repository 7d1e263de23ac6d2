-- touch: refresh the presence entries of one server's live tabs in many workspaces at once (one
-- heartbeat tick), and prune entries whose server stopped refreshing them (announced as 'left').
-- KEYS: per workspace, 5 keys: tabs, info, seq, queue, request (any slots on plain Redis; one
--       slot per call on Cluster)
-- ARGV: [1] presence ttl ms [2] publish command, then per workspace: channel, n, conn1..connN
-- Returns per workspace {missing, event JSON...}: missing = '' or a JSON map of the given conns that had
-- no entry any more (pruned while this server was paused: the server joins them again).
local presence_ttl = tonumber(ARGV[1])
local now = now_ms()
local out = {}
local a = 3
for w = 1, #KEYS / 5 do
  local k = 5 * (w - 1)
  K_TABS, K_INFO, K_SEQ, K_QUEUE, K_REQUEST = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5]
  CHANNEL = ARGV[a]
  local n = tonumber(ARGV[a + 1])
  events = {}
  local removed, any = prune(now)
  if any then emit_pruned(removed) end
  local missing = {}
  for i = 1, n do
    local conn = ARGV[a + 1 + i]
    if redis.call('ZADD', K_TABS, 'XX', 'CH', now + presence_ttl, conn) == 0
        and not redis.call('ZSCORE', K_TABS, conn) then
      missing[conn] = 1
    end
  end
  redis.call('PEXPIRE', K_TABS, presence_ttl * 2)
  redis.call('PEXPIRE', K_INFO, presence_ttl * 2)
  local res = {next(missing) ~= nil and cjson.encode(missing) or ''}
  for i = 1, #events do res[#res + 1] = events[i] end
  out[w] = res
  a = a + 2 + n
end
return out
