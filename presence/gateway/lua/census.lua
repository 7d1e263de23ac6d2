-- census: the live servers and, when asked, the active workspaces, after pruning expired entries.
-- Libraries: _clock.lua
-- KEYS[1]    servers     - zset: server id -> expiry ms, as announce.lua
-- KEYS[2]    server_info - hash: server id -> JSON
-- KEYS[3]    workspaces  - zset: workspace -> expiry ms
-- ARGV[1]    with_workspaces - '1' to include the workspaces
-- Returns {now ms, {id, expiry, info JSON, ...}, {workspace, ...}}
local now = str(now_ms())
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 1, #dead do redis.call('HDEL', KEYS[2], dead[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local servers = {}
local live = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #live, 2 do
  local info = redis.call('HGET', KEYS[2], live[i])
  if info then
    servers[#servers + 1] = live[i]
    servers[#servers + 1] = live[i + 1]
    servers[#servers + 1] = info
  end
end
local workspaces = {}
if ARGV[1] == '1' then workspaces = redis.call('ZRANGE', KEYS[3], 0, -1) end
return {now, servers, workspaces}
