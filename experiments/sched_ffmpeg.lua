-- Tracekit's "complete test flow" on one machine: a redis-server on loopback
-- with a password, two workers as two node ids, the central with a weigher,
-- a 20-task ffmpeg mix from the dispatcher, every task traced through
-- kx.trace, then a summary: makespan, wait (enqueue -> start) per profile,
-- tasks per node.
--   kxrun experiments/sched_ffmpeg.lua [--embedded] [--total N] [--keep] [--out DIR]
-- --embedded runs the same flow in-process, without Redis.  --out DIR keeps
-- every task's wait and run time (results.jsonl, results.csv, report.html)
-- and the trace run (DIR/trace-1: `kxrun report DIR/trace-1` draws it).
local lab = require "kx.lab"
local sched = require "kx.sched"
local client = require "kx.sched.redis.client"

local exp = lab.experiment{
	name = "sched_ffmpeg",
	about = "Tracekit's complete flow (dispatcher, central, two workers, an ffmpeg mix) on kx.sched",
	params = {
		{ "embedded", type = "bool", default = false, help = "in-process, without Redis" },
		{ "total", type = "int", default = 20, help = "tasks in the mix" },
		{ "inputs", type = "int", default = 3, help = "synthetic input videos (1 s, 640x360)" },
		{ "keep", type = "bool", default = false, help = "keep the work directory (inputs, outputs, trace)" },
	},
	metrics = { wait = "s", run = "s" },
	out = false, quiet = true, reps = 1, warmup = 0,
}
local opts = exp.params

local dir = assert(kx.tmpdir("sched-ffmpeg"))
print("work dir: " .. dir)

-- synthetic inputs, as generate_test_videos.py makes them (short and small:
-- the machine is shared)
local gen = require "kx.tools.sched"
assert(gen{ "gen-inputs", "--output", dir .. "/inputs", "--count", tostring(opts.inputs), "--duration", "1",
	"--size", "640x360" } == 0, "gen-inputs failed")

local srv, url
if not opts.embedded then
	local port
	for _ = 1, 10 do
		repeat port = math.random(20000, 60000) until not client.probe("127.0.0.1", port, 1)
		srv = assert(kx.spawn{ "redis-server", "--port", tostring(port), "--bind", "127.0.0.1",
			"--requirepass", "Wsr123", "--dir", dir, "--save", "", stdout = "null", stderr = "null" })
		for _ = 1, 100 do
			if client.probe("127.0.0.1", port, 1) then break end
			if srv:wait(0.02) then srv = nil break end
		end
		if srv then break end
	end
	assert(srv, "redis-server did not start")
	url = ("redis://:Wsr123@127.0.0.1:%d/0"):format(port)
	print("redis: " .. url)
end

-- with --out, the trace run is kept there, one per session of the directory
local trace_dir = dir .. "/trace"
if exp.dir then
	exp:open()
	trace_dir = ("%s/trace-%d"):format(exp.dir, exp.session)
end
local ok, err = pcall(function()
	local s = assert(sched.connect(url))
	local has_trace, trace = pcall(require, "kx.trace")
	local run
	if has_trace then
		run = assert(trace.start{ dir = trace_dir, interval = 0.2, quiet = true })
	else
		print("kx.trace is not here: tasks run untraced")
	end
	-- two nodes of 4 units on this machine; shared binding (cpu weight), as
	-- exclusive pinning would cap a node at the machine's cores
	local workers = {}
	for _, node in ipairs{ "cloud1", "cloud2" } do
		workers[#workers + 1] = kx.go(function()
			s:worker{ node = node, capacity = 4, binding = "shared", cpuweight_per_vcpu = 100,
				reset_capacity = true, trace = run }
		end)
	end
	local central = kx.go(function() s:central{ weigher = "instances", order = "min" } end)
	local t0 = kx.now()
	local ids = assert(s:dispatch{ inputs = dir .. "/inputs", outputs = dir .. "/outputs",
		mix = { fast1080p = 2, medium480p = 3, hevc1080p = 2, light1c = 3 },
		total = opts.total, seed = 20250901, mode = "pulse", pulse_size = 10, pulse_interval = 0.1 })
	local recs = s:drain()
	local wall = kx.now() - t0
	s:close()
	for _, w in ipairs(workers) do w:wait() end
	central:wait()

	-- summary
	local backend = opts.embedded and "embedded" or "redis"
	local by, nodes, first, last, failed = {}, {}, math.huge, 0, 0
	for _, r in ipairs(recs) do
		local b = by[r.profile] or { waits = {} }
		by[r.profile] = b
		local wait = (r.ts_start - r.ts_enqueue) / 1000
		b.waits[#b.waits + 1] = wait
		exp:record{ point = { profile = r.profile }, system = backend,
			values = { wait = wait, run = (r.ts_end - r.ts_start) / 1000 } }
		nodes[r.node] = (nodes[r.node] or 0) + 1
		first, last = math.min(first, r.ts_enqueue), math.max(last, r.ts_end)
		if r.exit_code ~= 0 then failed = failed + 1 end
	end
	print(("%d tasks (%d submitted) on %s, %d failed"):format(#recs, #ids, backend, failed))
	print(("makespan %.2f s (first enqueue to last end); wall %.2f s"):format((last - first) / 1000, wall))
	print(("%-12s %5s %10s %10s %10s"):format("profile", "tasks", "mean wait", "median", "max wait"))
	local names = {}
	for p in pairs(by) do names[#names + 1] = p end
	table.sort(names)
	for _, p in ipairs(names) do
		local w = lab.stats.summary(by[p].waits)
		print(("%-12s %5d %9.2fs %9.2fs %9.2fs"):format(p, w.n, w.mean, w.median, w.max))
	end
	local ns = {}
	for n in pairs(nodes) do ns[#ns + 1] = n end
	table.sort(ns)
	for _, n in ipairs(ns) do print(("node %s: %d tasks"):format(n, nodes[n])) end
	if run then
		run:stop()
		local audit = trace.parse(trace_dir)
		print(("trace: %s (%s)"):format(audit and audit.ok and "parsed, audit ok" or "audit failed", trace_dir))
	end
	assert(#recs == #ids, "every dispatched task has a record")
	assert(failed == 0, "no task failed")
end)
if srv then srv:kill("TERM"); srv:wait(5) end
if not opts.keep then kx.exec{ "rm", "-rf", dir } end
if not ok then error(err, 0) end
exp:finish()
