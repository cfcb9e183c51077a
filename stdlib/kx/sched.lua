-- kx.sched: Tracekit's FIFO + first-fit cluster scheduler, with workers,
-- a central and a dispatcher.  sched.connect() is the embedded backend (one
-- machine, no server); sched.connect("redis://...") the Redis one.
--
--   local s = sched.connect()
--   kx.go(function() s:worker{ node = "n1", allocation_ratio = 1.25, binding = "shared" } end)
--   kx.go(function() s:central{ weigher = "instances", order = "min" } end)
--   s:submit{ "sh", "-c", "make -j2", cpu_units = 2 }
--   local records = s:drain(); s:close()
local policy = require "kx.sched.policy"
local runner = require "kx.sched.runner"

local sched = {}

local function ffmpeg(scale, codec, preset, threads)
	return function(input, output)
		return { "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", input,
			"-vf", "scale=" .. scale, "-c:v", codec, "-preset", preset,
			"-threads", tostring(threads), "-an", output }
	end
end

-- Profiles: cpu_units and an ffmpeg command template (input, output) -> argv.
-- Add your own: sched.profiles.mine = { cpu_units = 3, argv = function(i, o) ... end }
sched.profiles = {
	fast1080p = { cpu_units = 2, argv = ffmpeg("1920:1080", "libx264", "fast", 2) },
	medium480p = { cpu_units = 2, argv = ffmpeg("854:480", "libx264", "medium", 2) },
	hevc1080p = { cpu_units = 4, argv = ffmpeg("1920:1080", "libx265", "medium", 4) },
	light1c = { cpu_units = 1, argv = ffmpeg("640:360", "libx264", "veryfast", 1) },
}

local S = {}
S.__index = S

-- sched.connect([url]) -> scheduler | nil, message
function sched.connect(url)
	local backend, err
	if url == nil then
		backend = require("kx.sched.embedded").new()
	else
		local R = require "kx.sched.redis"
		if type(url) ~= "string" or not url:match("^rediss?://") then
			error(("bad argument #1 to 'connect' (redis://[:password@]host[:port][/db] expected, got %s)")
				:format(tostring(url)), 2)
		end
		local ok, perr = R.parse_url(url)
		if not ok then error("bad argument #1 to 'connect' (" .. perr .. ")", 2) end
		backend, err = R.connect(url)
		if not backend then return nil, err end
	end
	return setmetatable({ backend = backend, last_enqueue = 0, pid = kx.exe and
		io.open("/proc/self/stat"):read("a"):match("^%d+") }, S)
end

local function check_int(v, name, min, fname)
	if v == nil then return nil end
	if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) or v < min then
		error(("bad argument #1 to '%s' (%s must be an integer >= %d)"):format(fname, name, min), 3)
	end
	return math.tointeger(v)
end


local function hostname()
	local f = io.open("/proc/sys/kernel/hostname")
	local h = f and f:read("l")
	if f then f:close() end
	return h or "localhost"
end

local function check_positive(v, name, fname, default)
	if v == nil then return default end
	if type(v) ~= "number" or v ~= v or v <= 0 or v == math.huge then
		error(("bad argument #1 to '%s' (%s must be a positive number, got %s)"):format(fname, name, tostring(v)), 3)
	end
	return v
end

-- s:worker{node=, capacity=, allocation_ratio=1.0, parallel=0, binding="exclusive",
--   cpuweight_per_vcpu=100, cpuset=, trace=run, logs=dir, reset_capacity=, clear_queue=,
--   heartbeat=, lease=6, log=false}
-- Runs tasks until s:close().  node defaults to $NODE_ID, then the hostname.
function S:worker(o)
	self:check_open("worker")
	o = o or {}
	local id = o.node or os.getenv("NODE_ID") or hostname()
	if type(id) ~= "string" or id == "" then
		error("bad argument #1 to 'worker' (node must be a non-empty string)", 2)
	end
	local binding = o.binding or "exclusive"
	if binding ~= "exclusive" and binding ~= "shared" then
		error(("bad argument #1 to 'worker' (binding must be exclusive or shared, got %s)"):format(tostring(binding)), 2)
	end
	local cores = runner.online_cores()
	if o.cpuset then
		local err
		cores, err = runner.parse_cpuset(o.cpuset)
		if not cores then error("bad argument #1 to 'worker' (" .. err .. ")", 2) end
	end
	local ratio = check_positive(o.allocation_ratio, "allocation_ratio", "worker", 1.0)
	local lease = check_positive(o.lease, "lease", "worker", 6)
	local heartbeat = check_positive(o.heartbeat, "heartbeat", "worker", lease / 3)
	if heartbeat >= lease then
		error(("bad argument #1 to 'worker' (heartbeat (%g s) must be shorter than the lease (%g s))")
			:format(heartbeat, lease), 2)
	end
	local capacity = policy.capacity(check_int(o.capacity, "capacity", 1, "worker") or 0, ratio, #cores)
	local parallel = check_int(o.parallel, "parallel", 0, "worker") or 0
	local kind, why = runner.cgroups()
	if not kind then kx.log.warn("kx.sched: node %s runs tasks unbound: %s", id, why) end
	local stale = kind and runner.reap_stale() or 0
	if stale > 0 then kx.log.warn("kx.sched: removed %d task cgroup(s) left by dead workers", stale) end
	local launcher = self.backend:launcher(id)
	local uid = ("%s-%s"):format(self.pid, id:gsub("[^%w_-]", "_"))
	local pool
	if kind then
		pool, why = runner.pool(uid, binding, math.min(capacity, 64), launcher)
		if not pool then kx.log.warn("kx.sched: node %s runs tasks unbound: %s", id, why) end
	end
	local out = o.log and (type(o.log) == "function" and o.log or function(line)
		io.stdout:write(line, "\n")
		io.stdout:flush()
	end)
	local node = {
		id = id, capacity = capacity, parallel = parallel, binding = binding,
		cpuweight_per_vcpu = o.cpuweight_per_vcpu or 100, trace = o.trace, logs = o.logs, uid = uid,
		reset_capacity = o.reset_capacity, clear_queue = o.clear_queue,
		heartbeat = heartbeat, lease = lease, launcher = launcher, pool = pool, cores = runner.cores(cores),
	}
	if out then
		-- Tracekit's worker lines: "EXEC: cmd" and "task ok: in -> out"
		node.on_end = function(task, rec)
			local what = task.input and (tostring(task.input) .. " -> " .. tostring(task.output)) or tostring(task.id)
			if rec.exit_code == 0 then
				out("task ok: " .. what)
			else
				out(("task failed rc=%s: %s%s"):format(rec.exit_code or ("signal " .. tostring(rec.signal)), what,
					rec.error and (" (" .. rec.error .. ")") or ""))
			end
		end
	end
	local ok, err = pcall(self.backend.work, self.backend, node, function(task, record)
		if out then out("EXEC: " .. runner.shell_join(task.argv)) end
		runner.run(task, node, record)
	end)
	if pool then pool:close() end
	launcher:close()
	if not ok then error(err, 0) end
end

-- s:central{weigher=nil|"instances"|"vcpu", order="min"|"max", heartbeat=1,
--   max_attempts=3}: places tasks until s:close().  heartbeat: how often
-- the Redis central looks for nodes whose lease expired.
function S:central(o)
	self:check_open("central")
	o = o or {}
	local weigher, werr = policy.weigher(o.weigher)
	if not weigher then error("bad argument #1 to 'central' (" .. werr .. ")", 2) end
	local order, oerr = policy.order(o.order)
	if not order then error("bad argument #1 to 'central' (" .. oerr .. ")", 2) end
	local log = o.log
	if log and type(log) ~= "function" then
		-- Tracekit's central line per decision
		log = function(d)
			if d.dead then
				print("dead letter: " .. d.dead)
			elseif d.blocked then
				print(("blocked: head task %s can never start (larger than every node)"):format(d.blocked))
			else
				print(("dispatch -> node=%s input=%s output=%s cpu_units=%s cap_left=%s"):format(d.node,
					tostring(d.input or d.id), tostring(d.output), d.cpu_units, d.cap_left))
			end
			io.stdout:flush()
		end
	end
	return self.backend:central(weigher, order, {
		heartbeat = check_positive(o.heartbeat, "heartbeat", "central", nil),
		max_attempts = check_int(o.max_attempts, "max_attempts", 1, "central"), log = log })
end

function S:next_enqueue()
	local now = math.floor(kx.time() * 1000)
	if now <= self.last_enqueue then now = self.last_enqueue + 1 end
	self.last_enqueue = now
	return now
end

function S:check_open(fname)
	if self.closed then error(("'%s' on a closed scheduler"):format(fname), 3) end
end

-- s:submit{argv..., cpu_units=1, cpuset=, trace_id=, profile=, input=, output=,
--   node=} -> task id.  node: straight to that node's queue (Tracekit's
-- dispatcher without --pending), no central involved.
function S:submit(t)
	self:check_open("submit")
	if type(t) ~= "table" or #t == 0 then
		error(("bad argument #1 to 'submit' (table with argv expected, got %s)"):format(
			type(t) == "table" and "an empty table" or type(t)), 2)
	end
	local argv = {}
	for i = 1, #t do
		local a = t[i]
		if type(a) ~= "string" and type(a) ~= "number" then
			error(("bad argument #1 to 'submit' (argv[%d] is a %s, string expected)"):format(i, type(a)), 2)
		end
		argv[i] = tostring(a)
	end
	if t.cpuset ~= nil then
		local ok, err = runner.parse_cpuset(t.cpuset)
		if not ok then error("bad argument #1 to 'submit' (" .. err .. ")", 2) end
	end
	for _, k in ipairs{ "trace_id", "profile", "input", "output", "node" } do
		if t[k] ~= nil and type(t[k]) ~= "string" and type(t[k]) ~= "number" then
			error(("bad argument #1 to 'submit' (%s must be a string, got %s)"):format(k, type(t[k])), 2)
		end
	end
	local task = {
		argv = argv, cpu_units = check_int(t.cpu_units, "cpu_units", 1, "submit") or 1,
		cpuset = t.cpuset, trace_id = t.trace_id, profile = t.profile, input = t.input, output = t.output,
		ts_enqueue = self:next_enqueue(),
	}
	return self.backend:push(task, t.node and tostring(t.node))
end

-- A generator of 32-bit numbers that depends on nothing but the seed.
local function xorshift(seed)
	local x = (seed or 1) & 0xffffffff
	if x == 0 then x = 0x9e3779b9 end
	return function()
		x = x ~ ((x << 13) & 0xffffffff)
		x = x ~ (x >> 17)
		x = x ~ ((x << 5) & 0xffffffff)
		return x
	end
end

-- The profile of each of `total` tasks for a mix {name = weight}: counts in
-- proportion (largest remainders), shuffled by the seed.
function sched.sequence(mix, total, seed)
	local names, sum = {}, 0
	for name, w in pairs(mix) do
		if not sched.profiles[name] then error(("unknown profile '%s'"):format(tostring(name)), 2) end
		if type(w) ~= "number" or w < 0 then error(("weight of %s must be a number >= 0"):format(name), 2) end
		names[#names + 1] = name
		sum = sum + w
	end
	if sum <= 0 then error("mix has no positive weight", 2) end
	table.sort(names)
	local counts, given, rest = {}, 0, {}
	for _, n in ipairs(names) do
		local exact = total * mix[n] / sum
		counts[n] = math.floor(exact)
		given = given + counts[n]
		rest[#rest + 1] = { n, exact - counts[n] }
	end
	table.sort(rest, function(a, b) return a[2] > b[2] or (a[2] == b[2] and a[1] < b[1]) end)
	for i = 1, total - given do counts[rest[i][1]] = counts[rest[i][1]] + 1 end
	local seq = {}
	for _, n in ipairs(names) do for _ = 1, counts[n] do seq[#seq + 1] = n end end
	local rand = xorshift(seed)
	for i = #seq, 2, -1 do
		local j = rand() % i + 1
		seq[i], seq[j] = seq[j], seq[i]
	end
	return seq
end

local function list_inputs(dir)
	local p = assert(kx.spawn{ "find", dir, "-maxdepth", "1", "-type", "f", stdout = "pipe", stderr = "null" })
	local files = {}
	for line in p.stdout:lines() do
		if line:match("%.[mM][pPkKoO][4vV]$") or line:match("%.mkv$") or line:match("%.mov$") then
			files[#files + 1] = line
		end
	end
	p:wait()
	table.sort(files)
	return files
end

-- s:dispatch{inputs=, outputs="outputs", mix=, total=, seed=, mode="pulse"|"all",
--   pulse_size=10, pulse_interval=0.1, commands=} -> array of task ids
function S:dispatch(o)
	if type(o) ~= "table" then error("bad argument #1 to 'dispatch' (table expected)", 2) end
	local tasks = {}
	if o.commands then
		for i, c in ipairs(o.commands) do
			local argv = type(c) == "string" and { "sh", "-c", c } or c
			tasks[i] = { argv = argv, cpu_units = argv.cpu_units or 1, profile = "command" }
		end
	else
		if type(o.mix) ~= "table" then error("bad argument #1 to 'dispatch' (mix or commands expected)", 2) end
		local total = check_int(o.total, "total", 0, "dispatch") or 0
		local ok, seq = pcall(sched.sequence, o.mix, total, o.seed)
		if not ok then error("bad argument #1 to 'dispatch' (" .. tostring(seq):gsub("^.-:%d+: ", "") .. ")", 2) end
		local inputs = o.inputs and list_inputs(o.inputs) or {}
		if #seq > 0 and #inputs == 0 then
			return nil, ("no input videos in %s (kxrun sched gen-inputs makes some)"):format(tostring(o.inputs))
		end
		local outputs = o.outputs or "outputs"
		os.execute("mkdir -p '" .. outputs:gsub("'", "'\\''") .. "'")
		for i, name in ipairs(seq) do
			local p = sched.profiles[name]
			local input = inputs[(i - 1) % #inputs + 1]
			local output = ("%s/%04d_%s.mp4"):format(outputs, i, name)
			tasks[i] = { argv = p.argv(input, output), cpu_units = p.cpu_units, profile = name }
		end
	end
	local mode = o.mode or "pulse"
	if mode ~= "pulse" and mode ~= "all" then
		error(("bad argument #1 to 'dispatch' (mode must be pulse or all, got %s)"):format(tostring(mode)), 2)
	end
	local size = mode == "pulse" and (check_int(o.pulse_size, "pulse_size", 1, "dispatch") or 10) or #tasks
	local interval = o.pulse_interval or 0.1
	local ids = {}
	for i, t in ipairs(tasks) do
		local spec = { table.unpack(t.argv) }
		spec.cpu_units, spec.profile = t.cpu_units, t.profile
		ids[i] = self:submit(spec)
		kx.progress("dispatch", i, #tasks)
		if i % size == 0 and i < #tasks then kx.sleep(interval) end
	end
	return ids
end

-- Waits until every task submitted so far has ended; returns their records
-- (id, profile, node, argv, cpu_units, ts_enqueue, ts_dispatch, ts_start,
-- ts_end, exit_code | signal, cpuset, attempts).
function S:drain()
	self:check_open("drain")
	return self.backend:drain()
end

function S:status()
	self:check_open("status")
	return self.backend:status()
end

function S:close()
	if self.closed then return end
	self.closed = true
	return self.backend:close()
end
S.__close = S.close

return sched
