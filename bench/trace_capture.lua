-- Capture: of 1,000 processes living 5-20 ms, how many have complete
-- records (start and end): kxrun with its eBPF source and with /proc alone,
-- against a model of Tracekit's 200 ms /proc poller (bench/tracekit_poll.py),
-- same workload, same run.  Then cost: CPU used by the collector following
-- 500 live processes at 10 ms, as % of one core.
-- `--out DIR` keeps the figures (results.jsonl, results.csv, report.html).
local lab = require "kx.lab"
local trace = require "kx.trace"

local exp = lab.experiment{
	name = "trace_capture",
	about = "Short processes captured whole, and the cost of following live ones: kx.trace (eBPF, /proc) "
		.. "against a Tracekit-style /proc poller",
	params = {
		{ "n", type = "int", default = tonumber(os.getenv("N")) or 1000, help = "short processes in the capture workload (or N=)" },
		{ "live", type = "int", default = 500, help = "live processes followed while the cost is measured" },
		{ "window", type = "duration", default = 3, help = "how long the cost is measured" },
	},
	out = false, quiet = true, reps = 1, warmup = 0,
}
local N, LIVE, WINDOW = exp.params.n, exp.params.live, exp.params.window
-- sleep 0.005 .. 0.020 s, 50 at a time
local workload = ("i=0; for d in $(seq %d); do i=$((i+1)); ms=$(( (i %% 16) + 5 )); "
	.. "if [ $ms -lt 10 ]; then t=0.00$ms; else t=0.0$ms; fi; sleep $t & "
	.. "if [ $((i %% 50)) -eq 0 ]; then wait; fi; done; wait"):format(N)

local function tmpdir() return assert(kx.tmpdir("trace-bench")) end

local function kx_capture(source, interval)
	local dir = tmpdir()
	local run, err = trace.start{ dir = dir, interval = interval, source = source, quiet = true }
	if not run then return nil, err end
	local rec = assert(run:exec{ "sh", "-c", workload })
	run:stop()
	local n = 0
	for l in io.lines(dir .. "/raw/procs.jsonl") do
		local p = kx.json.decode(l)
		if p.comm == "sleep" and p.start and p["end"] and p.ppid == rec.pid then n = n + 1 end
	end
	kx.exec{ "rm", "-rf", dir }
	return n
end

local function tracekit_capture(interval)
	local shell = assert(kx.spawn{ "sh", "-c", workload })
	local poll = assert(kx.spawn{ "python3", kx.libdir():gsub("/build/lib$", "") .. "/bench/tracekit_poll.py",
		tostring(interval), tostring(shell.pid), stdout = "pipe", stderr = "pipe" })
	shell:wait()
	local out = poll.stdout:read("a")
	poll:wait()
	local n = 0
	for comm in out:gmatch("%d+ (%S+)\n") do if comm == "sleep" then n = n + 1 end end
	return n
end

local bpf = kx_capture("ebpf", 0.2)
local proc = kx_capture("proc", 0.2)
local tk = tracekit_capture(0.2)
for _, r in ipairs{ { "kxrun eBPF", bpf }, { "kxrun /proc 200 ms", proc }, { "Tracekit-style 200 ms poller", tk } } do
	if r[2] then
		exp:record{ point = { figure = "capture" }, system = r[1],
			values = { captured = 100 * r[2] / N }, units = { captured = "%" } }
	end
end
print(("capture of %d processes living 5-20 ms: kxrun eBPF %s (%.1f%%), kxrun /proc 200 ms %d (%.1f%%), "
	.. "Tracekit-style 200 ms poller %d (%.1f%%); eBPF/Tracekit %.1fx (goal: 100%% for eBPF)")
	:format(N, tostring(bpf or "n/a"), 100 * (bpf or 0) / N, proc, 100 * proc / N, tk, 100 * tk / N,
		(bpf or 0) / math.max(tk, 1)))

-- cost: LIVE live processes sampled every 10 ms for WINDOW s, by each source
local function self_cpu_ms()
	-- the loop thread's CPU time in ns (the collector runs there)
	return tonumber(io.open("/proc/thread-self/schedstat"):read("a"):match("^%d+")) / 1e6
end
-- each lives long enough for the tree to come up and be measured
local TREE = ("for i in $(seq %d); do sleep %d & done; wait"):format(LIVE, math.ceil(WINDOW) + 5)
local function cost(source)
	local dir = tmpdir()
	local run, err = trace.start{ dir = dir, interval = 0.01, quiet = true, source = source }
	if not run then return nil, err end
	local t = kx.go(function() return run:exec{ "sh", "-c", TREE } end)
	-- let the whole tree come up (the machine may be busy)
	local deadline = kx.now() + 20
	while run:live() < LIVE + 1 and kx.now() < deadline do kx.sleep(0.1) end
	local live = run:live() - 1   -- the shell itself
	local c0, t0 = self_cpu_ms(), kx.now()
	kx.sleep(WINDOW)
	local pct = 100 * (self_cpu_ms() - c0) / ((kx.now() - t0) * 1000)
	t:wait()
	run:stop()
	kx.exec{ "rm", "-rf", dir }
	return pct, live
end
local bpf_pct, bpf_live = cost("ebpf")
local proc_pct, proc_live = cost("proc")
-- the peer: the Tracekit model polling the same kind of tree at 10 ms
local shell = assert(kx.spawn{ "sh", "-c", TREE })
local poll = assert(kx.spawn{ "python3", kx.libdir():gsub("/build/lib$", "") .. "/bench/tracekit_poll.py",
	"0.01", tostring(shell.pid), stdout = "null", stderr = "pipe" })
local pt0 = kx.now()
shell:wait()
local tk_pct = 100 * (tonumber(poll.stderr:read("a"):match("[%d.]+")) or 0) / (kx.now() - pt0)
poll:wait()
print(("cost of following %d live processes at 10 ms, %% of one core: kxrun eBPF %s (%s live), "
	.. "kxrun /proc %.2f%% (%d live), Tracekit-style poller %.1f%%; eBPF/Tracekit %.3fx (goal < 2%%)")
	:format(LIVE, bpf_pct and ("%.2f%%"):format(bpf_pct) or "n/a", tostring(bpf_live), proc_pct, proc_live,
		tk_pct, (bpf_pct or 0) / math.max(tk_pct, 1e-9)))
for _, r in ipairs{ { "kxrun eBPF", bpf_pct }, { "kxrun /proc", proc_pct }, { "Tracekit-style poller", tk_pct } } do
	if r[2] then
		exp:record{ point = { figure = "cost" }, system = r[1], values = { core = r[2] }, units = { core = "%" } }
	end
end
exp:finish()
