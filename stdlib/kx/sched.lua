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

local D = require "kx.sched.dispatch"

-- Profiles: cpu_units and argv(input, output), Tracekit's ffmpeg command
-- lines.  Add your own: sched.profiles.mine = { cpu_units = 3, argv = function(i, o) ... end }
sched.profiles = D.profiles
sched.sequence = D.sequence

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
	-- the launcher first: it holds the node's lock, so an earlier worker of
	-- this node (or its recorder) has finished before anything below
	local launcher = self.backend:launcher(id)
	local kind, why = runner.cgroups()
	if not kind then kx.log.warn("kx.sched: node %s runs tasks unbound: %s", id, why) end
	local stale = kind and runner.reap_stale() or 0
	if stale > 0 then kx.log.warn("kx.sched: removed %d task cgroup(s) whose launcher was killed", stale) end
	-- task cgroups carry the launcher's pid: it removes them when its worker
	-- dies, and they are stale only once it is gone too
	local uid = ("%d-%s"):format(launcher:pid(), id:gsub("[^%w_-]", "_"))
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
				print(("blocked: head task %s needs %s units, the largest node has %s: it cannot start until a "
					.. "larger node comes"):format(d.blocked, tostring(d.units), tostring(d.largest)))
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

local MODES = { pulse = true, fifo = true, all = true }
local POLICIES = { rr3 = true, ["duration-greedy"] = true, ["lpt-duration"] = true,
	["duration-online"] = true, ["online-duration"] = true }

local function check_num(v, name, min, default)
	if v == nil then return default end
	if type(v) ~= "number" or v ~= v or v < min or v == math.huge then
		error(("bad argument #1 to 'dispatch' (%s must be a number >= %s, got %s)"):format(name, min, tostring(v)), 3)
	end
	return v
end

-- s:dispatch{inputs=, outputs="outputs", mix=, total=0, seed=, commands=, scale=, preset=, crf=,
--   mode="pulse"|"fifo"|"all", pulse_size=10, pulse_interval=0.1 (s), pulse_spacing=0 (s),
--   pending_max=6, batch_size=1, dribble_interval=1 (s),
--   pending=, nodes=, policy="rr3"|"duration-greedy"|"duration-online", drip=, backlog_limit=1,
--   log=function(line)} -> array of task ids | nil, why
-- Tracekit's dispatcher: a seeded mix of `total` tasks (total 0: one per
-- input), or one task per input with scale/preset/crf.  Through the central
-- (pending) in pulses of pulse_size (pulse_spacing s apart inside a pulse,
-- pulse_interval s between pulses), as FIFO dribbles that keep the pending
-- queue under pending_max, or all at once; with nodes or policy (and not
-- pending) straight to per-node queues as Tracekit does without --pending.
function S:dispatch(o)
	self:check_open("dispatch")
	if type(o) ~= "table" then error("bad argument #1 to 'dispatch' (table expected)", 2) end
	if not o.commands and o.mix ~= nil and type(o.mix) ~= "table" then
		error("bad argument #1 to 'dispatch' (mix must be a table of profile = weight)", 2)
	end
	if not o.commands and not o.mix and not o.inputs then
		error("bad argument #1 to 'dispatch' (mix, inputs or commands expected)", 2)
	end
	local mode = o.mode or "pulse"
	if not MODES[mode] then
		error(("bad argument #1 to 'dispatch' (mode must be pulse, fifo or all, got %s)"):format(tostring(mode)), 2)
	end
	if o.policy ~= nil and not POLICIES[o.policy] then
		error(("bad argument #1 to 'dispatch' (unknown policy '%s': rr3, duration-greedy, duration-online)")
			:format(tostring(o.policy)), 2)
	end
	local plan = {
		inputs = o.inputs, outputs = o.outputs, mix = o.mix, seed = o.seed, commands = o.commands,
		total = check_int(o.total, "total", 0, "dispatch") or 0, scale = o.scale, preset = o.preset,
		crf = o.crf, policy = o.policy,
	}
	local ok, tasks, err = pcall(D.plan, plan)
	if not ok then error("bad argument #1 to 'dispatch' (" .. tostring(tasks):gsub("^.-:%d+: ", "") .. ")", 2) end
	if not tasks then return nil, err end
	local log = o.log or function() end
	local ids = {}
	local function submit(t)
		local spec = { table.unpack(t.argv) }
		spec.cpu_units, spec.profile, spec.input, spec.output, spec.node = t.cpu_units, t.profile, t.input,
			t.output, t.node
		ids[#ids + 1] = self:submit(spec)
		kx.progress("dispatch", #ids, #tasks)
	end
	local direct = not o.pending and (o.nodes or o.policy) and not o.commands
	if direct then
		local nodes = o.nodes or { "cloud0", "cloud1", "cloud2" }
		if #nodes == 0 then error("bad argument #1 to 'dispatch' (no nodes)", 2) end
		local online = o.policy == "duration-online" or o.policy == "online-duration"
		local limit = check_int(o.backlog_limit, "backlog_limit", 1, "dispatch") or 1
		local batch = check_int(o.batch_size, "batch_size", 1, "dispatch") or 1
		local pause = check_num(o.dribble_interval, "dribble_interval", 0, 1.0)
		if not online then D.route(tasks, nodes, o.policy) end
		if not online and not o.drip then
			local per = {}
			for _, t in ipairs(tasks) do submit(t); per[t.node] = (per[t.node] or 0) + 1 end
			local parts = {}
			for _, n in ipairs(nodes) do parts[#parts + 1] = ("%s=%d"):format(n, per[n] or 0) end
			log(("enqueued %d tasks: %s"):format(#tasks, table.concat(parts, ", ")))
			return ids
		end
		-- dribbling: batch_size at a time, every dribble_interval, to nodes
		-- whose backlog is under backlog_limit (a task waits, never dropped)
		local i, tag = 1, online and "[online]" or "[drip]"
		while i <= #tasks do
			local backlog = {}
			for _, n in ipairs(nodes) do backlog[n] = self.backend:backlog(n) end
			local sent = 0
			while sent < batch and i <= #tasks do
				local t, node = tasks[i], nil
				if online then
					for _, n in ipairs(nodes) do
						if backlog[n] < limit and (not node or backlog[n] < backlog[node]) then node = n end
					end
				elseif backlog[t.node] < limit then
					node = t.node
				end
				if not node then break end
				t.node = node
				submit(t)
				backlog[node] = backlog[node] + 1
				sent, i = sent + 1, i + 1
			end
			local parts = {}
			for _, n in ipairs(nodes) do parts[#parts + 1] = n .. ":" .. backlog[n] end
			log(("%s batch=%d, total=%d, backlog=%s"):format(tag, sent, #ids, table.concat(parts, ", ")))
			if i <= #tasks then kx.sleep(pause) end
		end
		log(("%s done, total enqueued=%d"):format(tag, #ids))
		return ids
	end
	if mode == "fifo" then
		-- Tracekit's FIFO: batch_size every dribble_interval while the pending
		-- queue is shorter than pending_max
		local max = check_int(o.pending_max, "pending_max", 1, "dispatch") or 6
		local batch = check_int(o.batch_size, "batch_size", 1, "dispatch") or 1
		local pause = check_num(o.dribble_interval, "dribble_interval", 0, 1.0)
		local i = 1
		while i <= #tasks do
			local qlen = self.backend:pending_length()
			local sent = 0
			while sent < batch and i <= #tasks and qlen < max do
				submit(tasks[i])
				qlen, sent, i = qlen + 1, sent + 1, i + 1
			end
			if sent > 0 then log(("[pending] enqueued batch=%d, total=%d, qlen=%d"):format(sent, #ids, qlen)) end
			if i <= #tasks then kx.sleep(pause) end
		end
		log(("[pending] done, total enqueued=%d"):format(#ids))
		return ids
	end
	local size = mode == "pulse" and (check_int(o.pulse_size, "pulse_size", 1, "dispatch") or 10) or #tasks
	local interval = check_num(o.pulse_interval, "pulse_interval", 0, 0.1)
	local spacing = mode == "pulse" and check_num(o.pulse_spacing, "pulse_spacing", 0, 0) or 0
	local i = 1
	while i <= #tasks do
		local sent = 0
		while sent < size and i <= #tasks do
			submit(tasks[i])
			sent, i = sent + 1, i + 1
			if spacing > 0 and sent < size and i <= #tasks then kx.sleep(spacing) end
		end
		if mode == "pulse" then log(("[pending-pulse] enqueued pulse=%d, total=%d"):format(sent, #ids)) end
		if i <= #tasks then kx.sleep(interval) end
	end
	if mode == "pulse" then log(("[pending-pulse] done, total enqueued=%d"):format(#ids)) end
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
