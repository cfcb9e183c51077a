-- kx.sched on a real redis-server, started here on a free loopback port with
-- a password (and AOF, so a restart keeps the queues; fsync left to the OS so
-- that a busy disk cannot stall Redis past the short leases), stopped after.
local need = dofile((os.getenv("ROOT") or ".") .. "/tests/need.lua")
local sched = require "kx.sched"
local client = require "kx.sched.redis.client"
local policy = require "kx.sched.policy"
local runner = require "kx.sched.runner"

local function tmpdir()
	return assert(kx.tmpdir("sched-spec"))
end
local function read(p) local f = io.open(p) if not f then return nil end local s = f:read("a") f:close() return s end
local function lines(p) local n = 0 for _ in (read(p) or ""):gmatch("[^\n]+") do n = n + 1 end return n end

local Redis = {}
Redis.__index = Redis

-- On a random port no one listens on; another one if the bind fails (the
-- machine is shared).  opts.persist = false: no AOF (a restart loses all);
-- opts.env: added to the server's environment.
function Redis.start(dir, opts)
	local self = setmetatable({ dir = dir, pw = "s3cret", persist = not (opts and opts.persist == false),
		env = opts and opts.env }, Redis)
	local err
	for _ = 1, 10 do
		repeat self.port = math.random(20000, 60000) until not client.probe("127.0.0.1", self.port, 1)
		local ok
		ok, err = pcall(self.run, self)
		if ok then return self end
	end
	error(err)
end

function Redis:run()
	self.proc = assert(kx.spawn{ "redis-server", "--port", tostring(self.port), "--bind", "127.0.0.1",
		"--requirepass", self.pw, "--dir", self.dir, "--appendonly", self.persist and "yes" or "no", "--appendfsync", "no",
		"--save", "", stdout = self.dir .. "/redis.log", stderr = self.dir .. "/redis.log", env = self.env })
	for _ = 1, 200 do
		if client.probe("127.0.0.1", self.port, 1) then return end
		if self.proc:wait(0.02) then break end
	end
	self.proc:kill("KILL")
	error("redis-server did not start: " .. tostring(read(self.dir .. "/redis.log")))
end

-- Fails unless the server really went (a fault test needs it down).
function Redis:stop()
	self.proc:kill("TERM")
	assert(self.proc:wait(10), "redis-server did not stop")
	assert(not client.probe("127.0.0.1", self.port, 1), "something still answers on port " .. self.port)
end

-- Whether any node holds a task in flight (taken by its worker).
function Redis:in_flight(prefix)
	local c = self:raw()
	local n = 0
	for _, id in ipairs(c:call("SMEMBERS", (prefix or "kx:sched:") .. "nodes")) do
		n = n + c:call("LLEN", (prefix or "kx:sched:") .. "inflight:" .. id)
	end
	c:close()
	return n
end

function Redis:url(pw)
	return ("redis://:%s@127.0.0.1:%d/0"):format(pw or self.pw, self.port)
end

-- A raw connection for looking at or spoiling the state.
function Redis:raw()
	local c = client.new()
	assert(c:open("127.0.0.1", self.port, 5))
	assert(c:call("AUTH", self.pw))
	return c
end

local function wait_for(pred, secs, what)
	local deadline = kx.now() + (secs or 20)
	while kx.now() < deadline do
		if pred() then return end
		kx.sleep(0.05)
	end
	error("timed out waiting for " .. what)
end

describe("kx.sched on redis", function()
	local dir, redis
	before_each(function()
		dir = tmpdir()
		redis = Redis.start(dir)
	end)
	after_each(function()
		-- the directory goes even when the server would not stop
		local ok, err = pcall(redis.stop, redis)
		if not ok then redis.proc:kill("KILL"); redis.proc:wait(5) end
		os.execute("rm -rf " .. dir)
		assert(ok, err)
	end)

	it("runs every submitted task exactly once", function()
		local s = assert(sched.connect(redis:url()))
		kx.go(function() s:worker{ node = "n1", capacity = 2, binding = "shared" } end)
		kx.go(function() s:worker{ node = "n2", capacity = 1, parallel = 1, binding = "shared" } end)
		kx.go(function() s:central{ weigher = "vcpu", order = "min" } end)
		local ids = {}
		for i = 1, 20 do
			ids[i] = s:submit{ "sh", "-c", "echo x >> " .. dir .. "/t" .. i .. "; sleep 0.02", cpu_units = 1 }
		end
		local recs = s:drain()
		local st = s:status()
		s:close()
		assert.are.equal(20, #recs)
		local last, nodes = 0, {}
		for i, r in ipairs(recs) do
			assert.are.equal(ids[i], r.id)
			assert.are.equal(0, r.exit_code)
			assert.are.equal("x\n", read(dir .. "/t" .. i), "task " .. i .. " ran once")
			assert.is_true(r.ts_enqueue > last)
			last = r.ts_enqueue
			nodes[r.node] = true
		end
		assert.is_true(nodes.n1 and nodes.n2)
		for _, n in ipairs(st.nodes) do
			assert.are.equal(0, n.used, "capacity of " .. n.id .. " all given back")
			assert.are.equal(0, n.running)
		end
		assert.are.equal(0, st.pending)
	end)

	it("lets a closed client's workers and central end at once when redis goes right after", function()
		-- a script that closes and stops its server (every spec here does)
		-- must not stay behind retrying the leaving worker's last script
		for _, server_first in ipairs{ false, true } do
			local s = assert(sched.connect(redis:url()))
			local w = kx.go(function() s:worker{ node = "n1", capacity = 1, binding = "shared", heartbeat = 0.1 } end)
			local c = kx.go(function() s:central{ heartbeat = 0.1 } end)
			s:submit{ "true" }
			assert.are.equal(1, #s:drain())
			if server_first then redis:stop(); kx.sleep(0.3); s:close() else s:close(); redis:stop() end
			local t0 = kx.now()
			assert.is_true((w:wait(20)), "the worker ended")
			assert.is_true((c:wait(20)), "the central ended")
			assert.is_true(kx.now() - t0 < 5, ("they ended %.1f s after the %s went"):format(kx.now() - t0,
				server_first and "client" or "server"))
			redis:run()   -- for the next round and after_each
		end
	end)

	it("notices at once a server that dies with a command unread (the peer resets the connection)", function()
		local c = redis:raw()
		redis.proc:kill("STOP")   -- the PING stays unread in the server's socket...
		local t = kx.go(function() return c:timed(10, "PING") end)
		kx.sleep(0.2)
		redis.proc:kill("KILL")   -- ...so the kernel answers with a reset, not a FIN
		redis.proc:kill("CONT")
		redis.proc:wait(10)
		local t0 = kx.now()
		local _, r, err = t:wait(15)
		assert.is_nil(r)
		assert.matches("connection lost", err)
		assert.is_true(kx.now() - t0 < 2, ("noticed after %.1f s"):format(kx.now() - t0))
		assert.is_false(c:connected())
		c:close()
		redis:run()   -- for after_each
	end)

	it("gives clear errors for a wrong password and a server that is not there", function()
		local s, err = sched.connect(redis:url("wrong"))
		assert.is_nil(s)
		assert.matches("WRONGPASS", err)
		s, err = sched.connect("redis://:x@127.0.0.1:1/0")
		assert.is_nil(s)
		assert.matches("127.0.0.1:1: connection refused", err)
	end)

	it("moves malformed task JSON to the dead-letter list and goes on", function()
		local raw = redis:raw()
		assert(raw:call("RPUSH", "kx:sched:pending", "{not json", '{"id":"x","argv":[],"cpu_units":1}'))
		local s = assert(sched.connect(redis:url()))
		kx.go(function() s:worker{ node = "n1", capacity = 1, binding = "shared" } end)
		kx.go(function() s:central{} end)
		s:submit{ "true" }
		local recs = s:drain()
		assert.are.equal(1, #recs)
		assert.are.equal(0, recs[1].exit_code)
		local dead = raw:call("LRANGE", "kx:sched:dead", 0, -1)
		assert.are.equal(2, #dead)
		assert.matches("not JSON", kx.json.decode(dead[1]).reason)
		assert.matches("argv", kx.json.decode(dead[2]).reason)
		assert.are.equal(2, s:status().dead)
		s:close()
		raw:close()
	end)

	it("keeps a head larger than every node at the head, reports it, and does not spin", function()
		local s = assert(sched.connect(redis:url()))
		kx.go(function() s:worker{ node = "n1", capacity = 2, binding = "shared" } end)
		kx.go(function() s:central{} end)
		local big = s:submit{ "true", cpu_units = 9 }
		s:submit{ "true", cpu_units = 1 }
		local raw = redis:raw()
		wait_for(function() return s:status().blocking end, 10, "blocking")
		local function evals()
			local info = raw:call("INFO", "commandstats")
			return tonumber(info:match("cmdstat_evalsha:calls=(%d+)")) or 0
		end
		local before = evals()
		kx.sleep(1.5)
		local st = s:status()
		-- one dispatch attempt per heartbeat period, heartbeats and status:
		-- a poller at 50 ms would make 30
		assert.is_true(evals() - before < 15, "evals in 1.5 s: " .. (evals() - before))
		assert.are.equal(big, st.blocking.id)
		assert.matches("larger than every node", st.blocking.reason)
		assert.are.equal(2, st.pending)
		s:close()
		raw:close()
	end)

	it("loses nothing when a worker is killed with SIGKILL mid-task", function()
		local out = dir .. "/out"
		local script = dir .. "/worker.lua"
		local f = assert(io.open(script, "w"))
		f:write(([[
local s = assert(require("kx.sched").connect(%q))
s:worker{ node = "a", capacity = 1, binding = "shared", lease = 1, heartbeat = 0.2 }
]]):format(redis:url()))
		f:close()
		local s = assert(sched.connect(redis:url()))
		local victim = assert(kx.spawn{ os.getenv("KXRUN") or "./kxrun", script, stdout = "null", stderr = "null" })
		wait_for(function()
			for _, n in ipairs(s:status().nodes) do if n.id == "a" then return true end end
		end, 20, "worker a")
		kx.go(function() s:central{ heartbeat = 0.2 } end)
		local id = s:submit{ "sh", "-c", "echo started >> " .. out .. ".start; sleep 1; echo x >> " .. out }
		wait_for(function() return lines(out .. ".start") == 1 end, 20, "the task to start on a")
		assert.are.equal(1, redis:in_flight(), "worker a holds the task")
		-- a's launcher (its child) owns a's task cgroups
		local launcher = tonumber((read(("/proc/%d/task/%d/children"):format(victim.pid, victim.pid)) or ""):match("%d+"))
		assert.is_truthy(launcher, "worker a has its launcher")
		victim:kill("KILL")
		local st = victim:wait(10)
		assert.are.equal(9, st and st.signal, "worker a was SIGKILLed")
		kx.go(function() s:worker{ node = "b", capacity = 1, binding = "shared", lease = 1, heartbeat = 0.2 } end)
		local recs = s:drain()
		assert.are.equal(1, #recs)
		assert.are.equal(id, recs[1].id)
		assert.are.equal("b", recs[1].node)
		assert.are.equal(0, recs[1].exit_code)
		assert.are.equal(1, recs[1].attempts)
		kx.sleep(1.2)   -- the killed run had a second left: it must not finish
		assert.are.equal(1, lines(out), "the task's output written once")
		assert.are.equal(2, lines(out .. ".start"))
		st = s:status()
		assert.are.equal(1, #st.nodes)   -- a was reaped
		assert.are.equal(0, st.nodes[1].used)
		if runner.cgroups() == "v1" then
			-- the killed worker's launcher removed its task cgroups
			wait_for(function()
				local code, names = kx.exec{ "find", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuset", "-maxdepth", "1",
					"-name", "kxrun-sched-" .. launcher .. "-*" }
				return code == 0 and names == ""
			end, 10, "worker a's task cgroups to go")
		end
		s:close()
	end)

	it("loses nothing when redis restarts mid-run", function()
		local s = assert(sched.connect(redis:url()))
		kx.go(function() s:worker{ node = "n1", capacity = 2, binding = "shared" } end)
		kx.go(function() s:central{} end)
		for i = 1, 10 do
			s:submit{ "sh", "-c", "echo x >> " .. dir .. "/r" .. i .. "; sleep 0.3", cpu_units = 1 }
		end
		wait_for(function() return redis:in_flight() > 0 end, 20, "a task in flight")
		redis:stop()
		kx.sleep(0.5)
		redis:run()
		local recs = s:drain()
		s:close()
		assert.are.equal(10, #recs)
		for i = 1, 10 do
			assert.are.equal(0, recs[i].exit_code)
			assert.are.equal("x\n", read(dir .. "/r" .. i), "task " .. i .. " ran once")
		end
	end)

	it("re-runs nothing when redis is down for longer than the lease", function()
		local s = assert(sched.connect(redis:url()))
		kx.go(function() s:worker{ node = "n1", capacity = 2, binding = "shared", lease = 1, heartbeat = 0.2 } end)
		kx.go(function() s:central{ heartbeat = 0.2 } end)
		for i = 1, 4 do
			s:submit{ "sh", "-c", "echo x >> " .. dir .. "/o" .. i .. "; sleep 1" }
		end
		wait_for(function() return redis:in_flight() == 2 end, 20, "two tasks in flight")
		redis:stop()
		kx.sleep(2)   -- the heartbeats expire while redis is away
		redis:run()
		local recs = s:drain()
		s:close()
		assert.are.equal(4, #recs)
		for i = 1, 4 do
			assert.are.equal(0, recs[i].exit_code)
			assert.are.equal("x\n", read(dir .. "/o" .. i), "task " .. i .. " ran once")
			assert.is_nil(recs[i].attempts, "task " .. i .. " was never given back")
		end
	end)

	it("never lets stale keys of an earlier run hold capacity", function()
		local raw = redis:raw()
		-- an earlier run died with n1 full and a task queued for it
		assert(raw:call("SADD", "kx:sched:nodes", "n1", "ghost"))
		assert(raw:call("HSET", "kx:sched:node:n1", "capacity", 2, "used", 2, "running", 2))
		assert(raw:call("HSET", "kx:sched:node:ghost", "capacity", 8, "used", 0, "running", 0))
		assert(raw:call("RPUSH", "kx:sched:inflight:n1",
			'{"id":"old-1","argv":["true"],"cpu_units":1,"client":"old"}'))
		local s = assert(sched.connect(redis:url()))
		kx.go(function() s:worker{ node = "n1", capacity = 2, binding = "shared" } end)
		kx.go(function() s:central{} end)
		s:submit{ "true", cpu_units = 2 }
		local recs = s:drain()
		assert.are.equal(0, recs[1].exit_code)
		assert.are.equal("n1", recs[1].node)
		s:close()
		raw:close()
	end)

	it("gives concurrent exclusive tasks disjoint cpusets (read back from the kernel)", function()
		-- cgroup v1 cpuset, or the v2 path where the unified hierarchy has
		-- the cpuset and cpu controllers
		if not need("cgroup-cpu-binding") then return end
		local s = assert(sched.connect(redis:url()))
		local cores = #runner.online_cores()
		kx.go(function() s:worker{ node = "n1", binding = "exclusive" } end)
		kx.go(function() s:central{} end)
		for i = 1, 2 * cores do
			s:submit{ "sh", "-c", "sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status > "
				.. dir .. "/c" .. i .. "; sleep 0.2" }
		end
		local recs = s:drain()
		s:close()
		for i, a in ipairs(recs) do
			local got = runner.parse_cpuset(read(dir .. "/c" .. i))
			assert.are.same(runner.parse_cpuset(a.cpuset), got)
			for j = i + 1, #recs do
				local b = recs[j]
				if a.ts_start < b.ts_end and b.ts_start < a.ts_end then
					local theirs = {}
					for _, c in ipairs(runner.parse_cpuset(b.cpuset)) do theirs[c] = true end
					for _, c in ipairs(got) do assert.is_nil(theirs[c], "core " .. c .. " shared") end
				end
			end
		end
	end)

	it("sends a task nested deeper than tasks are to the dead letters, with the reason", function()
		local raw = redis:raw()
		local deep = ("["):rep(150) .. ("]"):rep(150)
		assert(raw:call("RPUSH", "kx:sched:pending", '{"id":"deep","argv":["true"],"cpu_units":1,"x":' .. deep .. '}'))
		assert(raw:call("RPUSH", "kx:sched:pending", '{"id":"deeper","argv":["true"],"cpu_units":1,"x":'
			.. ("["):rep(1500) .. ("]"):rep(1500) .. '}'))
		local s = assert(sched.connect(redis:url()))
		kx.go(function() s:worker{ node = "n1", capacity = 1, binding = "shared" } end)
		kx.go(function() s:central{} end)
		s:submit{ "true" }
		local recs = s:drain()
		assert.are.equal(0, recs[1].exit_code)
		local dead = raw:call("LRANGE", "kx:sched:dead", 0, -1)
		assert.are.equal(2, #dead)
		assert.matches("nested deeper than 32 levels", kx.json.decode(dead[1]).reason)
		assert.matches("nest", kx.json.decode(dead[2]).reason)
		s:close()
		raw:close()
	end)

	it("records a cpuset off the node as the embedded backend does, and keeps ?prefix= as given", function()
		local s = assert(sched.connect(redis:url() .. "?prefix=p1:"))
		kx.go(function() s:worker{ node = "n1", capacity = 1, binding = "shared" } end)
		kx.go(function() s:central{} end)
		s:submit{ "true", cpuset = "999" }
		local recs = s:drain()
		s:close()
		assert.are.equal(-1, recs[1].exit_code)
		assert.matches("cpuset 999: core 999 is not one of this node's cores", recs[1].error)
		local raw = redis:raw()
		local keys = raw:call("KEYS", "*")
		raw:close()
		assert.is_true(#keys > 0)
		for _, k in ipairs(keys) do
			assert.matches("^p1:[^:]", k)
		end
	end)

	it("drain names the tasks a Redis restarted without persistence lost", function()
		redis:stop()
		redis = Redis.start(dir, { persist = false })
		local s = assert(sched.connect(redis:url()))
		s.backend.reconnect_for = 30
		-- no worker: the tasks wait in Redis, and go with it
		local a = s:submit{ "true" }
		local b = s:submit{ "true" }
		local done = {}
		kx.go(function() done.recs, done.err, done.ids = s:drain() end)
		kx.sleep(0.3)
		redis:stop()
		kx.sleep(0.5)
		redis:run()
		wait_for(function() return done.err or done.recs end, 30, "drain to return")
		s:close()
		assert.is_nil(done.recs)
		assert.matches("lost 2 task%(s%) of this client", done.err)
		assert.matches(a, done.err, 1, true)
		assert.are.same({ a, b }, done.ids)
	end)

	it("puts tasks straight on per-node queues (Tracekit without --pending), and the worker keeps to its capacity", function()
		local s = assert(sched.connect(redis:url()))
		kx.go(function() s:worker{ node = "n1", capacity = 1, binding = "shared" } end)
		kx.go(function() s:worker{ node = "n2", capacity = 1, binding = "shared" } end)
		wait_for(function() return #s:status().nodes == 2 end, 20, "two nodes")
		-- no central runs: per-node queues need none
		for _ = 1, 3 do s:submit{ "sleep", "0.2", node = "n1" } end
		local recs = s:drain()
		for i, a in ipairs(recs) do
			assert.are.equal("n1", a.node)
			assert.are.equal(0, a.exit_code)
			for j = i + 1, #recs do
				local b = recs[j]
				assert.is_false(a.ts_start < b.ts_end and b.ts_start < a.ts_end, "two tasks at once on a 1-unit node")
			end
		end
		-- the dispatcher's round robin over --nodes, one task per input
		os.execute("mkdir -p " .. dir .. "/in && touch " .. dir .. "/in/a.mp4 " .. dir .. "/in/b.mp4 "
			.. dir .. "/in/c.mp4 " .. dir .. "/in/d.mp4")
		local lines = {}
		local ids = assert(s:dispatch{ inputs = dir .. "/in", outputs = dir .. "/out", nodes = { "n1", "n2" },
			policy = "rr3", log = function(l) lines[#lines + 1] = l end })
		assert.are.equal(4, #ids)
		assert.are.same({ "enqueued 4 tasks: n1=2, n2=2" }, lines)
		recs = s:drain()
		s:close()
		local got = {}
		for i = 4, 7 do got[#got + 1] = recs[i].node end
		assert.are.same({ "n1", "n2", "n1", "n2" }, got)
		assert.matches("_1280x720_crf28%.mp4$", recs[4].output)
	end)

	it("orders node ids by bytes on a Redis whose locale folds case", function()
		if not need("locale-en_US") then return end
		-- a second server, started under en_US.UTF-8 (Redis sets LC_COLLATE
		-- from the environment; its Lua compares strings with strcoll)
		local d2 = dir .. "/locale"
		assert(kx.mkdir(d2))
		local r2 = Redis.start(d2, { persist = false, env = { LC_ALL = "en_US.UTF-8" } })
		local raw = r2:raw()
		-- precondition: this server's Lua really collates (C would say true)
		assert.are.equal("false", raw:call("EVAL", "return tostring('Node-z' < 'node-a')", 0))
		local P = "kx:sched:"
		for _, id in ipairs{ "node-b", "Node-z", "node-a" } do
			raw:call("SADD", P .. "nodes", id)
			raw:call("SET", P .. "alive:" .. id, 1)
			raw:call("HSET", P .. "node:" .. id, "capacity", 4, "parallel", 0, "running", 0, "used", 0)
		end
		raw:call("RPUSH", P .. "pending", kx.json.encode{ id = "t", argv = { "true" }, cpu_units = 1 })
		local r = assert(raw:call("EVAL", require("kx.sched.scripts").dispatch, 0, P, "", "min"))
		assert.are.same({ "placed", "t", "Node-z" }, { r[1], r[2], r[3] })
		raw:close()
		r2:stop()
	end)

	it("decides on the server as the embedded backend does (random states, ids of mixed case)", function()
		local raw = redis:raw()
		local sha = assert(raw:call("SCRIPT", "LOAD", require("kx.sched.scripts").dispatch))
		math.randomseed(7)
		for case = 1, 60 do
			raw:call("FLUSHDB")
			local nodes = {}
			for i = 1, math.random(1, 5) do
				local cap = math.random(1, 6)
				local n = { id = ({ "n", "N", "node-", "Node-" })[math.random(4)] .. math.random(1, 12) .. i,
					capacity = cap, parallel = math.random(0, 3) }
				n.running = math.random(0, 3)
				n.used = math.random(0, cap)
				nodes[#nodes + 1] = n
				raw:call("SADD", "kx:sched:nodes", n.id)
				raw:call("SET", "kx:sched:alive:" .. n.id, 1)
				raw:call("HSET", "kx:sched:node:" .. n.id, "capacity", n.capacity, "parallel",
					n.parallel, "running", n.running, "used", n.used)
			end
			local units = math.random(1, 4)
			local w = ({ "", "instances", "vcpu" })[math.random(1, 3)]
			local order = math.random(2) == 1 and "min" or "max"
			raw:call("RPUSH", "kx:sched:pending", kx.json.encode{ id = "t", argv = { "true" }, cpu_units = units })
			local r = assert(raw:call("EVALSHA", sha, 0, "kx:sched:", w, order))
			local i = policy.pick(nodes, units, w, order)
			local want = i and nodes[i].id or nil
			assert.are.equal(want, r[1] == "placed" and r[3] or nil, "case " .. case)
		end
		raw:close()
	end)
end)
