-- _workspace.lua: a workspace script's table of its workspace and lock (Redis scripts cannot import).
-- Libraries: none
--
-- Every workspace script but touch acts on one workspace and one of its locks (the workspace's own
-- lease, lock '', or a named lock): its header cites these KEYS and the head of its ARGV,
-- `KEYS[1..10] - ... (_workspace.lua)` and `ARGV[1..6] - ... (_workspace.lua)`, its own arguments
-- follow from ARGV[7], and it starts with `local ws = workspace(KEYS, ARGV)`. touch refreshes many
-- workspaces in one call and builds the table itself, one per workspace, with the fields its
-- helpers read (see touch.lua). The keys share the hash tag {workspace} (one slot per call on Redis
-- Cluster). The first five keys are the lock's: the workspace's own lease keeps the names
-- <prefix>:{ws}:lease, ...; a named lock L has <prefix>:{ws}:lock:L:lease, ... (lock_base .. L ..
-- ':lease', built by lock_of for the named locks a script finds in the locks set: in the same
-- slot, so Redis Cluster serves them like the keys declared).
-- KEYS[1] lease     - string: the lease itself: value = fence of the current grant, TTL = lease TTL
-- KEYS[2] holder    - hash: the announced holder {fence, user, name, tab, since, took}; outlives the
--                     lease key until a script notices the expiry and announces it (TTL: key idle
--                     time, refreshed by every grant and rejoin, and by renewals now and then)
-- KEYS[3] fence     - string: the last fence issued for this lock; TTL: key idle time, refreshed by
--                     every grant
-- KEYS[4] queue     - list: FIFO wait queue of conns; TTL: key idle time, refreshed when one joins
--                     it (and by touch for the workspace's own, by renewals now and then for all)
-- KEYS[5] request   - hash: the pending polite-handoff request {conn, user, name, message, deadline}
-- KEYS[6] seq       - string: the workspace's change sequence counter, seeded from TIME when
--                     missing; TTL: key idle time, refreshed by every change
-- KEYS[7] tabs      - zset: conn -> presence expiry (Redis time, ms); TTL: twice the presence TTL
-- KEYS[8] info      - hash: conn -> tab info JSON [user, name, tab, active, meta, server]; same TTL
-- KEYS[9] locks     - set: the named locks that have a lease, holder record, queue or request (a
--                     lock leaves it when it has none of them); TTL: key idle time, refreshed when
--                     one is added, by touch and by renewals now and then
-- KEYS[10] lock_base - the prefix of the named locks' keys, <prefix>:{ws}:lock: (no key itself)
-- ARGV[1] channel      - the workspace's pub/sub channel
-- ARGV[2] publish      - the publish command: 'PUBLISH', or 'SPUBLISH' on Cluster
-- ARGV[3] lease_ttl_ms - the TTL of a grant or renewal the script makes
-- ARGV[4] scope        - the lease scope: 'user' or 'tab'
-- ARGV[5] key_idle_ms  - the key idle time
-- ARGV[6] lock         - the lock the first five keys belong to: '' for the workspace's own lease,
--                        else its id (1-64 of [A-Za-z0-9._:-])
-- So no key outlives the workspace's last use by more than the key idle time
-- (PRESENCE_KEY_IDLE_DAYS): that is safe for the counters because of the fence rule (_lib.lua).
--
-- The functions (`ws` a workspace table):
--   workspace(keys, argv)   the table of a single-workspace script, no events yet
--   lock_of(ws, name)       the table of another named lock of ws's workspace (events shared)
--   lock_names(ws)          the named locks in the locks set, sorted
--   note(ws), tidy(ws)      add ws's named lock to the locks set; drop it once it has no keys
-- ttl is the lease TTL as a number (for replies and events), px the same as the script got it,
-- for Redis: a number passed to redis.call is formatted again on every call, a string is not. idle
-- (the key idle time) is only ever passed to Redis.
local function workspace(keys, argv)
  return {lease = keys[1], holder = keys[2], fence = keys[3], queue = keys[4], request = keys[5],
          seq = keys[6], tabs = keys[7], info = keys[8], locks = keys[9], lock_base = keys[10],
          channel = argv[1], pubcmd = argv[2], ttl = tonumber(argv[3]), px = argv[3], scope = argv[4],
          idle = argv[5], lock = argv[6], events = {}}
end

-- The key names of a named lock: keys.py's LockKeys writes the same ones.
local function lock_of(ws, name)
  local l = {}
  for k, v in pairs(ws) do l[k] = v end  -- ws.events too: one list of events per script
  local base = ws.lock_base .. name .. ':'
  l.lease, l.holder, l.fence = base .. 'lease', base .. 'holder', base .. 'fence'
  l.queue, l.request, l.lock = base .. 'queue', base .. 'request', name
  return l
end

-- Sorted: a script's events come out in the same order whichever way Redis stores the set.
local function lock_names(ws)
  local names = redis.call('SMEMBERS', ws.locks)
  table.sort(names)
  return names
end

local function note(ws)
  if ws.lock ~= '' then
    redis.call('SADD', ws.locks, ws.lock)
    redis.call('PEXPIRE', ws.locks, ws.idle)
  end
end

-- A lock whose keys are all gone (ended, or expired after the key idle time) leaves the set.
local function tidy(ws)
  if ws.lock ~= '' and redis.call('EXISTS', ws.lease, ws.holder, ws.queue, ws.request) == 0 then
    redis.call('SREM', ws.locks, ws.lock)
  end
end
