-- kxrun sched: Tracekit's worker, central and dispatcher on kx.sched, with
-- Tracekit's flags, units, defaults, environment variables and log lines,
-- through the flag parser every kxrun tool shares (kx.cli).
local sched = require "kx.sched"

local function F(long, t, help, extra)
	local f = { long, type = t, help = help }
	for k, v in pairs(extra or {}) do f[k] = v end
	return f
end

-- Flags, as Tracekit's scripts take them.
local REDIS = F("redis", "string", "redis://[[user]:password@]host[:port][/db][?password=PW&prefix=NAME]",
	{ arg = "URL", default = "redis://localhost:6379/0" })
local QUIET = F("quiet", "boolean", "no line per decision, task or pulse")
local WORKER = {
	F("node", "string", "the node's id (default: the hostname)", { arg = "ID", env = "NODE_ID" }),
	F("outputs", "string", "accepted (tasks carry their output paths)", { arg = "DIR" }),
	F("parallel", "integer", "slots: tasks at once (0: capacity only)", { default = 0 }),
	F("slots-key", "string", "accepted and ignored (kx.sched keeps slots in the node's record)"),
	F("capacity-units", "integer", "capacity (default floor(ratio x cores))"),
	F("allocation-ratio", "number", "overprovisioning", { arg = "F", default = 1.0 }),
	F("cpu-binding", "string", "", { choices = { "exclusive", "shared" }, default = "exclusive" }),
	F("cpuweight-per-vcpu", "integer", "shared binding's weight per unit", { default = 100 }),
	F("cpuset", "string", "the cores this node hands out (default: the online CPUs)", { arg = "LIST" }),
	F("reset-capacity", "boolean", "also return this node's queued tasks to the head"),
	F("clear-queue", "boolean", "move this node's queued tasks to the dead letters"),
	F("trace-run", "string", "trace every task into this kx.trace run", { arg = "DIR" }),
	F("heartbeat", "number", "seconds between heartbeats (default lease / 3)", { arg = "S" }),
	F("lease", "number", "seconds without a heartbeat before the node's tasks go back", { arg = "S", default = 6 }),
}
local CENTRAL = {
	F("weigher", "string", "instances, vcpu, or none / first-fit / \"\" for first fit", { default = "" }),
	F("weigher-order", "string", "", { choices = { "min", "max" }, default = "min" }),
	F("max-attempts", "integer", "runs lost before a task is recorded failed", { default = 3 }),
	F("slots", "string", "accepted and ignored"), F("scan-slots", "integer", "accepted and ignored"),
	F("scan-pending", "integer", "only 1 (strict FIFO)", { default = 1 }),
}
local CENTRAL_BEAT = F("heartbeat", "number", "seconds between reaper passes", { arg = "S" })
local DISPATCH = {
	F("inputs", "string", "directory of input videos", { arg = "DIR" }),
	F("outputs", "string", "", { arg = "DIR", default = "outputs" }),
	F("mix", "string", "profile weights, e.g. fast1080p=2,light1c=3", { arg = "P=W,..." }),
	F("total", "integer", "tasks (0: one per input)", { default = 0 }),
	F("seed", "integer", "the mix's sequence (0: a new one each time)", { default = 0 }),
	F("pending-mode", "string", "", { choices = { "pulse", "fifo", "all" }, default = "pulse" }),
	F("pulse-size", "integer", "tasks per pulse", { default = 10 }),
	F("pulse-interval", "string", "seconds between pulses (250ms: milliseconds)", { arg = "S", default = "300" }),
	F("pulse-spacing", "string", "seconds between the tasks of a pulse", { arg = "S", default = "1" }),
	F("pending-max", "integer", "fifo: the pending queue's length limit", { default = 6 }),
	F("batch-size", "integer", "fifo, drip: tasks per batch", { default = 1 }),
	F("dribble-interval", "string", "fifo, drip: seconds between batches", { arg = "S", default = "1" }),
	F("nodes", "string", "per-node queues (without --pending)", { arg = "A,B,C" }),
	F("policy", "string", "per-node routing", { choices = { "rr3", "duration-greedy", "lpt-duration",
		"duration-online", "online-duration" } }),
	F("drip", "boolean", "dribble to per-node queues under --backlog-limit"),
	F("backlog-limit", "integer", "drip, duration-online: tasks queued per node", { default = 1 }),
	F("scale", "string", "without --mix (default 1280:720)", { arg = "W:H" }),
	F("preset", "string", "without --mix (default veryfast)"), F("crf", "integer", "without --mix (default 28)"),
}
local PENDING = F("pending", "boolean", "through the central's pending queue")
local WAIT = F("wait", "boolean", "wait for every task and print a summary")

local function join(...)
	local out = {}
	for _, t in ipairs{ ... } do
		for _, f in ipairs(t[1] and type(t[1]) == "table" and t or { t }) do out[#out + 1] = f end
	end
	return out
end

-- Seconds, as Tracekit reads them; "100ms" / "2s" say their unit.
local function seconds(v, name)
	local n, unit = tostring(v):match("^([%d.]+)%s*(m?s?)$")
	n = tonumber(n)
	if not n then error(("--%s must be seconds (e.g. 100, 0.5 or 250ms), got %s"):format(name, v), 0) end
	return unit == "ms" and n / 1000 or n
end

local function parse_mix(s)
	local mix = {}
	for part in s:gmatch("[^,]+") do
		local name, w = part:match("^%s*([%w_]+)%s*=%s*([%d.]+)%s*$")
		if not name then error(("--mix wants name=weight pairs (e.g. fast1080p=2,light1c=3), got '%s'"):format(part), 0) end
		mix[name] = tonumber(w)
	end
	if next(mix) == nil then error("--mix wants name=weight pairs, e.g. fast1080p=2,light1c=3", 0) end
	return mix
end

local function connect(url)
	local s, err = sched.connect(url)
	if not s then error(err, 0) end
	return s
end

-- The URL without its password, for log lines.
local function shown(url)
	return (tostring(url):gsub("//([^@/]*):[^@/]*@", "//%1:***@"):gsub("password=[^&]*", "password=***"))
end

local function hostname()
	local f = io.open("/proc/sys/kernel/hostname")
	local h = f and f:read("l") or "localhost"
	if f then f:close() end
	return h
end

local function worker_opts(o)
	local trace
	if o.trace_run then
		trace = assert(require("kx.trace").start{ dir = o.trace_run, interval = 0.2, join = true,
			node = o.node, stage = os.getenv("STAGE") })
	end
	return {
		node = o.node, capacity = o.capacity_units, allocation_ratio = o.allocation_ratio, parallel = o.parallel,
		binding = o.cpu_binding, cpuweight_per_vcpu = o.cpuweight_per_vcpu, reset_capacity = o.reset_capacity,
		clear_queue = o.clear_queue, trace = trace, cpuset = o.cpuset, heartbeat = o.heartbeat, lease = o.lease,
		log = not o.quiet,
	}, trace
end

local function until_signal(s, what)
	local function stop() s:close() end
	kx.signal("TERM", stop)
	kx.signal("INT", stop)
	what()
end

local function dispatch_opts(o, pending)
	local nodes
	if o.nodes then
		nodes = {}
		for n in o.nodes:gmatch("[^,%s]+") do nodes[#nodes + 1] = n end
	end
	return {
		inputs = o.inputs, outputs = o.outputs, mix = o.mix and parse_mix(o.mix) or nil, total = o.total,
		seed = o.seed ~= 0 and o.seed or math.floor(kx.time() * 1000), mode = o.pending_mode,
		pulse_size = o.pulse_size, pulse_interval = seconds(o.pulse_interval, "pulse-interval"),
		pulse_spacing = seconds(o.pulse_spacing, "pulse-spacing"), pending_max = o.pending_max,
		batch_size = o.batch_size, dribble_interval = seconds(o.dribble_interval, "dribble-interval"),
		pending = pending or o.pending, nodes = nodes, policy = o.policy, drip = o.drip,
		backlog_limit = o.backlog_limit, scale = o.scale, preset = o.preset, crf = o.crf,
		log = not o.quiet and function(line) print(line) io.stdout:flush() end or nil,
	}
end

local function summary(records)
	local by, first, last = {}, math.huge, 0
	for _, r in ipairs(records) do
		local p = r.profile or "command"
		local b = by[p] or { n = 0, wait = 0, run = 0, failed = 0 }
		by[p] = b
		b.n = b.n + 1
		b.wait = b.wait + ((r.ts_start or r.ts_enqueue) - r.ts_enqueue)
		b.run = b.run + ((r.ts_end or 0) - (r.ts_start or 0))
		if (r.exit_code or 1) ~= 0 then b.failed = b.failed + 1 end
		first = math.min(first, r.ts_enqueue)
		last = math.max(last, r.ts_end or 0)
	end
	print(("%-12s %5s %12s %12s %7s"):format("profile", "tasks", "mean wait ms", "mean run ms", "failed"))
	local names = {}
	for p in pairs(by) do names[#names + 1] = p end
	table.sort(names)
	for _, p in ipairs(names) do
		local b = by[p]
		print(("%-12s %5d %12.1f %12.1f %7d"):format(p, b.n, b.wait / b.n, b.run / b.n, b.failed))
	end
	if #records > 0 then print(("makespan: %.3f s for %d tasks"):format((last - first) / 1000, #records)) end
end

local function worker(o)
	local s = connect(o.redis)
	local opts, trace = worker_opts(o)
	if o.slots_key then io.stderr:write("kxrun sched: --slots-key is ignored: kx.sched keeps slots in the node's record\n") end
	if not o.quiet then
		print(("Worker node=%s redis=%s parallel=%d binding=%s"):format(o.node or hostname(), shown(o.redis),
			o.parallel, o.cpu_binding))
	end
	print(("worker %s: up (binding %s)"):format(o.node or "(hostname)", o.cpu_binding))
	io.stdout:flush()
	until_signal(s, function() s:worker(opts) end)
	if trace then trace:stop() end
end

local function central(o, _, tool)
	for _, k in ipairs{ "slots", "scan_slots" } do
		if o[k] then io.stderr:write(("kxrun sched: --%s is ignored (kx.sched's keys are its own)\n"):format(k:gsub("_", "-"))) end
	end
	if o.scan_pending ~= 1 then return tool:usage("central: --scan-pending other than 1 is not supported (strict FIFO)") end
	local s = connect(o.redis)
	print(("central: up (weigher %s, order %s)"):format(o.weigher == "" and "first-fit" or o.weigher, o.weigher_order))
	io.stdout:flush()
	until_signal(s, function()
		s:central{ weigher = o.weigher, order = o.weigher_order, heartbeat = o.heartbeat,
			max_attempts = o.max_attempts, log = not o.quiet }
	end)
end

local function dispatch(o, _, tool)
	if not o.inputs then return tool:usage("dispatch: flag '--inputs' is required") end
	local s = connect(o.redis)
	local ids, err = s:dispatch(dispatch_opts(o))
	if not ids then return nil, err end
	print(("dispatched %d tasks"):format(#ids))
	if o.wait then
		local recs, derr = s:drain()
		if not recs then return nil, derr end
		summary(recs)
	end
end

local function submit(o, args)
	local s = connect(o.redis)
	local spec = { table.unpack(args) }
	spec.cpu_units, spec.node, spec.cpuset = o.cpu_units, o.node, o.cpuset
	print(s:submit(spec))
end

local function status(o)
	local s = connect(o.redis)
	local st = s:status()
	print(("pending: %d   dead letters: %d"):format(st.pending or 0, st.dead or 0))
	if st.blocking then
		print(("head blocking: task %s needs %d units: %s"):format(st.blocking.id, st.blocking.cpu_units, st.blocking.reason))
	end
	print(("%-16s %8s %6s %8s %8s %7s %9s %6s"):format("node", "capacity", "used", "running", "parallel", "queued",
		"in-flight", "alive"))
	for _, n in ipairs(st.nodes) do
		print(("%-16s %8s %6s %8s %8s %7s %9s %6s"):format(n.id, n.capacity, n.used, n.running, n.parallel,
			n.queued or 0, n.in_flight or 0, tostring(n.alive)))
	end
end

local function clear(o)
	local s = connect(o.redis)
	print(("removed %d keys"):format(s.backend:clear()))
end

-- worker + central + dispatch in one process: the embedded backend unless --redis.
local function run(o, _, tool)
	if not o.inputs then return tool:usage("run: flag '--inputs' is required") end
	local s = connect(o.redis)
	local opts, trace = worker_opts(o)
	local w = kx.go(function() s:worker(opts) end)
	local c = kx.go(function() s:central{ weigher = o.weigher, order = o.weigher_order, log = not o.quiet } end)
	local ids, err = s:dispatch(dispatch_opts(o, true))
	local recs, derr
	if ids then recs, derr = s:drain() end
	s:close()
	w:wait(); c:wait()
	if trace then trace:stop() end
	if not ids then return nil, err end
	if not recs then return nil, derr end
	summary(recs)
end

-- What a dead worker's launcher hands over (see kx.sched.launch): the URL
-- on the first line of stdin, then one finished task per line.  Not for
-- users; the launcher runs it.
local function record()
	local s = connect(io.stdin:read("l"))
	local n = s.backend:record_orphans(io.stdin:lines())
	if n > 0 then kx.log.warn("kx.sched: recorded %d result(s) of a worker that died", n) end
	s:close()
end

local function gen_inputs(o)
	local out = o.output or o.outputs or "inputs/ffmpeg"
	os.execute("mkdir -p '" .. out:gsub("'", "'\\''") .. "'")
	local patterns = { "testsrc", "testsrc2", "smptebars" }
	local noise = { "", ",noise=alls=10:allf=t", ",noise=alls=25:allf=t" }
	for i = 1, o.count do
		local file = ("%s/input_%02d.mp4"):format(out, i)
		local src = ("%s=duration=%s:size=%s:rate=30"):format(patterns[(i - 1) % 3 + 1], o.duration, o.size)
		local code, msg, err = kx.exec{ "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", src,
			"-vf", "format=yuv420p" .. noise[(i - 1) // 3 % 3 + 1], "-c:v", "libx264", "-g", "90", "-b:v", "2M", file }
		if code == nil then return nil, "gen-inputs: ffmpeg is missing (apt-get install ffmpeg): " .. tostring(msg) end
		if code ~= 0 then return nil, "gen-inputs: ffmpeg failed: " .. tostring(err) end
		kx.progress("gen-inputs", i, o.count)
		print(file)
	end
end

-- A failure of the world (Redis down, a bad URL) is one line and status 1.
local function guard(fn)
	return function(...)
		local r = table.pack(pcall(fn, ...))
		if not r[1] then return nil, (tostring(r[2]):gsub("^[%w/_.-]+%.lua:%d+: ", ""):gsub("^kx%.sched: ", "")) end
		return table.unpack(r, 2, r.n)
	end
end

local EMBEDDED_REDIS = F("redis", "string", "Redis URL (default: the embedded backend, one process)", { arg = "URL" })

return require("kx.cli").tool{
	name = "sched",
	summary = "Tracekit's cluster scheduler (kx.sched): workers, a central and a dispatcher around Redis.",
	commands = {
		{ name = "worker", summary = "run the tasks placed on a node", flags = join(REDIS, WORKER, QUIET), run = guard(worker) },
		{ name = "central", summary = "place pending tasks on nodes (strict FIFO, first fit or a weigher)",
		  flags = join(REDIS, CENTRAL, CENTRAL_BEAT, QUIET), run = guard(central) },
		{ name = "dispatch", summary = "enqueue tasks as Tracekit's dispatcher does",
		  flags = join(REDIS, DISPATCH, PENDING, WAIT, QUIET), run = guard(dispatch) },
		{ name = "submit", args = { "CMD..." }, summary = "enqueue one command",
		  flags = join(REDIS, F("cpu-units", "integer", "", { default = 1 }),
			F("node", "string", "straight to this node's queue", { arg = "ID" }),
			F("cpuset", "string", "run it on these cores", { arg = "LIST" })), run = guard(submit) },
		{ name = "status", summary = "queues, capacity per node, in flight, the blocking head",
		  flags = { REDIS }, run = guard(status) },
		{ name = "clear", summary = "drop every queue and node of earlier runs (Tracekit's redis-cli DEL q:pending)",
		  flags = { REDIS }, run = guard(clear) },
		{ name = "run", summary = "worker + central + dispatch in one process",
		  flags = join(EMBEDDED_REDIS, WORKER, CENTRAL, DISPATCH, QUIET), run = guard(run) },
		{ name = "gen-inputs", summary = "synthetic input videos for the profiles",
		  flags = { F("output", "string", "", { arg = "DIR", default = "inputs/ffmpeg" }),
			F("outputs", "string", "the same as --output", { arg = "DIR" }),
			F("count", "integer", "", { default = 3 }), F("duration", "number", "seconds", { default = 2 }),
			F("size", "string", "", { arg = "WxH", default = "640x360" }) }, run = guard(gen_inputs) },
		{ name = "_record", summary = "(run by a dead worker's launcher)", run = guard(record) },
	},
	epilog = [[
As in Tracekit: --pulse-interval is seconds between pulses (default 300; "100ms" is
0.1 s), tasks inside a pulse are --pulse-spacing apart (default 1 s), --total 0 makes
one task per input, the worker's node is --node, else $NODE_ID, else the hostname,
and its tasks get NODE_ID, STAGE, RUN_ID and TS_ENQUEUE in their environment.
Without --pending, --nodes or --policy route tasks straight to per-node queues (rr3
by default); otherwise they go through the central.  Profiles (Tracekit's ffmpeg
command lines): fast1080p (2 units), medium480p (2), hevc1080p (4), light1c (1).
A worker runs until SIGINT/SIGTERM; its tasks go back to the queue when it dies.]],
}
