-- quickstart.lua: a first tour of kxrun, on embedded defaults (no Redis, no
-- GPU, no RDMA needed).  Run it with `make run` or `./kxrun experiments/quickstart.lua`.

print(("kxrun %s  (%s)"):format(kx.version, _VERSION))

-- 1. The core: a few processes started concurrently, waited for, tabulated.
local jobs = {
	{ name = "sleep 0.2", argv = { "sleep", "0.2" } },
	{ name = "sh loop", argv = { "sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done" } },
	{ name = "ls /", argv = { "ls", "/" }, stdout = "null" },
	{ name = "false", argv = { "false" } },
}
local t0 = kx.now()
local tasks = {}
for i, job in ipairs(jobs) do
	tasks[i] = kx.go(function()
		local argv = { table.unpack(job.argv) }
		argv.stdout = job.stdout
		local started = kx.now()
		local p = assert(kx.spawn(argv))
		local st = p:wait()
		return { name = job.name, pid = p.pid, status = st.code or ("signal " .. st.signal),
			seconds = kx.now() - started }
	end)
end
print(("\n%-10s %8s %8s %8s"):format("job", "pid", "status", "seconds"))
for _, t in ipairs(tasks) do
	local ok, r = t:wait()
	assert(ok, r)
	print(("%-10s %8d %8s %8.3f"):format(r.name, r.pid, tostring(r.status), r.seconds))
end
print(("all %d jobs in %.3f s (run concurrently)"):format(#jobs, kx.now() - t0))

-- 1b. kx.trace: the same kind of work, traced: invocation records, samples,
-- an audit of the files.
do
	local trace = require "kx.trace"
	local dir = os.tmpname(); os.remove(dir)
	local run = assert(trace.start{ dir = dir, interval = 0.02 })
	local recs = {}
	local ts = {}
	for i, cmd in ipairs{ "sleep 0.1", "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done" } do
		ts[i] = kx.go(function() return assert(run:exec{ "sh", "-c", cmd, trace_id = "qs" .. i }) end)
	end
	for i = 1, #ts do local _, r = ts[i]:wait(); recs[i] = r end
	run:stop()
	local audit = assert(trace.parse(dir))
	print(("\ntrace: %d invocations (%s), audit %s")
		:format(#recs, table.concat((function() local o = {} for i, r in ipairs(recs) do
			o[i] = ("%s %d ms, %.0f ms CPU"):format(r.trace_id, r.ts_end - r.ts_start, r.cpu_ms) end return o end)(), "; "),
		audit.ok and "PASS" or "FAIL"))
	os.execute("rm -rf " .. dir)
end

-- 2. kx.gpu: a time-limited partition on whatever OpenCL device exists (PoCL's
-- CPU device where there is no GPU), in a private ledger, released at scope end.
do
	local gpu = require "kx.gpu"
	local state = os.tmpname()
	os.remove(state)
	gpu.state_dir(state)
	local devices, err = gpu.devices()
	if not devices or #devices == 0 then
		print("\ngpu: no OpenCL device (" .. tostring(err) .. "); skipped")
	else
		local d = devices[1]
		local p <close> = assert(gpu.create{ device = 0, memory = 0.25, duration = 60 })
		print(("\ngpu: %s on device 0 (%s, %d MB), %d MB for %.0f s; %.2f%% still available")
			:format(p.id, d.name, d.memory // 2^20, p.bytes // 2^20, p:remaining(), gpu.available(0)))
	end
	os.execute("rm -rf " .. state)
end

-- 3. OpenDC export: a tiny CTS trace -> tasks.parquet + fragments.parquet, verified.
do
	local opendc = require "kx.opendc"
	local dir = os.tmpname(); os.remove(dir); os.execute("mkdir -p " .. dir .. "/CTS")
	local function put(name, text)
		local f = assert(io.open(dir .. "/CTS/" .. name, "w")); f:write(text); f:close()
	end
	put("nodes.json", '{"node_id":"n1","cpu_cores":4,"mem_mb":8192,"cpu_freq_mhz":2400}')
	put("invocations.jsonl", '{"trace_id":"job-1","pid":100,"ts_enqueue":900,"ts_start":1000,"ts_end":1700}\n')
	local rows = {}
	for t = 1200, 1600, 200 do
		rows[#rows + 1] = string.format('{"ts_ms":%d,"pid":100,"dt_ms":200,"cpu_ms":%d,"rss_kb":20480}', t, t // 10)
	end
	put("proc_metrics.jsonl", table.concat(rows, "\n") .. "\n")
	local s = assert(opendc.export(dir, dir .. "/opendc"))
	local v = assert(opendc.verify(dir .. "/opendc"))
	print(("opendc: %d task, %d fragments -> tasks.parquet, verified (%d fragments)")
		:format(s.tasks, s.fragments, v.fragments))
	os.execute("rm -rf " .. dir)
end

-- 4. kx.vtime: `sleep 0.5` in virtual time, 10 ms per round; the rounds it takes
-- do not depend on how loaded the machine is.
do
	local vtime = require "kx.vtime"
	local exp = assert(vtime.experiment{ step = 10e6, backend = "signal", slice = 0.02 })
	local p = assert(exp:spawn({ "sleep", "0.5" }))
	exp:freeze()
	local t0 = kx.now()
	while p:alive() and exp.rounds < 100 do exp:advance(1) end
	print(("vtime: sleep 0.5 ended in round %d at virtual %.3f s (%.3f s real)")
		:format(exp.rounds, p:now() / 1e9, kx.now() - t0))
	exp:stop()
end

-- 4b. Kronos's flow: a tracer process registers its command with the
-- orchestrator's experiment, which advances it in rounds; the tracer prints
-- the command's output and exits with its status.
do
	local kronos = require "kx.kronos"
	local dir = os.tmpname(); os.remove(dir); os.execute("mkdir -p " .. dir)
	local sock = dir .. "/vtime.sock"
	local ok, err = kronos.initializeExp(1, { step = 10e6, backend = "auto", sock = sock })
	if not ok then
		print("\nkronos: " .. tostring(err) .. "; skipped")
	else
		local tr = assert(kx.spawn{ kx.exe, "vtime", "tracer", "-c",
			"sh -c 'sleep 0.2; echo slept 0.2 s virtual'", "-r", "1", "-i", "1",
			env = { KXRUN_VTIME_SOCK = sock }, stdout = "pipe" })
		local t0 = kx.now()
		assert(kronos.synchronizeAndFreeze(10))
		kronos.progressBy(10e6, 30)
		local vt = kronos.getCurrentTimeTracer(1)
		kronos.stopExp()
		local st = tr:wait(5) or {}
		print(("kronos: tracer said %q, exit %s, command ended at virtual %.3f s (%.3f s real)")
			:format((tr.stdout:read("a"):gsub("\n$", "")), tostring(st.code), vt / 1e9, kx.now() - t0))
	end
	os.execute("rm -rf " .. dir)
end

-- 5. kx.rfork: this process's Lua state, resumed in another process that
-- pulls its memory lazily (here on loopback; any host with the same kxrun).
do
	local rfork = require "kx.rfork"
	local words = { "virtual", "time", "traces", "partitions", "forks" }
	local h, err = rfork.prepare{ listen = "127.0.0.1:0", idle = 30 }
	if h and h.child then
		-- the child: the parent's table as it was at prepare, a fresh loop
		local code = kx.exec{ "true" }
		io.write(("rfork: child %d sees %d words, last %q; kx.exec in it: %d\n")
			:format(h.index, #words, words[#words], code))
		os.exit(0)
	end
	if not h then
		print("rfork: " .. tostring(err) .. "; skipped")
	else
		words[#words + 1] = "after prepare"   -- the child must not see this
		local t0 = kx.now()
		local code, out, errs = kx.exec{ kx.exe, "rfork", "resume", h.address, h.id, h.key }
		if code == 0 then
			io.write(out)
			print(("rfork: resumed and finished in %.3f s"):format(kx.now() - t0))
		else
			print(("rfork: resume failed (%s); skipped"):format((tostring(errs):gsub("%s+$", ""))))
		end
		h:close()
	end
end
