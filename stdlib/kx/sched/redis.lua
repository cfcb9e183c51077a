-- kx.sched.redis: the scheduler on Redis, for more than one machine.  Every
-- decision is one server-side script (kx.sched.scripts); the central, the
-- workers and drain wait in blocking pops on connections of their own, never
-- on a timer; a lost connection is re-opened and the call retried (each
-- script is safe to repeat).
local client = require "kx.sched.redis.client"
local scripts = require "kx.sched.scripts"

local R = {}
R.__index = R

-- redis://[[user]:password@]host[:port][/db][?password=pw&prefix=name&db=n]
-- (Tracekit's URLs carry the password as ?password=).  nil, why when the
-- URL cannot be read.
function R.parse_url(url)
	local rest = url:match("^rediss?://(.*)$")
	if not rest then return nil, "not a redis:// URL: " .. url end
	local o = { port = 6379, db = 0, prefix = "kx:sched:" }
	local q = rest:match("%?(.*)$")
	rest = rest:gsub("%?.*$", "")
	local auth, hostpart = rest:match("^(.*)@([^@]*)$")
	if not auth then hostpart = rest end
	if auth then
		local user, pw = auth:match("^([^:]*):(.*)$")
		if user then o.user, o.password = user ~= "" and user or nil, pw else o.password = auth end
	end
	local hp, db = hostpart:match("^([^/]*)/?([^/]*)$")
	if not hp then return nil, "cannot read " .. url end
	if db ~= "" and not db:match("^%d+$") then return nil, ("bad database '%s' in %s"):format(db, url) end
	o.db = tonumber(db) or 0
	local host, port = hp:match("^%[(.*)%]:?(.*)$")
	if not host then host, port = hp:match("^([^:]*):?(.*)$") end
	if port ~= "" then
		local n = port:match("^%d+$") and tonumber(port)
		if not n or n < 1 or n > 65535 then return nil, ("bad port '%s' in %s"):format(port, url) end
		o.port = n
	end
	o.host = host ~= "" and host or "127.0.0.1"
	if host == "localhost" then o.host = "127.0.0.1" end
	for k, v in (q or ""):gmatch("([^&=]+)=([^&]*)") do
		if k == "prefix" then
			o.prefix = v:sub(-1) == ":" and v or v .. ":"
		elseif k == "password" then
			o.password = v
		elseif k == "db" then
			if not v:match("^%d+$") then return nil, ("bad database '%s' in %s"):format(v, url) end
			o.db = tonumber(v)
		elseif k == "username" or k == "user" then
			o.user = v
		end
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
	local o, err = R.parse_url(url)
	if not o then return nil, err end
	local c, cerr = open(o)
	if not c then return nil, cerr end
	local self = setmetatable({ o = o, conn = c, P = o.prefix, closing = false, conns = {},
		client = ("%d-%d"):format(math.floor(kx.time() * 1000), math.random(1, 1 << 30)),
		seq = 0, outstanding = {}, submitted = {}, workers = 0, centrals = 0, recording = 0, generation = 0,
		reconnect_for = 120, max_attempts = 3, grace = 10, warn_every = 10 }, R)
	return self
end

-- Runs fn(conn) on the connection in slot `name` (one per blocking waiter),
-- re-opening it while the server is away (up to reconnect_for seconds),
-- with a warning when it first goes and every warn_every seconds after.
-- Once the client is closed only a result being recorded waits for the
-- server to come back; anything else (a leaving worker's reap, a
-- heartbeat) is tried on the connection there is, once.
function R:with(name, fn)
	local deadline, lost, why
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
		if os.getenv("DBG") then kx.log.warn("with %s closing=%s err=%s rec=%d %s", name, tostring(self.closing), tostring(err), self.recording, debug.traceback()) end
		if self.closing and (name ~= "main" or self.recording == 0) then return nil, "closed" end
		if c then c:close(); lost = true end
		self.conns[name] = nil
		if name == "main" then self.conn = nil end
		deadline = deadline or kx.now() + self.reconnect_for
		if kx.now() > deadline then return nil, why or err end
		kx.sleep(delay)
		delay = math.min(delay * 2, 1)
		local nc, oerr = open(self.o)
		if nc then
			if self.closing and (name ~= "main" or self.recording == 0) then nc:close(); return nil, "closed" end
			if name == "main" then self.conn = nc else self.conns[name] = nc end
			if lost then
				self.generation = self.generation + 1
				self.reopened = kx.now()
				if self.down_since then
					kx.log.warn("kx.sched: redis at %s:%d is back after %.1f s", self.o.host, self.o.port,
						kx.now() - self.down_since)
					self.down_since, self.warned = nil, nil
				end
			end
		else
			why = oerr
			-- one warning per process when it goes, then every warn_every s
			local now = kx.now()
			self.down_since = self.down_since or now
			if not self.warned or now - self.warned >= self.warn_every then
				self.warned = now
				kx.log.warn("kx.sched: %s (unreachable for %.0f s; retrying)", oerr, now - self.down_since)
			end
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

-- The script's reply, or an error naming `what` and why.
function R:must_eval(what, name, ...)
	local r, err = self:eval(name, ...)
	return must(r, err, what)
end

-- A plain command's reply (on the main connection), or an error.
function R:must_call(what, ...)
	local args = { ... }
	local r, err = self:with("main", function(c) return c:timed(30, table.unpack(args)) end)
	return must(r, err, what)
end

-- Task JSON for a task table (a task is flat: argv, numbers, strings).
local function encode(task)
	local ok, js = pcall(kx.json.encode, task)
	if not ok then error(("kx.sched: task %s cannot be encoded: %s"):format(tostring(task.id), js), 0) end
	return js
end

function R:push(task, node)
	self.seq = self.seq + 1
	task.id = task.id or ("%s-%d"):format(self.client, self.seq)
	task.client = self.client
	if node then
		-- Tracekit's per-node queues: placed at once, no central involved
		task.node, task.ts_dispatch = node, task.ts_enqueue
		self:must_eval("submit to node " .. node, "place", node, task.id, encode(task), task.cpu_units)
	else
		self:must_eval("submit", "submit", task.id, encode(task))
	end
	self.outstanding[task.id] = true
	self.submitted[#self.submitted + 1] = task.id
	return task.id
end

-- Tasks queued in the pending list (for --pending-max).
function R:pending_length()
	return self:must_call("pending", "LLEN", self.P .. "pending")
end

-- Tasks queued for a node, not yet taken (Tracekit's backlog, LLEN q:<node>).
function R:backlog(node)
	return self:must_call("backlog", "LLEN", self.P .. "q:" .. node)
end

-- The central: dispatch while the head can be placed, then wait for
-- something to change (a submit, a finish, a node) in BLPOP on `wake`; the
-- pop's timeout (one heartbeat) runs the reaper.  o.log(line) gets one
-- line per decision when given.
function R:central(weigher, order, o)
	self.centrals = self.centrals + 1
	local ok, err = pcall(self.dispatch_loop, self, weigher, order, o)
	-- submit places nothing more in this central's name
	local c = self.conn
	if c and c:connected() then c:timed(5, "DEL", self.P .. "central") end
	self.centrals = self.centrals - 1
	self:release()
	if not ok then error(err, 0) end
end

function R:dispatch_loop(weigher, order, o)
	local P = self.P
	local period = o and o.heartbeat or self.heartbeat or 1
	if o and o.max_attempts then self.max_attempts = o.max_attempts end
	local log = o and o.log
	local last_reap, last_blocking = 0, nil
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
		-- (the policy published for submit lasts three periods: a central that
		-- stopped answering stops deciding for submit soon after)
		local r, err = self:eval("dispatch", weigher or "", order or "min", 64, log and 1 or 0,
			math.floor(math.max(3, 3 * period) * 1000))
		if r == nil then
			if self.closing then break end
			error("kx.sched: central: " .. err, 0)
		end
		if log then
			for _, line in ipairs(r[5] or {}) do log(kx.json.decode(line)) end
			if r[1] == "dead" then log{ dead = r[2] } end
		end
		-- a head larger than every live node (none up yet is not that)
		if r[1] == "wait" and log and r[2] ~= last_blocking and r[3] == 0 and (r[6] or 0) > 0 then
			log{ blocked = r[2], units = r[7], largest = r[6] }
		end
		last_blocking = r[1] == "wait" and r[2] or nil
		if r[1] == "wait" or r[1] == "empty" then
			self:with("central", function(c)
				return c:timed(period + 10, "BLPOP", P .. "wake", period)
			end)
		end
	end
end

-- The launcher of a worker of node `id`: it holds the node's lock on this
-- machine, so a worker started again waits until the launcher (or the
-- recorder) of the one that died has written what it had.
function R:launcher(id)
	local launch = require "kx.sched.launch"
	local rec, input = self:recorder()
	local waited = 0
	while true do
		local l, err = launch.start{ lock = self:lock_name(id), recorder = rec, input = input }
		if l then return l end
		if err ~= "held" then error("kx.sched: node " .. id .. ": " .. err, 0) end
		if waited == 0 then
			kx.log.warn("kx.sched: node %s: waiting for an earlier worker of this node on this machine "
				.. "(or the recorder of one that died) to finish", id)
		end
		if waited > 30 then
			error(("kx.sched: node %s: another worker of this node runs on this machine"):format(id), 0)
		end
		kx.sleep(0.05)
		waited = waited + 0.05
	end
end

-- The lock a worker of node `id` holds on this machine (with its launcher
-- and the recorder of a worker that died): one name per queue namespace.
function R:lock_name(id)
	local name = ("kxrun-sched:%s:%d/%d/%s%s"):format(self.o.host, self.o.port, self.o.db, self.P, id)
	if #name > 100 then name = name:sub(1, 60) .. "#" .. #name .. name:sub(-30) end
	return name
end

-- What the launcher of a worker of node `id` hands the results of a dead
-- worker to: this kxrun, `sched _record`, with the URL on its stdin.
function R:recorder()
	local o = self.o
	local auth = o.password and ("%s:%s@"):format(o.user or "", o.password) or ""
	local url = ("redis://%s%s:%d/%d?prefix=%s"):format(auth, o.host, o.port, o.db, self.P)
	return { kx.exe, "sched", "_record" }, url .. "\n"
end

-- A worker's node: register, heartbeat, take tasks (BLMOVE into the node's
-- in-flight list) and run each in a task of its own: run(task, record)
-- calls record(rec) the moment the command ends, and the result is written
-- then, in one script, before anything is cleaned up.
function R:work(node, run)
	local P, id = self.P, node.id
	local lease = math.floor((node.lease or 6) * 1000)
	local beat = node.heartbeat or lease / 3000
	self.heartbeat = self.heartbeat or beat
	local function register()
		return self:must_eval("register node " .. id, "register", id, node.capacity, node.parallel, lease,
			node.reset_capacity and 1 or 0, node.clear_queue and 1 or 0, self.max_attempts)
	end
	local back = register()
	if back > 0 then kx.log.warn("kx.sched: node %s: %d task(s) of an earlier worker given back", id, back) end
	local slot = "worker:" .. id
	self.workers = self.workers + 1
	node.jobs = {}   -- jobs running (the runner keeps it)
	-- what the launcher hands the recorder if this process dies before the
	-- result of a task that ended is written
	node.tag = function(task, rec)
		local r = {}
		for k, v in pairs(task) do r[k] = v end
		for k, v in pairs(rec) do r[k] = v end
		r.node = id
		local ok, js = pcall(kx.json.encode, { node = id, id = task.id, client = task.client,
			attempt = math.tointeger(task.attempts) or 0, rec = r })
		return ok and js or nil
	end
	local tasks = {}
	local timer = kx.every(beat, function()
		if self.closing then return end
		local ok = self:eval("heartbeat", id, lease)
		if ok == 0 then
			-- fencing: the node lost its lease (paused, or cut off from Redis
			-- longer than the lease): its tasks were given back and run
			-- elsewhere, so the copies here are stopped
			local n = 0
			for job in pairs(node.jobs) do job:kill(9); n = n + 1 end
			kx.log.warn("kx.sched: node %s lost its lease (heartbeat expired): %d task(s) it ran are killed "
				.. "(they were given back); registering again", id, n)
			register()
		end
	end)
	-- Tracekit's per-node queues bypass the central: the worker itself keeps
	-- to its capacity and slots (for tasks the central placed this never waits)
	local busy, freed = { n = 0, units = 0 }, kx.event()
	while not self.closing do
		local raw = self:with(slot, function(c)
			return c:timed(beat + 10, "BLMOVE", P .. "q:" .. id, P .. "inflight:" .. id, "LEFT", "RIGHT", beat)
		end)
		local taken = kx.time() * 1000
		local ok, task = false, nil
		if raw then ok, task = pcall(kx.json.decode, raw) end
		if ok and type(task) == "table" then task.ts_taken = taken end
		if raw and (not ok or type(task) ~= "table" or type(task.argv) ~= "table") then
			local why = not ok and ("cannot decode: " .. tostring(task)) or "not a task object"
			kx.log.error("kx.sched: node %s: a task goes to the dead letters: %s", id, why)
			self:eval("bury", id, raw, why)
		elseif raw then
			local units = math.tointeger(task.cpu_units) or 1
			while busy.n > 0 and ((node.parallel > 0 and busy.n >= node.parallel)
				or busy.units + units > node.capacity) do
				freed:wait()
			end
			busy.n, busy.units = busy.n + 1, busy.units + units
			local attempt = math.tointeger(task.attempts) or 0
			local t = kx.go(function()
				local rok, rerr = pcall(run, task, function(rec)
					busy.n, busy.units = busy.n - 1, busy.units - units
					freed:notify()
					for k, v in pairs(task) do if rec[k] == nil then rec[k] = v end end
					rec.node = id
					local eok, js = pcall(kx.json.encode, rec)
					if not eok then
						js = kx.json.encode{ id = task.id, node = id, exit_code = rec.exit_code, signal = rec.signal,
							ts_start = rec.ts_start, ts_end = rec.ts_end, error = "record cannot be encoded: " .. js }
					end
					self.recording = self.recording + 1
					local r, err = self:eval("finish", id, tostring(task.id), attempt, task.client or "", js, raw)
					self.recording = self.recording - 1
					if r == 0 then
						kx.log.warn("kx.sched: node %s: task %s had been given back; its result is dropped", id, task.id)
					elseif not r then
						kx.log.error("kx.sched: node %s: cannot record task %s: %s", id, task.id, err)
					end
					if node.on_end then node.on_end(task, rec, r == 1) end
				end)
				if not rok then kx.log.error("kx.sched: node %s: task %s: %s", id, task.id, rerr) end
				tasks[kx.current()] = nil
			end)
			tasks[t] = true
			-- its start request goes out before this loop asks Redis for the next
			kx.sleep(0)
		end
	end
	for t in pairs(tasks) do t:wait() end
	timer:stop()
	-- leaving: what is still queued for the node goes back to pending
	self:eval("reap", self.max_attempts, id)
	self.workers = self.workers - 1
	self:release()
end

-- Records the results a dead worker's launcher handed over (kxrun sched
-- _record): lines "pid wstatus ts_start_us ts_end_us cpu_us tag", the tag
-- the JSON the worker gave when it started the task.  Returns how many
-- were recorded (a result whose attempt was given back meanwhile is not).
function R:record_orphans(lines)
	local n = 0
	for line in lines do
		local pid, ws, t0, t1, cpu, tag = line:match("^(%d+) (%-?%d+) (%d+) (%d+) (%d+) (.*)$")
		local ok, t = pcall(kx.json.decode, tag or "")
		if pid and ok and type(t) == "table" and type(t.rec) == "table" then
			local rec = t.rec
			ws = tonumber(ws)
			rec.pid, rec.ts_start, rec.ts_end, rec.cpu_ms = tonumber(pid), tonumber(t0) / 1000, tonumber(t1) / 1000,
				tonumber(cpu) / 1000
			if ws & 0x7f ~= 0 and ws & 0x7f ~= 0x7f then rec.signal = ws & 0x7f else rec.exit_code = (ws >> 8) & 0xff end
			rec.recorded_by = "launcher of a worker that died"
			local r = self:must_eval("record task " .. tostring(t.id), "finish", t.node, tostring(t.id), t.attempt,
				t.client or "", kx.json.encode(rec), "")
			if r == 0 then
				kx.log.warn("kx.sched: task %s (attempt %d on %s) had been given back before its result came: "
					.. "dropped", tostring(t.id), t.attempt, tostring(t.node))
			end
			n = n + r
		end
	end
	return n
end

-- Waits until every task this client submitted has a record.  Tasks Redis
-- no longer knows after a reconnect (restarted without persistence) make
-- it return nil, a message naming them, and their ids.
function R:drain()
	local P = self.P
	local gen = self.generation
	local function call(...) return self:must_call("drain", ...) end
	local function check_all()
		local ids = {}
		for tid in pairs(self.outstanding) do ids[#ids + 1] = tid end
		for i = 1, #ids, 200 do
			local chunk = { table.unpack(ids, i, math.min(i + 199, #ids)) }
			for j, v in ipairs(call("HMGET", P .. "done", table.unpack(chunk))) do
				if v then self.outstanding[chunk[j]] = nil end
			end
		end
	end
	local function lost()
		local ids, gone = {}, {}
		for tid in pairs(self.outstanding) do ids[#ids + 1] = tid end
		for i = 1, #ids, 200 do
			local chunk = { table.unpack(ids, i, math.min(i + 199, #ids)) }
			for _, tid in ipairs(self:must_eval("drain", "lost", table.unpack(chunk))) do gone[#gone + 1] = tid end
		end
		return gone
	end
	check_all()
	while next(self.outstanding) do
		local r = self:with("drain", function(c)
			return c:timed(15, "BLPOP", P .. "fin:" .. self.client, 2)
		end)
		if r then self.outstanding[r[2]] = nil else check_all() end
		if self.generation ~= gen then
			gen = self.generation
			check_all()
			local gone = lost()
			if #gone > 0 then
				table.sort(gone)
				for _, tid in ipairs(gone) do self.outstanding[tid] = nil end
				return nil, ("redis at %s:%d lost %d task(s) of this client (restarted without persistence?): %s")
					:format(self.o.host, self.o.port, #gone, table.concat(gone, ", ")), gone
			end
		end
	end
	local recs = {}
	local ids = self.submitted
	for i = 1, #ids, 200 do
		local chunk = { table.unpack(ids, i, math.min(i + 199, #ids)) }
		for _, v in ipairs(call("HMGET", P .. "done", table.unpack(chunk))) do
			if v then recs[#recs + 1] = kx.json.decode(v) end
		end
	end
	return recs
end

function R:status()
	local r = self:must_eval("status", "status")
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
	local function call(...) return self:must_call("clear", ...) end
	local keys = { "pending", "known", "nodes", "done", "dead", "blocking", "wake", "central", "log" }
	for i, k in ipairs(keys) do keys[i] = P .. k end
	local cursor = "0"
	repeat
		local r = call("SCAN", cursor, "MATCH", P .. "*", "COUNT", 200)
		cursor = r[1]
		for _, k in ipairs(r[2]) do
			local rest = k:sub(#P + 1)
			if rest:match("^fin:") or rest:match("^node:") or rest:match("^alive:") or rest:match("^q:")
				or rest:match("^inflight:") then
				keys[#keys + 1] = k
			end
		end
	until cursor == "0"
	local n = 0
	for i = 1, #keys, 100 do n = n + call("DEL", table.unpack(keys, i, math.min(i + 99, #keys))) end
	return n
end

-- The main connection stays until this process's workers have recorded
-- their last tasks and its central has withdrawn its policy.
function R:release()
	if self.closing and self.workers == 0 and self.centrals == 0 and self.conn then
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
