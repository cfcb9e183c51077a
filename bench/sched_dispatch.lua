-- kx.sched against Tracekit's scheduler, on one redis-server, in the same run.
--   rate:    no-op tasks placed on 16 nodes: kx.sched's central against
--            Tracekit's scheduler_central.py (its KEYS cap:* path).
--   latency: --tasks tasks --gap apart, enqueue -> the command runs, with
--            real workers binding tasks: `kxrun sched central` and a `kxrun
--            sched worker` process (exclusive cpusets, cgroups) against
--            Tracekit's scheduler_central.py and worker.py (its ffmpeg wrapper
--            and taskset; "ffmpeg" is a stub that notes when it starts).
-- Tracekit's scripts run when --tracekit (or TRACEKIT_DIR) names a Tracekit
-- checkout (the directory with tools/scheduler/, and python3 with Debian's
-- python3-redis and python3-psutil); otherwise a model of its central loop
-- (bench/lib_tracekit_central.lua) and of its worker's pop stand in, and
-- the figures say "model".  `--out DIR` keeps every sample (results.jsonl,
-- results.csv, report.html); `--detail` (or DETAIL=1) splits kx.sched's
-- latency into its hops.
local lab = require "kx.lab"
local sched = require "kx.sched"
local client = require "kx.sched.redis.client"
local here = (arg and arg[0] or "bench/sched_dispatch.lua"):gsub("[^/]*$", "")
local tracekit = dofile(here .. "lib_tracekit_central.lua")

local exp = lab.experiment{
	name = "sched_dispatch",
	about = "kx.sched's dispatch rate and enqueue -> start with real workers, beside Tracekit's scheduler",
	params = {
		{ "n", type = "int", default = tonumber(os.getenv("N")) or 5000,
		  help = "tasks in Tracekit's dispatch-rate run; kx.sched places 6x as many (or N=)" },
		{ "tasks", type = "int", default = 200, help = "tasks in each latency run" },
		{ "gap", type = "duration", default = (tonumber(os.getenv("GAP_MS")) or 20) / 1000,
		  help = "between the tasks of a latency run (or GAP_MS=, in ms)" },
		{ "binding", type = "choice", choices = { "exclusive", "shared" }, default = "exclusive",
		  help = "the kxrun worker's --cpu-binding" },
		{ "tracekit", type = "string", default = os.getenv("TRACEKIT_DIR"), meta = "DIR",
		  help = "a Tracekit checkout: its real scripts run beside (or TRACEKIT_DIR=); without, a model" },
		{ "detail", type = "bool", default = (os.getenv("DETAIL") or "") ~= "",
		  help = "print kx.sched's latency hop by hop (or DETAIL=1)" },
	},
	out = false, quiet = true, reps = 1, warmup = 0,
}
local P = exp.params
local q = lab.stats.quantile

local TK = P.tracekit ~= "" and P.tracekit or nil
if TK then
	if io.open(TK .. "/Tracekit/tools/scheduler/worker.py") then TK = TK .. "/Tracekit" end
	if not io.open(TK .. "/tools/scheduler/scheduler_central.py") then
		io.stderr:write(("kxrun: %s: --tracekit: no tools/scheduler/ in %s\n"):format(arg[0], TK))
		os.exit(2)
	end
end
local PY = io.open("/usr/bin/python3") and "/usr/bin/python3" or "python3"
local N, LOW, GAP = P.n, P.tasks, P.gap
local NODES = 16

local dir = assert(kx.tmpdir("sched-bench"))
local port, srv
for _ = 1, 10 do
	repeat port = math.random(20000, 60000) until not client.probe("127.0.0.1", port, 1)
	srv = assert(kx.spawn{ "redis-server", "--port", tostring(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir, stdout = "null", stderr = "null" })
	for _ = 1, 100 do
		if client.probe("127.0.0.1", port, 1) then break end
		if srv:wait(0.02) then srv = nil break end
	end
	if srv then break end
end
assert(srv, "redis-server did not start")
local url = ("redis://127.0.0.1:%d/0"):format(port)

local c0 = client.new()
assert(c0:open("127.0.0.1", port, 5))
local function call(...)
	local r, err = c0:call(...)
	if r == nil then error(err, 2) end
	return r
end

local node_ids = {}
for i = 1, NODES do node_ids[i] = ("node%02d"):format(i) end

local procs = {}
local function start(spec)
	local p = assert(kx.spawn(spec))
	procs[#procs + 1] = p
	return p
end
local function stop(p, sig)
	p:kill(sig or "TERM")
	if not p:wait(10) then p:kill("KILL") p:wait(5) end
end

-- ---- rate: kx.sched ----------------------------------------------------
local function ours_rate()
	local n = 6 * N
	call("FLUSHALL")
	local P = "kx:sched:"
	for _, id in ipairs(node_ids) do
		call("SADD", P .. "nodes", id)
		call("HSET", P .. "node:" .. id, "capacity", 1000000, "parallel", 0, "running", 0, "used", 0)
		call("SET", P .. "alive:" .. id, 1)
	end
	local batch = {}
	for i = 1, n do
		batch[#batch + 1] = kx.json.encode{ id = "t" .. i, argv = { "true" }, cpu_units = 1, client = "bench" }
		if #batch == 200 or i == n then call("RPUSH", P .. "pending", table.unpack(batch)) batch = {} end
	end
	local s = assert(sched.connect(url))
	local t0 = kx.now()
	local central = kx.go(function() s:central{ heartbeat = 5 } end)
	while call("LLEN", P .. "pending") > 0 do kx.sleep(0.002) end
	local dt = kx.now() - t0
	s:close()
	central:wait()
	return n / dt, n
end

-- ---- rate: Tracekit ----------------------------------------------------
local function tracekit_rate()
	call("FLUSHALL")
	local P = TK and "" or tracekit.PREFIX
	tracekit.setup(call, node_ids, 1000000, P)
	local batch = {}
	for i = 1, N do
		batch[#batch + 1] = kx.json.encode{ id = "t" .. i, input = "in.mp4", output = "out.mp4", cpu_units = 1 }
		if #batch == 200 or i == N then call("RPUSH", P .. "q:pending", table.unpack(batch)) batch = {} end
	end
	if TK then
		local central = start{ PY, TK .. "/tools/scheduler/scheduler_central.py", "--redis", url,
			stdout = dir .. "/tk-central.log", stderr = dir .. "/tk-central.log" }
		-- from its first placement (python's start-up is not its rate)
		while call("LLEN", "q:pending") == N do kx.sleep(0.001) end
		local t0 = kx.now()
		local left = N - 1
		while left > 0 do
			kx.sleep(0.002)
			left = call("LLEN", "q:pending")
		end
		local dt = kx.now() - t0
		stop(central)
		return (N - 1) / dt
	end
	local popped, t_end = 0, nil
	local function counted(...)
		local r = call(...)
		if (...) == "LPOP" then
			popped = popped + 1
			if popped == N then t_end = kx.now() end
		end
		return r
	end
	local t0 = kx.now()
	tracekit.central(counted, function() return popped == N end)
	return N / (t_end - t0)
end

-- ---- latency: kx.sched with real workers ---------------------------------
local OURS = "kx.sched"
local function ours_latency()
	call("FLUSHALL")
	local log = dir .. "/kx-workers.log"
	local central = start{ kx.exe, "sched", "central", "--redis", url, "--quiet", stdout = log, stderr = log }
	local worker = start{ kx.exe, "sched", "worker", "--redis", url, "--node", "b1", "--cpu-binding", P.binding,
		"--quiet", stdout = log, stderr = log }
	local s = assert(sched.connect(url))
	-- the worker is up when its node is
	local deadline = kx.now() + 20
	while #s:status().nodes == 0 do
		assert(kx.now() < deadline, "the kxrun worker did not register")
		kx.sleep(0.05)
	end
	local sent = {}
	for i = 1, LOW do
		local t = kx.time() * 1000
		sent[s:submit{ "true" }] = t
		kx.sleep(GAP)
		kx.progress("kx.sched latency", i, LOW)
	end
	local recs = assert(s:drain())
	s:close()
	stop(worker)
	stop(central)
	-- hop by hop, each in the clock of the machine (one machine here):
	-- the client's enqueue, Redis's placement (ts_dispatch), the worker took
	-- it (ts_taken), the zygote read the request (ts_request), exec
	local lat, bound = {}, 0
	local HOPS = { "placed", "taken", "request", "exec" }
	local parts = { placed = {}, taken = {}, request = {}, exec = {} }
	for _, r in ipairs(recs) do
		local t = { sent[r.id], r.ts_dispatch, r.ts_taken, r.ts_request, r.ts_start }
		local v = { latency = r.ts_start - sent[r.id] }
		lat[#lat + 1] = v.latency
		-- (a worker of an older kxrun, or one that traces, notes fewer)
		for i, h in ipairs(HOPS) do
			if t[i] and t[i + 1] then
				v[h] = t[i + 1] - t[i]
				parts[h][#parts[h] + 1] = v[h]
			end
		end
		if r.cpuset then bound = bound + 1 end
		exp:record{ point = { figure = "enqueue -> start" }, system = OURS, values = v,
			units = { latency = "ms", placed = "ms", taken = "ms", request = "ms", exec = "ms" } }
	end
	if P.detail then
		local f = {}
		for i, h in ipairs(HOPS) do
			f[i] = #parts[h] > 0 and ("%.2f/%.2f"):format(q(parts[h], 0.5), q(parts[h], 0.99)) or "-"
		end
		print(("  kx.sched hops (ms, median/p99): enqueue -> placed %s, placed -> the worker took it %s, "
			.. "-> its zygote read the request %s, -> exec %s"):format(table.unpack(f)))
	end
	return q(lat, 0.5), q(lat, 0.99), bound
end

-- ---- latency: Tracekit ----------------------------------------------------
local function tracekit_latency()
	call("FLUSHALL")
	if TK then
		-- "ffmpeg" on the worker's PATH notes when it starts and what it writes
		local stub = dir .. "/stub"
		assert(kx.mkdir(stub) and kx.mkdir(dir .. "/outputs"))
		local starts = dir .. "/tk-starts"
		assert(kx.write_file(stub .. "/ffmpeg", '#!/bin/bash\necho "${@: -1} $EPOCHREALTIME" >> ' .. starts .. "\n"))
		assert(kx.exec{ "chmod", "+x", stub .. "/ffmpeg" } == 0)
		local env = {}
		for _, k in ipairs{ "HOME", "LANG" } do env[k] = os.getenv(k) end
		env.PATH = stub .. ":/usr/local/bin:/usr/bin:/bin"
		env.NODE_ID, env.RUN_ID = "tk1", "kxrun-bench-" .. port
		local log = dir .. "/tk-workers.log"
		local central = start{ PY, TK .. "/tools/scheduler/scheduler_central.py", "--redis", url,
			stdout = log, stderr = log }
		-- 16 threads: its Python wrapper per task must not make it fall behind
		-- (this measures latency, not its throughput)
		local worker = start{ PY, TK .. "/tools/scheduler/worker.py", "--redis", url, "--capacity-units", "16",
			"--outputs", dir .. "/outputs", env = env, stdout = log, stderr = log }
		local deadline = kx.now() + 20
		while not call("GET", "cap:tk1") do
			assert(kx.now() < deadline, "Tracekit's worker did not register")
			kx.sleep(0.05)
		end
		kx.sleep(0.5)   -- its threads start after it registers
		local sent = {}
		for i = 1, LOW do
			local out = ("%s/outputs/o%04d.mp4"):format(dir, i)
			local t = kx.time() * 1000
			sent[out] = t
			call("RPUSH", "q:pending", kx.json.encode{ input = "in.mp4", output = out, cpu_units = 1,
				scale = "854:480", preset = "veryfast", vcodec = "h264", ts_enqueue = math.floor(t) })
			kx.sleep(GAP)
			kx.progress("Tracekit latency", i, LOW)
		end
		local lat = {}
		deadline = kx.now() + 60
		while #lat < LOW and kx.now() < deadline do
			lat = {}
			local fh = io.open(starts)
			for line in fh and fh:lines() or function() end do
				local out, at = line:match("^(%S+) ([%d.]+)$")
				if out and sent[out] then lat[#lat + 1] = tonumber(at) * 1000 - sent[out] end
			end
			if fh then fh:close() end
			if #lat < LOW then kx.sleep(0.2) end
		end
		stop(worker, "INT")
		stop(central, "INT")
		kx.exec{ "rm", "-rf", TK .. "/logs/" .. env.RUN_ID }
		assert(#lat == LOW, ("Tracekit started %d of %d tasks"):format(#lat, LOW))
		return lat
	end
	tracekit.setup(call, { "n1" }, 4)
	local P = tracekit.PREFIX
	local stopping, lat = false, {}
	local central = kx.go(function() tracekit.central(call, function() return stopping end) end)
	local wc = client.new()
	assert(wc:open("127.0.0.1", port, 5))
	local worker = kx.go(function()
		while #lat < LOW do
			local r = wc:call("BLPOP", P .. "q:n1", 1)
			if r then
				local t = kx.json.decode(r[2])
				lat[#lat + 1] = (kx.now() - t.sent) * 1000
				call("INCRBY", P .. "cap:n1", t.cpu_units)
			end
		end
	end)
	kx.sleep(0.2)
	for i = 1, LOW do
		tracekit.enqueue(call, { id = i, argv = { "true" }, cpu_units = 1, sent = kx.now() })
		kx.sleep(GAP)
	end
	worker:wait()
	stopping = true
	central:wait()
	wc:close()
	return lat
end

local function loadavg()
	local f = io.open("/proc/loadavg")
	local l = f:read("l"):match("^(%S+ %S+ %S+)")
	f:close()
	return l
end

local ok, err = pcall(function()
	print(("load average at the start: %s (%d CPUs)"):format(loadavg(), #require("kx.sched.runner").online_cores()))
	local peer = TK and "Tracekit scheduler_central.py" or "Tracekit's central loop (model)"
	local ours, n = ours_rate()
	local theirs = tracekit_rate()
	for _, r in ipairs{ { OURS, ours }, { peer, theirs } } do
		exp:record{ point = { figure = "dispatch rate" }, system = r[1], values = { rate = r[2] },
			units = { rate = "tasks/s" } }
	end
	print(("dispatch rate, no-op tasks on %d nodes: kx.sched %.0f tasks/s (%d tasks), %s %.0f tasks/s (%d tasks), ratio %.0fx")
		:format(NODES, ours, n, peer, theirs, N, ours / theirs))
	local om, o99, bound = ours_latency()
	local lat = tracekit_latency()
	local tpeer = TK and "Tracekit scheduler_central.py + worker.py" or "Tracekit's loop and a popping worker (model)"
	for _, v in ipairs(lat) do
		exp:record{ point = { figure = "enqueue -> start" }, system = tpeer, values = { latency = v },
			units = { latency = "ms" } }
	end
	local tm, t99 = q(lat, 0.5), q(lat, 0.99)
	print(("enqueue -> start, %d tasks %g ms apart: kx.sched (kxrun sched central + worker, %d of %d tasks bound "
		.. "to %s) median %.2f ms p99 %.2f ms; %s median %.2f ms p99 %.2f ms; median ratio %.0fx")
		:format(LOW, GAP * 1000, bound, LOW, P.binding == "exclusive" and "exclusive cpusets" or "cpu weights",
			om, o99, tpeer, tm, t99, tm / om))
	print(("load average at the end: %s"):format(loadavg()))
end)
for _, p in ipairs(procs) do p:kill("KILL") p:wait(5) end
c0:close()
srv:kill("TERM")
srv:wait(5)
kx.exec{ "rm", "-rf", dir }
if not ok then error(err, 0) end
exp:finish()
