-- announce: one server's registry entry and the workspaces it has tabs in, each with an expiry in
-- Redis time; prunes expired entries. Global keys only, never a workspace's: the three share the
-- hash tag {#registry} (one slot on Cluster, and no workspace id can contain '#').
-- Libraries: _clock.lua
-- KEYS[1]    servers     - zset: server id -> expiry ms
-- KEYS[2]    server_info - hash: server id -> JSON
-- KEYS[3]    workspaces  - zset: workspace -> expiry ms
-- ARGV[1]    server      - server id
-- ARGV[2]    info        - server info JSON ('' removes the server)
-- ARGV[3]    ttl_ms      - the TTL of the entries written
-- ARGV[4..]  workspaces  - the workspaces it has tabs in
-- Returns the Redis time in ms (string).
local now = now_ms()
local id, info, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local expiry = str(now + ttl)
if info == '' then
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
else
  redis.call('ZADD', KEYS[1], expiry, id)
  redis.call('HSET', KEYS[2], id, info)
end
-- ZADD in chunks: one call per workspace is slow, one call for all can exceed Lua's stack.
local args = {}
for i = 4, #ARGV do
  args[#args + 1] = expiry
  args[#args + 1] = ARGV[i]
  if #args >= 400 then
    redis.call('ZADD', KEYS[3], unpack(args))
    args = {}
  end
end
if #args > 0 then redis.call('ZADD', KEYS[3], unpack(args)) end
local past = str(now)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', past)
for i = 1, #dead do redis.call('HDEL', KEYS[2], dead[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', past)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', past)
return past
