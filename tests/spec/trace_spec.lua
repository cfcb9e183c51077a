-- kx.trace with known workloads and known answers.
local trace = require "kx.trace"

local function tmpdir() return assert(kx.tmpdir("trace-spec")) end

local function lines(path)
	local out = {}
	local f = io.open(path)
	if not f then return out end
	for l in f:lines() do out[#out + 1] = assert(kx.json.decode(l)) end
	f:close()
	return out
end

local need = dofile((os.getenv("ROOT") or ".") .. "/tests/need.lua")

-- trace.start for a test: nil (the test pending with the probe's reason)
-- when eBPF is asked for and the machine lacks it (tests/features.sh bpf:
-- root, BTF, the bpf() call); where it has it, a run that cannot load the
-- program fails the test
local function start_run(opts)
	if opts.source == "ebpf" and not need("bpf") then return nil end
	local run, err = trace.start(opts)
	assert(run, ("trace.start{source=%s}: %s"):format(tostring(opts.source), tostring(err)))
	assert.are.equal(opts.source or run.source, run.source)
	return run
end

describe("kx.trace", function()
	local dir
	before_each(function() dir = tmpdir() end)
	after_each(function() os.execute("rm -rf " .. dir) end)

	-- tests/trace/trace_burn.c: burns a known amount of CPU and prints the
	-- kernel's own figure (rusage) for the process that burnt it
	local burner = (os.getenv("ROOT") or ".") .. "/" .. (os.getenv("BUILD") or "build")
		.. "/tests/trace/trace_burn"
	local function burn(run, ms, threads, mode)
		local out = dir .. "/burn-" .. mode .. ".txt"
		local rec = assert(run:exec{ burner, tostring(ms), tostring(threads), mode, stdout = out })
		local pid, cpu = io.open(out):read("a"):match("pid=(%d+) cpu_ms=([%d.]+)")
		assert.is_not_nil(pid, "the burner printed nothing")
		return rec, tonumber(pid), tonumber(cpu)
	end
	local function rows_cpu(path)
		local by_pid, total = {}, 0
		for _, r in ipairs(lines(path)) do
			by_pid[r.pid] = (by_pid[r.pid] or 0) + r.cpu_ms
			total = total + r.cpu_ms
		end
		return by_pid, total
	end
	local function within(got, want, what)
		assert.is_true(math.abs(got - want) <= 0.02 * want,
			("%s: recorded %.1f ms, kernel %.1f ms"):format(what, got, want))
	end

	for _, source in ipairs{ "proc", "ebpf" } do
		it("adds a launched command's CPU up to the kernel's figure within 2% (" .. source .. ")", function()
			local run = start_run{ dir = dir .. "/run", interval = 0.05, source = source }
			if not run then
				return
			end
			local rec, pid, kernel = burn(run, 600, 1, "self")
			run:stop()
			assert.are.equal(rec.pid, pid)
			within(rec.cpu_ms, kernel, "invocation cpu_ms")
			local by_pid = rows_cpu(dir .. "/run/raw/proc_metrics.jsonl")
			within(by_pid[pid], kernel, "sum of its proc_metrics rows")
			assert.are.equal(0, rec.exit_code)
			assert.is_true(rec.ts_enqueue <= rec.ts_start and rec.ts_start <= rec.ts_end)
		end)
	end

	-- a descendant's threads end three ways: joined, killed by exit_group
	-- while burning, or outliving the leader thread (pthread_exit)
	for _, mode in ipairs{ "join", "group", "leader" } do
		it("records a descendant's exact CPU at exit, threads ending by " .. mode .. " (eBPF)", function()
			local run = start_run{ dir = dir .. "/run", interval = 0.05, source = "ebpf" }
			if not run then
				return
			end
			local rec, pid, kernel = burn(run, 250, 3, mode)
			run:stop()
			local by_pid, total = rows_cpu(dir .. "/run/raw/proc_metrics.jsonl")
			within(by_pid[pid] or 0, kernel, "the descendant's rows")
			local ended
			for _, p in ipairs(lines(dir .. "/run/raw/procs.jsonl")) do
				if p.pid == pid then ended = p end
			end
			assert.is_not_nil(ended, "no end for the descendant")
			assert.are.equal(rec.pid, ended.ppid)
			within(ended.cpu_ms, kernel, "procs.jsonl cpu_ms")
			-- the whole tree's rows: each CPU millisecond counted once
			within(total, rec.cpu_ms, "all rows of the tree")
		end)
	end

	it("adds a multithreaded ffmpeg's CPU up to the kernel's figure within 2% (eBPF)", function()
		if not need("ffmpeg") then return end
		local run = start_run{ dir = dir .. "/run", interval = 0.05, source = "ebpf" }
		if not run then
			return
		end
		local rec = assert(run:exec{ "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
			"testsrc=duration=2:size=320x240:rate=25", "-c:v", "libx264", "-threads", "2",
			dir .. "/out.mp4" })
		run:stop()
		assert.are.equal(0, rec.exit_code)
		local by_pid = rows_cpu(dir .. "/run/raw/proc_metrics.jsonl")
		within(by_pid[rec.pid], rec.cpu_ms, "ffmpeg's rows against wait4")
	end)

	it("reads only processes that ran: a sleeper gets a row a second, a burner one a tick (eBPF)", function()
		local run = start_run{ dir = dir .. "/run", interval = 0.02, source = "ebpf" }
		if not run then
			return
		end
		local out = dir .. "/burn.txt"
		local rec = assert(run:exec{ "sh", "-c", "sleep 1.5 & " .. burner .. " 400 1 self > " .. out .. "; wait" })
		run:stop()
		local bpid, kernel = io.open(out):read("a"):match("pid=(%d+) cpu_ms=([%d.]+)")
		bpid, kernel = tonumber(bpid), tonumber(kernel)
		local spid
		for _, p in ipairs(lines(dir .. "/run/raw/procs.jsonl")) do
			if p.comm == "sleep" and p.ppid == rec.pid then spid = p.pid end
		end
		assert.is_not_nil(spid)
		local rows, cpu, covered = {}, {}, 0
		for _, r in ipairs(lines(dir .. "/run/raw/proc_metrics.jsonl")) do
			rows[r.pid] = (rows[r.pid] or 0) + 1
			cpu[r.pid] = (cpu[r.pid] or 0) + r.cpu_ms
			if r.pid == spid then covered = covered + r.dt_ms end
		end
		assert.is_true(rows[spid] <= 5, "the sleeper got " .. rows[spid] .. " rows")
		assert.is_true(rows[spid] >= 2)
		-- its rows still cover its whole life, and the burner's CPU is whole
		assert.is_true(covered >= 1450, "rows cover " .. covered .. " ms")
		assert.is_true(rows[bpid] >= 8, "the burner got " .. rows[bpid] .. " rows")
		within(cpu[bpid], kernel, "the burner's rows")
	end)

	it("finds processes by name: one already running, and a short one from its exec (eBPF)", function()
		local prog = dir .. "/kxmatchsleep"
		assert(os.execute("cp /bin/sleep " .. prog))
		local before = kx.spawn{ prog, "0.8" }
		for _ = 1, 200 do   -- exec'd, so that it is found by name (a loaded machine is slow)
			local f = io.open("/proc/" .. before.pid .. "/comm")
			local comm = f and f:read("l")
			if f then f:close() end
			if comm == "kxmatchsleep" then break end
			kx.sleep(0.01)
		end
		local run = start_run{ dir = dir .. "/run", interval = 0.5, source = "ebpf",
			match = "^kxmatchsleep$" }
		if not run then
			before:kill()
			return
		end
		kx.sleep(0.05)
		-- lives 30 ms, far less than the interval: only its exec can reveal it
		local short = kx.spawn{ prog, "0.03" }
		short:wait()
		before:wait()
		kx.sleep(0.1)
		run:stop()
		local ended = {}
		for _, p in ipairs(lines(dir .. "/run/raw/procs.jsonl")) do ended[p.pid] = p end
		assert.is_not_nil(ended[before.pid], "the running one was not found")
		assert.is_not_nil(ended[short.pid], "the short one was not found")
		assert.are.equal("kxmatchsleep", ended[short.pid].comm)
		assert.is_true(ended[short.pid]["end"] - ended[short.pid].start >= 25)
	end)

	it("follows a descendant whose leader thread left first (/proc)", function()
		-- its stat says Z while its other threads still burn
		local run = assert(trace.start{ dir = dir .. "/run", interval = 0.02, source = "proc" })
		local _, pid, kernel = burn(run, 300, 3, "leader")
		run:stop()
		local by_pid = rows_cpu(dir .. "/run/raw/proc_metrics.jsonl")
		-- /proc loses at most the last interval of a descendant
		assert.is_true((by_pid[pid] or 0) >= 0.7 * kernel,
			("rows %.1f ms of %.1f ms"):format(by_pid[pid] or 0, kernel))
		local ended = false
		for _, p in ipairs(lines(dir .. "/run/raw/procs.jsonl")) do ended = ended or p.pid == pid end
		assert.is_true(ended)
	end)

	it("records every one of 200 short commands with its start and end", function()
		local run = assert(trace.start{ dir = dir .. "/run", interval = 0.2 })
		local tasks = {}
		for i = 1, 200 do
			tasks[i] = kx.go(function()
				return assert(run:exec{ "sh", "-c", "sleep 0.005", trace_id = "s" .. i })
			end)
		end
		for i = 1, 200 do assert.is_true((tasks[i]:wait())) end
		run:stop()
		local inv = lines(dir .. "/run/raw/invocations.jsonl")
		assert.are.equal(200, #inv)
		local ends = {}
		for _, p in ipairs(lines(dir .. "/run/raw/procs.jsonl")) do ends[p.pid] = p["end"] end
		for _, r in ipairs(inv) do
			assert.is_true(r.ts_start <= r.ts_end)
			assert.is_not_nil(ends[r.pid], "no end for " .. r.trace_id)
		end
	end)

	it("records 200 descendants of 5 ms each with start and end (eBPF source)", function()
		local run = start_run{ dir = dir .. "/run", interval = 0.2, source = "ebpf" }
		if not run then
			return
		end
		assert.are.equal("ebpf", run.source)
		local rec = assert(run:exec{ "sh", "-c", "for i in $(seq 200); do sleep 0.005 & done; wait" })
		run:stop()
		local n = 0
		for _, p in ipairs(lines(dir .. "/run/raw/procs.jsonl")) do
			if p.comm == "sleep" and p.ppid == rec.pid then
				assert.is_true(p.start <= p["end"])
				n = n + 1
			end
		end
		assert.are.equal(200, n)
		assert.is_true(trace.parse(dir .. "/run").ok)
	end)

	it("samples from /proc alone when asked to", function()
		local run = assert(trace.start{ dir = dir .. "/run", interval = 0.02, source = "proc" })
		assert.are.equal("proc", run.source)
		local rec = assert(run:exec{ "sh", "-c", "sleep 0.2 & wait" })
		run:stop()
		local kids, comm = 0, nil
		for _, p in ipairs(lines(dir .. "/run/raw/procs.jsonl")) do
			if p.ppid == rec.pid then kids = kids + 1 end
			if p.pid == rec.pid then comm = p.comm end
		end
		assert.are.equal(1, kids)
		-- the command's own name, not that of the kxrun it was forked from
		assert.are.equal("sh", comm)
	end)

	it("follows the descendants of a traced shell", function()
		local run = assert(trace.start{ dir = dir .. "/run", interval = 0.05 })
		local rec = assert(run:exec{ "sh", "-c", "sleep 0.4 & sleep 0.4 & wait" })
		run:stop()
		local kids = 0
		for _, p in ipairs(lines(dir .. "/run/raw/procs.jsonl")) do
			if p.ppid == rec.pid and p.comm == "sleep" then kids = kids + 1 end
		end
		assert.are.equal(2, kids)
		local audit = assert(trace.parse(dir .. "/run"))
		assert.is_true(audit.ok, kx.json.encode(audit))
	end)

	it("watches an existing process, and refuses one that does not exist", function()
		local run = assert(trace.start{ dir = dir .. "/run", interval = 0.02 })
		local p = kx.spawn{ "sleep", "0.3" }
		assert.is_true(run:watch(p.pid))
		local ok, err = run:watch(4194000)
		assert.is_nil(ok)
		assert.matches("no process", err)
		p:wait()
		kx.sleep(0.05)
		run:stop()
		local seen = false
		for _, r in ipairs(lines(dir .. "/run/raw/proc_metrics.jsonl")) do
			seen = seen or r.pid == p.pid
		end
		assert.is_true(seen)
	end)

	for _, source in ipairs{ "proc", "ebpf" } do
		it("watches a process with the children it already has (" .. source .. ")", function()
			local p = kx.spawn{ "sh", "-c", "sleep 0.6 & sleep 0.6 & wait" }
			for _ = 1, 200 do   -- its children are up (exec'd) before it is watched
				local f = io.open("/proc/" .. p.pid .. "/task/" .. p.pid .. "/children")
				local kids = {}
				for pid in (f and f:read("a") or ""):gmatch("%d+") do
					local c = io.open("/proc/" .. pid .. "/comm")
					if c then kids[#kids + 1] = c:read("l"); c:close() end
				end
				if f then f:close() end
				if #kids == 2 and kids[1] == "sleep" and kids[2] == "sleep" then break end
				kx.sleep(0.01)
			end
			local run = start_run{ dir = dir .. "/run", interval = 0.05, source = source }
			if not run then
				p:kill()
				return
			end
			assert.is_true(run:watch(p.pid))
			p:wait()
			kx.sleep(0.1)
			run:stop()
			local kids = 0
			for _, q in ipairs(lines(dir .. "/run/raw/procs.jsonl")) do
				if q.ppid == p.pid and q.comm == "sleep" then kids = kids + 1 end
			end
			assert.are.equal(2, kids)
		end)
	end

	it("ends a watched process that had ended already, from /proc, though no exit event comes (eBPF)", function()
		-- `sleep 0.05` ends as a child of a process that never reaps it
		local p = kx.spawn{ "sh", "-c", "sleep 0.05 & exec sleep 3" }
		local zombie
		for _ = 1, 500 do
			local f = io.open("/proc/" .. p.pid .. "/task/" .. p.pid .. "/children")
			local kid = f and tonumber(f:read("a"):match("%d+"))
			if f then f:close() end
			local st = kid and io.open("/proc/" .. kid .. "/stat")
			if st then
				if (st:read("a") or ""):match("%) Z ") then zombie = kid end
				st:close()
			end
			if zombie then break end
			kx.sleep(0.01)
		end
		assert.is_not_nil(zombie, "no zombie to watch")
		local run = start_run{ dir = dir .. "/run", interval = 0.05, source = "ebpf" }
		if not run then
			p:kill()
			return
		end
		assert.is_true(run:watch(zombie))
		local ended
		for _ = 1, 300 do   -- TRACE_EXIT_WAIT_MS (1 s) and a few ticks
			kx.sleep(0.01)
			for _, q in ipairs(lines(dir .. "/run/raw/procs.jsonl")) do
				if q.pid == zombie then ended = q end
			end
			if ended then break end
		end
		run:stop()
		p:kill()
		assert.is_not_nil(ended, "the ended process was not ended before the run stopped")
		assert.is_true(ended["end"] >= ended.start)
		-- its rows lie within its life (the end is when it was seen ended)
		for _, r in ipairs(lines(dir .. "/run/raw/proc_metrics.jsonl")) do
			if r.pid == zombie then assert.is_true(r.ts_ms <= ended["end"]) end
		end
	end)

	it("refuses an unusable output directory before starting anything", function()
		local run, err = trace.start{ dir = "/proc/version/run" }
		assert.is_nil(run)
		assert.matches("cannot create", err)
		assert.has_error(function() trace.start{ dir = dir, interval = 0.001 } end)
		assert.has_error(function() trace.start{ dir = dir, source = "magic" } end)
	end)

	it("refuses a second run on a directory whose run is live, not one whose run stopped", function()
		local run = assert(trace.start{ dir = dir .. "/run", source = "proc" })
		local again, err = trace.start{ dir = dir .. "/run", source = "proc" }
		assert.is_nil(again)
		assert.matches("already writes to .*process %d+", err)
		local self_pid = tonumber(io.open("/proc/self/stat"):read("a"):match("^%d+"))
		assert.are.equal(self_pid, trace.owner(dir .. "/run"))
		run:stop()
		assert.is_nil(trace.owner(dir .. "/run"))
		assert(trace.start{ dir = dir .. "/run", source = "proc" }):stop()
	end)

	it("checks every option before anything starts, and a failed start leaves nothing behind", function()
		local function listing(d)
			local p = io.popen("cd " .. d .. " 2>/dev/null && find . | sort")
			local out = p:read("a")
			p:close()
			return out
		end
		local d = dir .. "/new/run"
		for _, opts in ipairs{ { interval = math.huge }, { interval = 0 / 0 }, { interval = -1 },
				{ interval = "1" }, { node = 5 }, { stage = {} }, { run_id = 1 }, { match = 7 } } do
			opts.dir = d
			assert.has_error(function() trace.start(opts) end)
			assert.are.equal("", listing(dir .. "/new"), "a refused start left files: " .. tostring(opts.interval))
		end
		local run, err = trace.start{ dir = d, match = "((" }
		assert.is_nil(run)
		assert.matches("bad match pattern '%(%('", err)
		assert.are.equal("", listing(dir .. "/new"), "a bad match left files")
		-- in a directory that exists, nothing new either
		assert(os.execute("mkdir -p " .. d .. " && echo x > " .. d .. "/mine"))
		local before = listing(d)
		assert.is_nil((trace.start{ dir = d, match = "((" }))
		assert.has_error(function() trace.start{ dir = d, interval = math.huge } end)
		assert.are.equal(before, listing(d))
		assert.is_nil(trace.owner(d))
		-- exec's fields are checked before the command runs
		run = assert(trace.start{ dir = d, source = "proc" })
		assert.has_error(function() run:exec{ "touch", dir .. "/ran", trace_id = 5 } end)
		assert.has_error(function() run:exec{ "touch", dir .. "/ran", ts_enqueue = "abc" } end)
		assert.has_error(function() run:exec{ "touch", dir .. "/ran", ts_enqueue = math.huge } end)
		-- named by the caller's argument and field (they read "bad argument
		-- #-2 to 'launch'", or a table cwd was silently ignored)
		assert.has_error(function() run:exec{ "touch", dir .. "/ran", cwd = {} } end,
			"bad argument #1 to 'exec' (field 'cwd': string expected, got table)")
		assert.has_error(function() run:exec{ "touch", dir .. "/ran", stdout = 1 } end,
			"bad argument #1 to 'exec' (field 'stdout': string expected, got number)")
		assert.has_error(function() run:exec{ "touch", dir .. "/ran", env = { A = {} } } end,
			"bad argument #1 to 'exec' (field 'env': A = table: a name and a string or false expected)")
		assert.has_error(function() run:exec{ "touch", dir .. "/ran", env = "A=1" } end,
			"bad argument #1 to 'exec' (field 'env': table expected, got string)")
		run:stop()
		assert.is_nil(io.open(dir .. "/ran"), "a refused exec ran its command")
	end)

	it("returns nil and a message for a program that does not exist", function()
		local run = assert(trace.start{ dir = dir .. "/run" })
		local rec, err = run:exec{ "/no/such/program" }
		run:stop()
		assert.is_nil(rec)
		assert.matches("No such file", err)
		-- a stopped run is a closed handle: using it raises (liolib's rule)
		assert.has_error(function() run:exec{ "true" } end)
		assert.has_error(function() run:watch(1) end)
		assert.is_true(run:stop())
	end)

	it("finds planted problems in a hand-made trace directory", function()
		local d = dir .. "/planted"
		os.execute("mkdir -p " .. d .. "/raw")
		local function put(name, text) local f = io.open(d .. "/" .. name, "w") f:write(text) f:close() end
		put("run.json", kx.json.encode{ node = trace.node_facts("n1", "edge") })
		put("raw/invocations.jsonl", table.concat({
			'{"trace_id":"a","pid":10,"node_id":"n1","argv":["x"],"ts_enqueue":100,"ts_start":200,"ts_end":900,"exit_code":0}',
			'{"trace_id":"b","pid":11,"node_id":"n1","argv":["y"],"ts_enqueue":500,"ts_start":400,"ts_end":900,"exit_code":0}',
			'{"trace_id":"c","pid":12,"argv":["z"],"ts_enqueue":100,"ts_start":200,"ts_end":300,"exit_code":0}',
			'{"trace_id": broken',
		}, "\n") .. "\n")
		put("raw/proc_metrics.jsonl", table.concat({
			'{"ts_ms":300,"pid":10,"dt_ms":100,"cpu_ms":50,"rss_kb":100}',
			'{"ts_ms":5000,"pid":10,"dt_ms":100,"cpu_ms":50,"rss_kb":100}',
			'{"ts_ms":300,"pid":99,"dt_ms":100,"cpu_ms":50,"rss_kb":100}',
			'{"ts_ms":320,"pid":99,"dt_ms":100,"cpu_ms":50,"rss_kb":100}',
		}, "\n") .. "\n")
		put("raw/end.json", "{}")
		local audit = trace.audit(d)
		assert.is_false(audit.ok)
		local by = {}
		for _, c in ipairs(audit.checks) do by[c.name] = c end
		assert.are.equal(1, by["well-formed lines"].count)
		assert.matches("invocations.jsonl:4", by["well-formed lines"].detail)
		assert.are.equal(1, by["field completeness"].count)
		assert.are.equal(3, by["temporal consistency"].count)
		assert.matches("two writers", by["temporal consistency"].detail)
		assert.are.equal(1, by["cross-references"].count)
		assert.matches("pid 99", by["cross-references"].detail)
		assert.is_true(by["run completed"].ok)
		-- parse still writes the rest, and the report says FAIL
		assert(trace.parse(d))
		assert.matches("Overall: %*%*FAIL%*%*", io.open(d .. "/CTS/audit_report.md"):read("a"))
		assert.are.equal(3, #lines(d .. "/CTS/invocations.jsonl"))
	end)
end)
