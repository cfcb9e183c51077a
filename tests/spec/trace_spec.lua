-- kx.trace with known workloads and known answers.
local trace = require "kx.trace"
local need = dofile((os.getenv("ROOT") or ".") .. "/tests/need.lua")

local function tmpdir()
	local d = os.tmpname()
	os.remove(d)
	assert(os.execute("mkdir -p " .. d))
	return d
end

local function lines(path)
	local out = {}
	local f = io.open(path)
	if not f then return out end
	for l in f:lines() do out[#out + 1] = assert(kx.json.decode(l)) end
	f:close()
	return out
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
			if source == "ebpf" and not need("bpf") then return end
			local run, err = trace.start{ dir = dir .. "/run", interval = 0.05, source = source }
			if not run then
				error("trace.start failed: " .. tostring(err))
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
			if not need("bpf") then return end
			local run, err = trace.start{ dir = dir .. "/run", interval = 0.05, source = "ebpf" }
			if not run then
				error("trace.start failed: " .. tostring(err))
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
		if not need("bpf") then return end
		local run, err = trace.start{ dir = dir .. "/run", interval = 0.05, source = "ebpf" }
		if not run then
			error("trace.start failed: " .. tostring(err))
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
		if not need("bpf") then return end
		local run, err = trace.start{ dir = dir .. "/run", interval = 0.02, source = "ebpf" }
		if not run then
			error("trace.start failed: " .. tostring(err))
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
		if not need("bpf") then return end
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
		local run, err = trace.start{ dir = dir .. "/run", interval = 0.5, source = "ebpf",
			match = "^kxmatchsleep$" }
		if not run then
			before:kill()
			error("trace.start failed: " .. tostring(err))
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
		if not need("bpf") then return end
		local run, err = trace.start{ dir = dir .. "/run", interval = 0.2, source = "ebpf" }
		if not run then
			error("trace.start failed: " .. tostring(err))
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
		local kids = 0
		for _, p in ipairs(lines(dir .. "/run/raw/procs.jsonl")) do
			if p.ppid == rec.pid then kids = kids + 1 end
		end
		assert.are.equal(1, kids)
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
			if source == "ebpf" and not need("bpf") then return end
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
			local run, err = trace.start{ dir = dir .. "/run", interval = 0.05, source = source }
			if not run then
				p:kill()
				error("trace.start failed: " .. tostring(err))
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

	it("refuses an unusable output directory before starting anything", function()
		local run, err = trace.start{ dir = "/proc/version/run" }
		assert.is_nil(run)
		assert.matches("cannot create", err)
		assert.has_error(function() trace.start{ dir = dir, interval = 0.001 } end)
		assert.has_error(function() trace.start{ dir = dir, source = "magic" } end)
	end)

	it("returns nil and a message for a program that does not exist", function()
		local run = assert(trace.start{ dir = dir .. "/run" })
		local rec, err = run:exec{ "/no/such/program" }
		run:stop()
		assert.is_nil(rec)
		assert.matches("No such file", err)
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
