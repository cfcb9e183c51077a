-- kx.sched.redis: the scheduler over Redis, for more than one machine.
--
-- Every state change is one server-side script, so it is atomic: submit
-- (idempotent by task id), dispatch (head check, capacity reservation, move
-- to the node's queue, counters; a batch per call), register, finish
-- (idempotent) and reap.  Workers take tasks with BLMOVE into a per-node
-- in-flight list and keep a heartbeat key with a TTL; the central returns
-- the in-flight tasks and capacity of a node whose heartbeat expired.  The
-- central wakes on a list it blocks on (BLPOP), not on a timer.  A lost
-- connection is re-established and the call repeated.
--
-- Keys (prefix kx:sched:): pending (list), task:<id> (submitted marker),
-- nodes (set), node:<id> (hash: capacity parallel running used),
-- alive:<id> (TTL), q:<id>, inflight:<id> (lists), fin:<client> (records),
-- dead (dead letters), blocking, wake.
local redis = require "kx.redis"
local json = kx.json

local R = {}
R.__index = R

local PREFIX = "kx:sched:"

-- Redis scripts run Redis's Lua 5.1 with cjson.
local REQUEUE = [[
local function requeue(p, list, bump, max, now)
  local items = redis.call('LRANGE', list, 0, -1)
  for i = #items, 1, -1 do
    local ok, t = pcall(cjson.decode, items[i])
    if ok and type(t) == 'table' then
      if bump then t.attempts = (tonumber(t.attempts) or 0) + 1 end
      if bump and t.attempts >= max then
        t.error = 'failed after ' .. t.attempts .. ' attempts (its worker died)'
        t.exit_code = -1
        t.ts_end = now
        redis.call('RPUSH', p .. 'fin:' .. tostring(t.client), cjson.encode(t))
      else
        redis.call('LPUSH', p .. 'pending', cjson.encode(t))
      end
    end
  end
  redis.call('DEL', list)
  return #items
end
]]

local SUBMIT = [[
local p = ARGV[1]
if redis.call('SET', p .. 'task:' .. ARGV[2], '1', 'NX', 'EX', 604800) then
  redis.call('RPUSH', p .. 'pending', ARGV[3])
  redis.call('LPUSH', p .. 'wake', '1')
  redis.call('LTRIM', p .. 'wake', 0, 0)
  return 1
end
return 0
]]

local DISPATCH = [[
local p, weigher, order, max, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local ids = redis.call('SMEMBERS', p .. 'nodes')
table.sort(ids)
local st = {}
for i, id in ipairs(ids) do
  local h = redis.call('HMGET', p .. 'node:' .. id, 'capacity', 'parallel', 'running', 'used')
  st[i] = { id = id, cap = tonumber(h[1]) or 0, par = tonumber(h[2]) or 0,
    run = tonumber(h[3]) or 0, used = tonumber(h[4]) or 0,
    alive = redis.call('EXISTS', p .. 'alive:' .. id) == 1 }
end
local n = 0
while n < max do
  local head = redis.call('LINDEX', p .. 'pending', 0)
  if not head then redis.call('DEL', p .. 'blocking') return n end
  local ok, t = pcall(cjson.decode, head)
  if not ok or type(t) ~= 'table' or not tonumber(t.cpu_units) or type(t.argv) ~= 'table' then
    redis.call('LPOP', p .. 'pending')
    redis.call('RPUSH', p .. 'dead', cjson.encode({ reason = 'malformed task JSON', raw = head }))
  else
    local units = tonumber(t.cpu_units)
    local best
    for i, s in ipairs(st) do
      if s.alive and (s.par <= 0 or s.run < s.par) and s.cap - s.used >= units then
        if not best then best = i
        elseif weigher == 'instances' or weigher == 'vcpu' then
          local a = weigher == 'instances' and s.run or s.used
          local b = weigher == 'instances' and st[best].run or st[best].used
          if (order == 'max' and a > b) or (order ~= 'max' and a < b) then best = i end
        end
      end
    end
    if not best then
      local ever = false
      for _, s in ipairs(st) do if s.alive and s.cap >= units then ever = true end end
      redis.call('SET', p .. 'blocking', cjson.encode({ id = t.id, cpu_units = units,
        reason = ever and 'waiting for capacity' or "larger than every node's capacity" }))
      return n
    end
    local s = st[best]
    s.run, s.used = s.run + 1, s.used + units
    redis.call('HINCRBY', p .. 'node:' .. s.id, 'running', 1)
    redis.call('HINCRBY', p .. 'node:' .. s.id, 'used', units)
    redis.call('LPOP', p .. 'pending')
    t.node, t.ts_dispatch = s.id, now
    redis.call('RPUSH', p .. 'q:' .. s.id, cjson.encode(t))
    n = n + 1
  end
end
return n
]]

local REGISTER = REQUEUE .. [[
local p, id, cap, par, lease, clear, max, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
-- an earlier worker of this node is gone: what it held goes back
requeue(p, p .. 'inflight:' .. id, true, max, now)
if clear == '1' then redis.call('DEL', p .. 'q:' .. id) else requeue(p, p .. 'q:' .. id, false, max, now) end
redis.call('HSET', p .. 'node:' .. id, 'capacity', cap, 'parallel', par, 'running', 0, 'used', 0)
redis.call('SADD', p .. 'nodes', id)
redis.call('SET', p .. 'alive:' .. id, '1', 'PX', lease)
redis.call('LPUSH', p .. 'wake', '1')
redis.call('LTRIM', p .. 'wake', 0, 0)
return 1
]]

local FINISH = [[
local p, id, task, rec, units, client = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
if redis.call('LREM', p .. 'inflight:' .. id, 1, task) == 1 then
  redis.call('HINCRBY', p .. 'node:' .. id, 'running', -1)
  redis.call('HINCRBY', p .. 'node:' .. id, 'used', -units)
  redis.call('RPUSH', p .. 'fin:' .. client, rec)
  redis.call('LPUSH', p .. 'wake', '1')
  redis.call('LTRIM', p .. 'wake', 0, 0)
  return 1
end
return 0
]]

local REAP = REQUEUE .. [[
local p, max, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local reaped = 0
for _, id in ipairs(redis.call('SMEMBERS', p .. 'nodes')) do
  if redis.call('EXISTS', p .. 'alive:' .. id) == 0 then
    reaped = reaped + requeue(p, p .. 'inflight:' .. id, true, max, now)
    reaped = reaped + requeue(p, p .. 'q:' .. id, false, max, now)
    redis.call('SREM', p .. 'nodes', id)
    redis.call('DEL', p .. 'node:' .. id)
  end
end
if reaped > 0 then redis.call('LPUSH', p .. 'wake', '1') redis.call('LTRIM', p .. 'wake', 0, 0) end
return reaped
]]

local LEAVE = REQUEUE .. [[
local p, id, max, now = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
requeue(p, p .. 'q:' .. id, false, max, now)
redis.call('SREM', p .. 'nodes', id)
redis.call('DEL', p .. 'node:' .. id, p .. 'alive:' .. id)
redis.call('LPUSH', p .. 'wake', '1')
redis.call('LTRIM', p .. 'wake', 0, 0)
return 1
]]

-- redis://[:password@]host[:port][/db]
local function parse_url(url)
	local rest = url:gsub("^rediss?://", "")
	local auth, hostpart = rest:match("^(.*)@(.*)$")
	if not auth then hostpart = rest end
	local user, password
	if auth then
		user, password = auth:match("^(.-):(.*)$")
		if not user then password = auth end
		if user == "" then user = nil end
	end
	local host, port, db = hostpart:match("^([^:/]*):?(%d*)/?(%d*)$")
	if not host then return nil end
	return { host = host ~= "" and host or "127.0.0.1", port = tonumber(port) or 6379,
		db = tonumber(db) or 0, user = user, password = password }
end

-- A connection that comes back by itself.  `retry` seconds of trying before
-- a call gives up; a wrong password fails at once.
local Conn = {}
Conn.__index = Conn

local function open(cfg)
	local c, err = redis.connect{ host = cfg.host, port = cfg.port, timeout = 5 }
	if not c then return nil, ("redis %s:%d: %s"):format(cfg.host, cfg.port, err) end
	if cfg.password then
		local ok, aerr
		if cfg.user then ok, aerr = c:call("AUTH", cfg.user, cfg.password)
		else ok, aerr = c:call("AUTH", cfg.password) end
		if not ok then c:close() return nil, ("redis %s:%d: %s"):format(cfg.host, cfg.port, aerr), true end
	end
	if cfg.db ~= 0 then
		local ok, serr = c:call("SELECT", cfg.db)
		if not ok then c:close() return nil, ("redis: SELECT %d: %s"):format(cfg.db, serr), true end
	end
	return c
end

function Conn:call(...)
	local deadline = kx.now() + self.cfg.retry
	local delay = 0.05
	while true do
		if not self.c or not self.c:connected() then
			local c, err, fatal = open(self.cfg)
			if c then
				self.c = c
			elseif fatal or kx.now() > deadline then
				return nil, err
			else
				kx.sleep(delay)
				delay = math.min(delay * 2, 1)
			end
		end
		if self.c then
			local r, err = self.c:call(...)
			if r ~= nil or not tostring(err):match("^connection lost") then return r, err end
			self.c = nil
			if kx.now() > deadline then return nil, err end
		end
	end
end

function Conn:close()
	if self.c then self.c:close() self.c = nil end
end

function R.connect(url)
	local cfg = parse_url(url)
	if not cfg then return nil, ("cannot read the Redis URL '%s'"):format(url) end
	cfg.retry = 30
	local first, err = open(cfg)
	if not first then return nil, err end
	local self = setmetatable({
		cfg = cfg, conn = setmetatable({ cfg = cfg, c = first }, Conn),
		conns = {}, client = ("%s-%d"):format(io.open("/proc/sys/kernel/hostname"):read("l"),
			tonumber(io.open("/proc/self/stat"):read("a"):match("^%d+"))),
		submitted = 0, seq = 0, records = {}, closing = false, max_attempts = 3,
	}, R)
	self.conns[1] = self.conn
	return self
end

-- A connection of its own for a blocking command.
function R:blocking_conn()
	local c = setmetatable({ cfg = self.cfg }, Conn)
	self.conns[#self.conns + 1] = c
	return c
end

local function must(r, err, what)
	if r == nil then error(("kx.sched: %s: %s"):format(what, tostring(err)), 0) end
	return r
end

local function now_ms() return math.floor(kx.time() * 1000) end

function R:push(task)
	self.seq = self.seq + 1
	task.id = task.id or ("%s-%d"):format(self.client, self.seq)
	task.client = self.client
	must(self.conn:call("EVAL", SUBMIT, 0, PREFIX, task.id, json.encode(task)), nil, "submit")
	self.submitted = self.submitted + 1
	return task.id
end

function R:central(weigher, order, opts)
	opts = opts or {}
	local heartbeat = opts.heartbeat or 1
	local block = self:blocking_conn()
	local last_reap = 0
	local batch = 1000
	while not self.closing do
		local placed = must(self.conn:call("EVAL", DISPATCH, 0, PREFIX, weigher or "", order or "min", batch, now_ms()))
		if kx.now() - last_reap >= heartbeat then
			last_reap = kx.now()
			local n = must(self.conn:call("EVAL", REAP, 0, PREFIX, self.max_attempts, now_ms()))
			if n > 0 then kx.log.warn("kx.sched: returned %d task(s) of workers whose heartbeat expired", n) end
		end
		-- a full batch may have more behind it; otherwise sleep until told
		if placed < batch then block:call("BLPOP", PREFIX .. "wake", heartbeat) end
	end
end

-- run(task) -> record, for each task this node takes; until close.
function R:work(node, run)
	local lease_ms = math.floor((node.lease or 5) * 1000)
	local heartbeat = node.heartbeat or 1
	must(self.conn:call("EVAL", REGISTER, 0, PREFIX, node.id, node.capacity, node.parallel, lease_ms,
		node.clear_queue and "1" or "0", self.max_attempts, now_ms()), nil, "register")
	local beat = kx.every(heartbeat, function()
		self.conn:call("SET", PREFIX .. "alive:" .. node.id, "1", "PX", lease_ms)
	end)
	local block = self:blocking_conn()
	local running, started = {}, {}
	local function start(raw)
		if started[raw] then return end
		started[raw] = true
		local ok, task = pcall(json.decode, raw)
		if not ok or type(task) ~= "table" then
			self.conn:call("LREM", PREFIX .. "inflight:" .. node.id, 1, raw)
			self.conn:call("RPUSH", PREFIX .. "dead", json.encode{ reason = "malformed task JSON", raw = raw })
			return
		end
		running[raw] = kx.go(function()
			local rec = run(task)
			for k, v in pairs(task) do if rec[k] == nil then rec[k] = v end end
			rec.node = node.id
			self.conn:call("EVAL", FINISH, 0, PREFIX, node.id, raw, json.encode(rec), task.cpu_units, task.client)
			running[raw], started[raw] = nil, nil
		end)
	end
	while not self.closing do
		local raw, err = block:call("BLMOVE", PREFIX .. "q:" .. node.id, PREFIX .. "inflight:" .. node.id,
			"LEFT", "RIGHT", 1)
		if raw then
			start(raw)
		elseif raw == nil then
			kx.log.warn("kx.sched: worker %s: %s; reconnecting", node.id, tostring(err))
			kx.sleep(0.2)
			-- a reply lost with the connection: the task is in flight, ours
			local mine = self.conn:call("LRANGE", PREFIX .. "inflight:" .. node.id, 0, -1)
			for _, r in ipairs(mine or {}) do start(r) end
		end
	end
	for _, t in pairs(running) do t:wait() end
	beat:stop()
	self.conn:call("EVAL", LEAVE, 0, PREFIX, node.id, self.max_attempts, now_ms())
end

function R:drain()
	local block = self:blocking_conn()
	while #self.records < self.submitted do
		local r = block:call("BLPOP", PREFIX .. "fin:" .. self.client, 1)
		if r then self.records[#self.records + 1] = json.decode(r[2]) end
	end
	table.sort(self.records, function(a, b) return (a.ts_enqueue or 0) < (b.ts_enqueue or 0) end)
	return self.records
end

function R:status()
	local c = self.conn
	local st = { backend = "redis", pending = c:call("LLEN", PREFIX .. "pending"), nodes = {},
		dead = c:call("LLEN", PREFIX .. "dead") }
	local b = c:call("GET", PREFIX .. "blocking")
	st.blocking = b and json.decode(b) or nil
	local ids = c:call("SMEMBERS", PREFIX .. "nodes") or {}
	table.sort(ids)
	for i, id in ipairs(ids) do
		local h = c:call("HMGET", PREFIX .. "node:" .. id, "capacity", "parallel", "running", "used") or {}
		st.nodes[i] = { id = id, capacity = tonumber(h[1]), parallel = tonumber(h[2]),
			running = tonumber(h[3]), used = tonumber(h[4]),
			alive = c:call("EXISTS", PREFIX .. "alive:" .. id) == 1,
			queued = c:call("LLEN", PREFIX .. "q:" .. id), in_flight = c:call("LLEN", PREFIX .. "inflight:" .. id) }
	end
	return st
end

-- Empties the queues of an earlier run (kxrun sched ... --clear-queue).
function R:clear()
	local keys = self.conn:call("EVAL", "return redis.call('KEYS', ARGV[1] .. '*')", 0, PREFIX) or {}
	for _, k in ipairs(keys) do self.conn:call("DEL", k) end
	return #keys
end

function R:close()
	self.closing = true
end

function R:release()
	for _, c in ipairs(self.conns) do c:close() end
end

R.parse_url = parse_url
return R
