-- kxrun sched: Tracekit's worker, central and dispatcher on kx.sched, with
-- Tracekit's flags, units, defaults, environment variables and log lines.
local sched = require "kx.sched"

local USAGE = [[
usage: kxrun sched worker     [--redis URL] [--node ID] [--outputs DIR] [--parallel N]
                              [--capacity-units N] [--allocation-ratio F]
                              [--cpu-binding exclusive|shared] [--cpuweight-per-vcpu N]
                              [--reset-capacity] [--clear-queue] [--trace-run DIR]
                              [--heartbeat S] [--lease S] [--quiet]
       kxrun sched central    [--redis URL] [--weigher instances|vcpu|none] [--weigher-order min|max]
                              [--heartbeat S] [--max-attempts N] [--quiet]
       kxrun sched dispatch   [--redis URL] --inputs DIR [--outputs DIR] [--mix "fast1080p=2,..."]
                              [--total N] [--seed N] [--pending] [--pending-mode pulse|fifo|all]
                              [--pulse-size N] [--pulse-interval S] [--pulse-spacing S]
                              [--pending-max N] [--batch-size N] [--dribble-interval S]
                              [--nodes A,B,C] [--policy rr3|duration-greedy|duration-online]
                              [--drip] [--backlog-limit N] [--scale W:H] [--preset P] [--crf N]
                              [--wait] [--quiet]
       kxrun sched submit     [--redis URL] [--cpu-units N] [--node ID] -- CMD ARGS...
       kxrun sched status     [--redis URL]
       kxrun sched run        (worker + central + dispatch in one process, embedded
                              backend unless --redis; takes the flags of all three)
       kxrun sched gen-inputs [--output DIR] [--count N] [--duration S] [--size WxH]
       kxrun sched clear      [--redis URL]   (drop every queue and node of earlier runs;
                              Tracekit's `redis-cli DEL q:pending` clean-up)

URL: redis://[[user]:password@]host[:port][/db][?password=PW&prefix=NAME], default
redis://localhost:6379/0.  Profiles (Tracekit's ffmpeg command lines): fast1080p (2 units),
medium480p (2), hevc1080p (4), light1c (1).  As in Tracekit: --pulse-interval is
seconds between pulses (default 300; "100ms" is read as 0.1 s), tasks inside a pulse
are --pulse-spacing apart (default 1 s), --total 0 makes one task per input, the
worker's node is --node, else $NODE_ID, else the hostname, and its tasks get NODE_ID,
STAGE, RUN_ID and TS_ENQUEUE in their environment.  Without --pending, --nodes or
--policy route tasks straight to per-node queues (rr3 by default); otherwise they
go through the central.  A worker runs until SIGINT/SIGTERM; its tasks go back to
the queue when it dies (heartbeat --heartbeat s, lease --lease s).
]]

local function die(fmt, ...)
	io.stderr:write("kxrun sched: ", fmt:format(...), "\n")
	return 1
end

-- Flags each command takes: true for a switch, false for one with a value.
local COMMON = { redis = false, help = true, quiet = true }
local WORKER = { node = false, outputs = false, parallel = false, ["slots-key"] = false, ["capacity-units"] = false,
	["allocation-ratio"] = false, ["cpu-binding"] = false, ["cpuweight-per-vcpu"] = false,
	["reset-capacity"] = true, ["clear-queue"] = true, ["trace-run"] = false, heartbeat = false, lease = false,
	cpuset = false }
local CENTRAL = { weigher = false, ["weigher-order"] = false, heartbeat = false, ["max-attempts"] = false,
	pending = false, slots = false, ["scan-slots"] = false, ["scan-pending"] = false }
local DISPATCH = { inputs = false, outputs = false, mix = false, total = false, seed = false, pending = true,
	["pending-mode"] = false, ["pulse-size"] = false, ["pulse-interval"] = false, ["pulse-spacing"] = false,
	["pending-max"] = false, ["batch-size"] = false, ["dribble-interval"] = false, nodes = false, policy = false,
	drip = true, ["backlog-limit"] = false, scale = false, preset = false, crf = false, wait = true }
local function merge(...)
	local out = {}
	for _, t in ipairs{ ... } do for k, v in pairs(t) do out[k] = v end end
	return out
end
local FLAGS = {
	worker = merge(COMMON, WORKER), central = merge(COMMON, CENTRAL), dispatch = merge(COMMON, DISPATCH),
	submit = merge(COMMON, { ["cpu-units"] = false, node = false, cpuset = false }), status = COMMON, clear = COMMON,
	run = merge(COMMON, WORKER, CENTRAL, DISPATCH, { embedded = true }),
	["gen-inputs"] = merge(COMMON, { output = false, outputs = false, count = false, duration = false, size = false }),
	_record = COMMON,
}
-- run's --pending is the dispatcher's switch, not the central's queue name
FLAGS.run.pending = true

local function parse(cmd, argv)
	local known = FLAGS[cmd]
	local flags, pos, i = {}, {}, 2
	while i <= #argv do
		local a = argv[i]
		if a == "--" then
			for j = i + 1, #argv do pos[#pos + 1] = argv[j] end
			break
		elseif a == "-h" then
			flags.help = true
		elseif a:match("^%-%-") then
			local k, v = a:match("^%-%-([%w_-]+)=(.*)$")
			k = k or a:sub(3)
			if known[k] == nil then return nil, ("unknown option --%s for %s (see kxrun sched --help)"):format(k, cmd) end
			if v == nil then
				if known[k] then v = true else
					v = argv[i + 1]
					if v == nil then return nil, "option --" .. k .. " needs a value" end
					i = i + 1
				end
			end
			flags[k] = v
		else
			pos[#pos + 1] = a
		end
		i = i + 1
	end
	return flags, pos
end

local function num(flags, k, default)
	local v = flags[k]
	if v == nil then return default end
	local n = tonumber(v)
	if not n or n ~= n then error(("--%s must be a number, got %s"):format(k, v), 0) end
	return n
end

-- Seconds, as Tracekit reads them; "100ms" / "2s" say their unit.
local function seconds(flags, k, default)
	local v = flags[k]
	if v == nil then return default end
	local n, unit = tostring(v):match("^([%d.]+)%s*(m?s?)$")
	n = tonumber(n)
	if not n then error(("--%s must be seconds (e.g. 100, 0.5 or 250ms), got %s"):format(k, v), 0) end
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

local function connect(flags, embedded_ok)
	local url = flags.redis
	if not url and not embedded_ok then url = "redis://localhost:6379/0" end
	local s, err = sched.connect(url)
	if not s then error(err, 0) end
	return s
end

-- The URL without its password, for log lines.
local function shown(url)
	return (tostring(url):gsub("//([^@/]*):[^@/]*@", "//%1:***@"):gsub("password=[^&]*", "password=***"))
end

local function worker_opts(flags)
	local trace
	if flags["trace-run"] then
		trace = assert(require("kx.trace").start{ dir = flags["trace-run"], interval = 0.2, join = true,
			node = flags.node or os.getenv("NODE_ID"), stage = os.getenv("STAGE") })
	end
	return {
		node = flags.node, capacity = num(flags, "capacity-units"), allocation_ratio = num(flags, "allocation-ratio", 1.0),
		parallel = num(flags, "parallel", 0), binding = flags["cpu-binding"] or "exclusive",
		cpuweight_per_vcpu = num(flags, "cpuweight-per-vcpu", 100), reset_capacity = flags["reset-capacity"],
		clear_queue = flags["clear-queue"], trace = trace, cpuset = flags.cpuset,
		heartbeat = num(flags, "heartbeat"), lease = num(flags, "lease"), log = not flags.quiet,
	}, trace
end

local function until_signal(s, what)
	local function stop() s:close() end
	kx.signal("TERM", stop)
	kx.signal("INT", stop)
	what()
end

local function dispatch_opts(flags, cli_pending)
	local nodes
	if flags.nodes then
		nodes = {}
		for n in flags.nodes:gmatch("[^,%s]+") do nodes[#nodes + 1] = n end
	end
	return {
		inputs = flags.inputs, outputs = flags.outputs or "outputs",
		mix = flags.mix and parse_mix(flags.mix) or nil, total = num(flags, "total", 0),
		seed = num(flags, "seed", 0) ~= 0 and num(flags, "seed") or math.floor(kx.time() * 1000),
		mode = flags["pending-mode"] or "pulse", pulse_size = num(flags, "pulse-size", 10),
		pulse_interval = seconds(flags, "pulse-interval", 300), pulse_spacing = seconds(flags, "pulse-spacing", 1),
		pending_max = num(flags, "pending-max", 6), batch_size = num(flags, "batch-size", 1),
		dribble_interval = seconds(flags, "dribble-interval", 1.0), pending = cli_pending or flags.pending,
		nodes = nodes, policy = flags.policy, drip = flags.drip, backlog_limit = num(flags, "backlog-limit", 1),
		scale = flags.scale, preset = flags.preset, crf = num(flags, "crf"),
		log = not flags.quiet and function(line) print(line) io.stdout:flush() end or nil,
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

local commands = {}

function commands.worker(flags)
	local s = connect(flags)
	local opts, trace = worker_opts(flags)
	local node = opts.node or os.getenv("NODE_ID") or "(hostname)"
	if flags["slots-key"] then
		io.stderr:write("kxrun sched: --slots-key is ignored: kx.sched keeps slots in the node's record\n")
	end
	if not flags.quiet then
		print(("Worker node=%s redis=%s parallel=%d binding=%s"):format(opts.node or os.getenv("NODE_ID")
			or io.open("/proc/sys/kernel/hostname"):read("l"), shown(flags.redis or "redis://localhost:6379/0"),
			opts.parallel, opts.binding))
	end
	print(("worker %s: up (binding %s)"):format(node, opts.binding))
	io.stdout:flush()
	until_signal(s, function() s:worker(opts) end)
	if trace then trace:stop() end
	return 0
end

function commands.central(flags)
	local s = connect(flags)
	for _, k in ipairs{ "pending", "slots", "scan-slots" } do
		if flags[k] then io.stderr:write(("kxrun sched: --%s is ignored (kx.sched's keys are its own)\n"):format(k)) end
	end
	if flags["scan-pending"] and num(flags, "scan-pending") ~= 1 then
		return die("central: --scan-pending other than 1 is not supported (strict FIFO: only the head)")
	end
	print(("central: up (weigher %s, order %s)"):format(flags.weigher or "first-fit", flags["weigher-order"] or "min"))
	io.stdout:flush()
	until_signal(s, function()
		s:central{ weigher = flags.weigher, order = flags["weigher-order"], heartbeat = num(flags, "heartbeat"),
			max_attempts = num(flags, "max-attempts"), log = not flags.quiet }
	end)
	return 0
end

function commands.dispatch(flags)
	local s = connect(flags)
	if not flags.inputs then return die("dispatch: --inputs DIR is needed") end
	local ids, err = s:dispatch(dispatch_opts(flags))
	if not ids then return die("%s", err) end
	print(("dispatched %d tasks"):format(#ids))
	if flags.wait then
		local recs, derr = s:drain()
		if not recs then return die("%s", derr) end
		summary(recs)
	end
	return 0
end

function commands.submit(flags, pos)
	local s = connect(flags)
	if #pos == 0 then return die("submit: no command (kxrun sched submit --redis URL -- CMD ARGS)") end
	local spec = { table.unpack(pos) }
	spec.cpu_units = num(flags, "cpu-units", 1)
	spec.node, spec.cpuset = flags.node, flags.cpuset
	print(s:submit(spec))
	return 0
end

function commands.status(flags)
	local s = connect(flags)
	local st = s:status()
	print(("pending: %d   dead letters: %d"):format(st.pending or 0, st.dead or 0))
	if st.blocking then
		print(("head blocking: task %s needs %d units: %s"):format(st.blocking.id, st.blocking.cpu_units, st.blocking.reason))
	end
	print(("%-16s %8s %6s %8s %8s %7s %9s %6s"):format("node", "capacity", "used", "running", "parallel", "queued", "in-flight", "alive"))
	for _, n in ipairs(st.nodes) do
		print(("%-16s %8s %6s %8s %8s %7s %9s %6s"):format(n.id, n.capacity, n.used, n.running, n.parallel,
			n.queued or 0, n.in_flight or 0, tostring(n.alive)))
	end
	return 0
end

function commands.clear(flags)
	local s = connect(flags)
	print(("removed %d keys"):format(s.backend:clear()))
	return 0
end

-- worker + central + dispatch in one process: the embedded backend unless --redis.
function commands.run(flags)
	local s = connect(flags, true)
	if not flags.inputs then return die("run: --inputs DIR is needed") end
	local opts, trace = worker_opts(flags)
	local w = kx.go(function() s:worker(opts) end)
	local c = kx.go(function()
		s:central{ weigher = flags.weigher, order = flags["weigher-order"], log = not flags.quiet }
	end)
	local ids, err = s:dispatch(dispatch_opts(flags, true))
	local recs, derr
	if ids then recs, derr = s:drain() end
	s:close()
	w:wait(); c:wait()
	if trace then trace:stop() end
	if not ids then return die("%s", err) end
	if not recs then return die("%s", derr) end
	summary(recs)
	return 0
end

-- What a dead worker's launcher hands over (see kx.sched.launch): the URL
-- on the first line of stdin, then one finished task per line.  Not for
-- users; the launcher runs it.
commands._record = function()
	local url = io.stdin:read("l")
	local s = connect({ redis = url })
	local n = s.backend:record_orphans(io.stdin:lines())
	if n > 0 then kx.log.warn("kx.sched: recorded %d result(s) of a worker that died", n) end
	s:close()
	return 0
end

commands["gen-inputs"] = function(flags)
	local out = flags.output or flags.outputs or "inputs/ffmpeg"
	local count = num(flags, "count", 3)
	local duration = num(flags, "duration", 2)
	local size = flags.size or "640x360"
	os.execute("mkdir -p '" .. out:gsub("'", "'\\''") .. "'")
	local patterns = { "testsrc", "testsrc2", "smptebars" }
	local noise = { "", ",noise=alls=10:allf=t", ",noise=alls=25:allf=t" }
	for i = 1, count do
		local file = ("%s/input_%02d.mp4"):format(out, i)
		local src = ("%s=duration=%s:size=%s:rate=30"):format(patterns[(i - 1) % 3 + 1], duration, size)
		local code, _, err = kx.exec{ "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", src,
			"-vf", "format=yuv420p" .. noise[(i - 1) // 3 % 3 + 1], "-c:v", "libx264", "-g", "90", "-b:v", "2M", file }
		if code == nil then return die("gen-inputs: ffmpeg is missing (apt-get install ffmpeg): %s", _) end
		if code ~= 0 then return die("gen-inputs: ffmpeg failed: %s", err) end
		kx.progress("gen-inputs", i, count)
		print(file)
	end
	return 0
end

return function(argv)
	local cmd = argv[1]
	if not cmd or cmd == "-h" or cmd == "--help" or cmd == "help" then
		io.write(USAGE)
		return cmd and 0 or 1
	end
	local fn = commands[cmd]
	if not fn then return die("unknown command '%s' (see kxrun sched --help)", cmd) end
	local flags, pos = parse(cmd, argv)
	if not flags then return die("%s", pos) end
	if flags.help then io.write(USAGE) return 0 end
	local ok, r = pcall(fn, flags, pos)
	if not ok then return die("%s: %s", cmd, tostring(r)) end
	return r
end
