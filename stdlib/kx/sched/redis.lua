-- kx.sched.redis: the scheduler on Redis, for more than one machine.  Every
-- decision is one server-side script (kx.sched.scripts); the central, the
-- workers and drain wait in blocking pops on connections of their own, never
-- on a timer; a lost connection is re-opened and the call retried (each
-- script is safe to repeat).
local client = require "kx.sched.redis.client"
local scripts = require "kx.sched.scripts"

local R = {}
R.__index = R

-- redis://[:password@]host[:port][/db][?prefix=name]
local function parse_url(url)
	local rest = url:match("^rediss?://(.*)$")
	local o = { port = 6379, db = 0, prefix = "kx:sched:" }
	local auth, hostpart = rest:match("^(.*)@([^@]*)$")
	if not auth then hostpart = rest end
	if auth then
		local user, pw = auth:match("^([^:]*):(.*)$")
		if user then o.user, o.password = user ~= "" and user or nil, pw else o.password = auth end
	end
	local q = hostpart:match("%?(.*)$")
	hostpart = hostpart:gsub("%?.*$", "")
	local hp, db = hostpart:match("^([^/]*)/?(%d*)$")
	if not hp then return nil, "cannot read " .. url end
	o.db = tonumber(db) or 0
	local host, port = hp:match("^%[(.*)%]:?(%d*)$")
	if not host then host, port = hp:match("^([^:]*):?(%d*)$") end
	o.host = host ~= "" and host or "127.0.0.1"
	if host == "localhost" then o.host = "127.0.0.1" end
	o.port = tonumber(port) or 6379
	for k, v in (q or ""):gmatch("([^&=]+)=([^&]*)") do
		if k == "prefix" then o.prefix = v .. ":" end
	end
	return o
end

local function is_ip(h)
	return h:match("^%d+%.%d+%.%d+%.%d+$") or h:find(":")
end

-- A connection ready for commands (authenticated, db selected, scripts
-- loaded), or nil, message.
local function open(o)
	local where = ("redis at %s:%d"):format(o.host, o.port)
	if is_ip(o.host) then
		local ok, err = client.probe(o.host, o.port, 5)
		if not ok then return nil, where .. ": " .. err end
	end
	local c = client.new()
	local ok, err = c:open(o.host, o.port, 5)
	if not ok then return nil, where .. ": " .. err end
	local function step(...)
		local r, e = c:timed(10, ...)
		if r == nil then c:close(); error(where .. ": " .. e, 0) end
		return r
	end
	local good, why = pcall(function()
		if o.password then
			if o.user then step("AUTH", o.user, o.password) else step("AUTH", o.password) end
		end
		if o.db ~= 0 then step("SELECT", o.db) end
		local sha = {}
		for name, src in pairs(scripts) do sha[name] = step("SCRIPT", "LOAD", src) end
		o.sha = sha
	end)
	if not good then return nil, why end
	return c
end

-- Whether a failure is the connection's (re-open and retry) rather than
-- the server refusing the command.
local function transient(err)
	return err:match("^connection") or err == "closed" or err == "timeout" or err:match("not connected")
		or err:match("^LOADING") or err:match("^NOSCRIPT")
end

function R.connect(url)
	local o, err = parse_url(url)
	if not o then return nil, err end
	local c, cerr = open(o)
	if not c then return nil, cerr end
	local self = setmetatable({ o = o, conn = c, P = o.prefix, closing = false, conns = {},
		client = ("%d-%d"):format(math.floor(kx.time() * 1000), math.random(1, 1 << 30)),
		seq = 0, outstanding = {}, running = {}, submitted = {}, workers = 0,
		reconnect_for = 120, max_attempts = 3, grace = 10 }, R)
	return self
end

-- Runs fn(conn) on the connection in slot `name` (one per blocking waiter),
-- re-opening it while the server is away (up to reconnect_for seconds).
function R:with(name, fn)
	local deadline
	local delay = 0.05
	while true do
		local c = self.conns[name] or (name == "main" and self.conn)
		local r, err
		if c and c:connected() then
			r, err = fn(c)
			if r ~= nil or not transient(err) then return r, err end
		else
			err = "not connected"
		end
		if self.closing and (name ~= "main" or self.workers == 0) then return nil, "closed" end
		if c then c:close() end
		self.conns[name] = nil
		if name == "main" then self.conn = nil end
		deadline = deadline or kx.now() + self.reconnect_for
		if kx.now() > deadline then return nil, err end
		kx.sleep(delay)
		delay = math.min(delay * 2, 1)
		local nc, oerr = open(self.o)
		if nc then
			if self.closing and (name ~= "main" or self.workers == 0) then nc:close(); return nil, "closed" end
			if name == "main" then self.conn = nc else self.conns[name] = nc end
			if c then
				kx.log.info("kx.sched: redis connection '%s' re-opened", name)
				self.reopened = kx.now()
			end
		else
			err = oerr
		end
	end
end

function R:eval(name, ...)
	local args = { ... }
	return self:with("main", function(c)
		return c:timed(30, "EVALSHA", self.o.sha[name], 0, self.P, table.unpack(args))
	end)
end

local function must(r, err, what)
	if r == nil then error(("kx.sched: %s: %s"):format(what, err), 0) end
	return r
end

function R:push(task)
	self.seq = self.seq + 1
	task.id = task.id or ("%s-%d"):format(self.client, self.seq)
	task.client = self.client
	must(self:eval("submit", task.id, kx.json.encode(task)), nil, "submit")
	self.outstanding[task.id] = true
	self.submitted[#self.submitted + 1] = task.id
	return task.id
end

-- The central: dispatch while the head can be placed, then wait for
-- something to change (a submit, a finish, a node) in BLPOP on `wake`; the
-- pop's timeout (one heartbeat) runs the reaper.
function R:central(weigher, order, o)
	local P = self.P
	local period = o and o.heartbeat or self.heartbeat or 1
	if o and o.max_attempts then self.max_attempts = o.max_attempts end
	local last_reap = 0
	while not self.closing do
		-- after a Redis restart the heartbeats may have expired while it was
		-- down: give the workers a lease's time to beat before reaping.  The
		-- reaper never re-opens the connection itself, so the check holds.
		if kx.now() - last_reap >= period then
			last_reap = kx.now()
			local c = self.conn
			if c and c:connected() and kx.now() - (self.reopened or -math.huge) > self.grace then
				local n = c:timed(30, "EVALSHA", self.o.sha.reap, 0, P, self.max_attempts)
				if n and n > 0 then kx.log.warn("kx.sched: %d task(s) of lost nodes given back", n) end
			end
		end
		local r, err = self:eval("dispatch", weigher or "", order or "min", 64)
		if r == nil then
			if self.closing then break end
			error("kx.sched: central: " .. err, 0)
		end
		if r[1] == "wait" or r[1] == "empty" then
			self:with("central", function(c)
				return c:timed(period + 10, "BLPOP", P .. "wake", period)
			end)
		end
	end
end

-- A worker's node: register, heartbeat, take tasks (BLMOVE into the node's
-- in-flight list) and run each in a task of its own; finish gives the
-- capacity back in the same script that records the result.
function R:work(node, run)
	local P, id = self.P, node.id
	local lease = math.floor((node.lease or 6) * 1000)
	local beat = node.heartbeat or lease / 3000
	self.heartbeat = self.heartbeat or beat
	local function register()
		return must(self:eval("register", id, node.capacity, node.parallel, lease,
			node.reset_capacity and 1 or 0, node.clear_queue and 1 or 0, self.max_attempts),
			nil, "register node " .. id)
	end
	local back = register()
	if back > 0 then kx.log.warn("kx.sched: node %s: %d task(s) of an earlier worker given back", id, back) end
	local slot = "worker:" .. id
	self.workers = self.workers + 1
	self.running[id] = {}
	local running = self.running[id]
	local timer = kx.every(beat, function()
		if self.closing then return end
		local ok = self:eval("heartbeat", id, lease)
		if ok == 0 then
			kx.log.warn("kx.sched: node %s was reaped (heartbeat lost): registering again", id)
			register()
		end
	end)
	while not self.closing do
		local raw = self:with(slot, function(c)
			return c:timed(beat + 10, "BLMOVE", P .. "q:" .. id, P .. "inflight:" .. id, "LEFT", "RIGHT", beat)
		end)
		if raw then
			local task = kx.json.decode(raw)
			local t = kx.go(function()
				local rec = run(task)
				for k, v in pairs(task) do if rec[k] == nil then rec[k] = v end end
				local ok, err = self:eval("finish", id, raw, tostring(task.id), task.client or "",
					task.cpu_units, kx.json.encode(rec))
				if ok == 0 then
					kx.log.warn("kx.sched: node %s: task %s had been given back; its result is dropped", id, task.id)
				elseif not ok then
					kx.log.error("kx.sched: node %s: cannot record task %s: %s", id, task.id, err)
				end
			end)
			running[t] = true
			kx.go(function() t:wait(); running[t] = nil end)
		end
	end
	for t in pairs(running) do t:wait() end
	timer:stop()
	-- leaving: what is still queued for the node goes back to pending
	self:eval("reap", self.max_attempts, id)
	self.workers = self.workers - 1
	self:release()
end

-- Waits until every task this client submitted has a record.
function R:drain()
	local P = self.P
	local function check_all()
		local ids = {}
		for tid in pairs(self.outstanding) do ids[#ids + 1] = tid end
		if #ids == 0 then return end
		for i = 1, #ids, 200 do
			local chunk = { table.unpack(ids, i, math.min(i + 199, #ids)) }
			local got = must(self:with("main", function(c)
				return c:timed(30, "HMGET", P .. "done", table.unpack(chunk))
			end), nil, "drain")
			for j, v in ipairs(got) do
				if v then self.outstanding[chunk[j]] = nil end
			end
		end
	end
	check_all()
	while next(self.outstanding) do
		local r = self:with("drain", function(c)
			return c:timed(15, "BLPOP", P .. "fin:" .. self.client, 2)
		end)
		if r then self.outstanding[r[2]] = nil else check_all() end
	end
	local recs = {}
	local ids = self.submitted
	for i = 1, #ids, 200 do
		local chunk = { table.unpack(ids, i, math.min(i + 199, #ids)) }
		local got = must(self:with("main", function(c)
			return c:timed(30, "HMGET", P .. "done", table.unpack(chunk))
		end), nil, "drain")
		for _, v in ipairs(got) do recs[#recs + 1] = kx.json.decode(v) end
	end
	return recs
end

function R:status()
	local r = must(self:eval("status"), nil, "status")
	local st = kx.json.decode(r)
	st.backend = "redis"
	if st.blocking == false then st.blocking = nil end
	local running = 0
	for _, n in ipairs(st.nodes or {}) do
		running = running + #(n.taken or {})
		local ids = {}
		for i, raw in ipairs(n.taken or {}) do
			local ok, t = pcall(kx.json.decode, raw)
			ids[i] = ok and type(t) == "table" and t.id or "?"
		end
		n.taken = ids
		n.in_flight = #ids
	end
	st.running = running
	return st
end

-- Drops the state of earlier runs under this prefix (kxrun sched clear):
-- the fixed keys, every node's keys (from the node set, no KEYS) and the
-- clients' finish lists (SCAN, a few keys per step).  Returns keys removed.
function R:clear()
	local P = self.P
	local function call(...)
		local args = { ... }
		return must(self:with("main", function(c) return c:timed(30, table.unpack(args)) end), nil, "clear")
	end
	local keys = { "pending", "known", "nodes", "done", "dead", "blocking", "wake" }
	for i, k in ipairs(keys) do keys[i] = P .. k end
	for _, id in ipairs(call("SMEMBERS", P .. "nodes")) do
		for _, k in ipairs{ "node:", "alive:", "q:", "inflight:" } do keys[#keys + 1] = P .. k .. id end
	end
	local cursor = "0"
	repeat
		local r = call("SCAN", cursor, "MATCH", P .. "fin:*", "COUNT", 100)
		cursor = r[1]
		for _, k in ipairs(r[2]) do keys[#keys + 1] = k end
	until cursor == "0"
	local n = 0
	for i = 1, #keys, 100 do n = n + call("DEL", table.unpack(keys, i, math.min(i + 99, #keys))) end
	return n
end

-- The main connection stays until this process's workers have recorded
-- their last tasks.
function R:release()
	if self.closing and self.workers == 0 and self.conn then
		self.conn:close()
		self.conn = nil
	end
end

function R:close()
	self.closing = true
	for _, c in pairs(self.conns) do c:close() end
	self.release(self)
end

return R
