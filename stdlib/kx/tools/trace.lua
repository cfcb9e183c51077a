-- kxrun trace: Tracekit's collector workflow on kx.trace (flags by kx.cli).
local trace = require "kx.trace"
local core = require "kx.trace.core"

local read = kx.read_file

-- The run's directory: --dir, else [DIR] where the command takes one, else
-- logs/RUN_ID.
local function run_dir(opts, args)
	if opts.dir then return opts.dir end
	if args and args[1] and not opts.run_id then return args[1] end
	local id = opts.run_id or os.getenv("RUN_ID")
	if id and id ~= "" then return "logs/" .. id end
end

-- What every command that starts a tracer checks before anything runs:
-- the directory, the interval (seconds), the source, the pattern.
local function checked(opts, args, tool, what)
	local dir = run_dir(opts, args)
	if not dir then return nil, tool:usage(what .. ": give --run-id, --dir or RUN_ID") end
	local ms = opts.interval_ms
	if not (ms >= 10 and ms < math.huge) then
		return nil, tool:usage(("%s: --interval-ms (PROC_INTERVAL_MS) must be a number >= 10, not '%s'")
			:format(what, tostring(ms)))
	end
	if opts.source and not ({ auto = 1, ebpf = 1, proc = 1 })[opts.source] then
		return nil, tool:usage(("%s: --source must be auto, ebpf or proc, not '%s'"):format(what, opts.source))
	end
	if opts.match == "" then opts.match = nil end
	if opts.match then
		local ok, merr = core.check_match(opts.match)
		if not ok then return nil, tool:usage(what .. ": " .. merr) end
	end
	return dir, ms / 1000
end

local run_flags = {
	{ "run-id", arg = "ID", help = "the run's directory is logs/ID (default $RUN_ID)" },
	{ "dir", arg = "DIR", help = "the run's directory (instead of logs/ID)" },
}
local function with(...)
	local out = {}
	for _, l in ipairs{ run_flags, ... } do
		for _, f in ipairs(l) do out[#out + 1] = f end
	end
	return out
end
local tracer_flags = {
	{ "interval-ms", type = "number", arg = "MS", default = 200, env = "PROC_INTERVAL_MS",
	  help = "sampling interval (>= 10)" },
	{ "source", arg = "auto|ebpf|proc", help = "where the figures come from (default auto: eBPF where it loads)" },
	{ "node", arg = "ID", env = "NODE_ID", help = "node id in the records (default: the host name)" },
	{ "stage", arg = "STAGE", env = "STAGE", default = "cloud", help = "stage in the records" },
}
local match_flag = { { "match", arg = "REGEX", env = "PROC_MATCH",
	help = "also follow processes whose name matches (POSIX extended)" } }

local function start(opts, args, tool)
	local dir, iv = checked(opts, args, tool, "start")
	if not dir then return iv end
	local owner = trace.owner(dir)
	if owner then
		return nil, ("start: a collector already runs for %s (pid %d)"):format(dir, owner)
	end
	os.remove(dir .. "/collector.pid")   -- a dead collector's
	local argv = { kx.exe, "trace", "collect", "--dir", dir, "--interval-ms", tostring(iv * 1000),
		"--stage", opts.stage }
	if opts.node then argv[#argv + 1] = "--node"; argv[#argv + 1] = opts.node end
	if opts.match then argv[#argv + 1] = "--match"; argv[#argv + 1] = opts.match end
	if opts.source then argv[#argv + 1] = "--source"; argv[#argv + 1] = opts.source end
	local made, merr = kx.mkdir(dir)
	if not made then return nil, "start: " .. merr end
	argv.detach, argv.stdin, argv.stdout = true, "null", "null"
	argv.stderr = dir .. "/collector.log"
	local p, err = kx.spawn(argv)
	if not p then return nil, "start: " .. err end
	-- it is up once its run.json and pid file are there
	for _ = 1, 400 do
		if tonumber(read(dir .. "/collector.pid") or "") == p.pid then
			print(("trace collector started (pid %d, interval %.3fs) -> %s"):format(p.pid, iv, dir))
			return 0
		end
		local st = p:wait(0.025)
		if st then
			return nil, ("start: the collector exited (%s): %s"):format(st.code or st.signal,
				(read(dir .. "/collector.log") or ""):gsub("%s+$", ""))
		end
	end
	p:kill()
	return nil, ("start: the collector did not come up; see %s/collector.log"):format(dir)
end

-- The background collector itself (started by `start`).
local function collect(opts, args, tool)
	local dir, iv = checked(opts, args, tool, "collect")
	if not dir then return iv end
	local run, err = trace.start{ dir = dir, interval = iv, node = opts.node,
		stage = opts.stage, match = opts.match, source = opts.source }
	if not run then return nil, "collect: " .. err end
	local pid = io.open("/proc/self/stat"):read("a"):match("^%d+")
	assert(kx.write_file(dir .. "/collector.pid", pid .. "\n"))
	local done = false
	local function finish()
		if done then return end
		done = true
		os.remove(dir .. "/collector.pid")
		run:stop()   -- lets go of the run: `stop` is waiting for that
		os.exit(0)
	end
	kx.signal("TERM", finish)
	kx.signal("INT", finish)
	while true do kx.sleep(3600) end
end

local function stop(opts, args, tool)
	local dir = run_dir(opts, args)
	if not dir then return tool:usage("stop: give --run-id, --dir or RUN_ID") end
	local pid = tonumber(read(dir .. "/collector.pid") or "")
	if not pid then return nil, ("stop: no collector runs for %s (no collector.pid)"):format(dir) end
	-- the pid file may be stale and its pid reused: only the process that
	-- holds the run's lock is the collector
	local owner = trace.owner(dir)
	if not owner then
		os.remove(dir .. "/collector.pid")
		return nil, ("stop: collector %d is not running (it died; nothing was signalled); the run may be truncated")
			:format(pid)
	end
	if owner ~= pid then
		return nil, ("stop: %s is written by process %d, not by collector %d of collector.pid; nothing was signalled")
			:format(dir, owner, pid)
	end
	local ok, err = core.signal_holder(dir .. "/run.lock", pid, 15)
	if not ok then return nil, "stop: " .. err end
	-- stopped once it has let go of the run (its end.json is written)
	for _ = 1, 400 do
		if not trace.owner(dir) then
			print(("trace collector stopped (pid %d) -> %s"):format(pid, dir))
			return 0
		end
		kx.sleep(0.025)
	end
	return nil, ("stop: collector %d did not stop within 10 s"):format(pid)
end

local function exec(opts, args, tool)
	local dir, iv = checked(opts, nil, tool, "exec")
	if not dir then return iv end
	local enqueue = opts.ts_enqueue
	if enqueue and not (math.abs(enqueue) < math.huge) then
		return tool:usage(("exec: --ts-enqueue (TS_ENQUEUE) must be a time in ms since the epoch, not '%s'")
			:format(tostring(enqueue)))
	end
	-- appends to the run's files (a collector may write beside it)
	local run, err = trace.start{ dir = dir, interval = iv, node = opts.node, stage = opts.stage,
		join = true, source = opts.source }
	if not run then return nil, "exec: " .. err end
	local spec = { table.unpack(args) }
	spec.trace_id = opts.trace_id
	spec.ts_enqueue = enqueue
	local rec, xerr = run:exec(spec)
	run.tracer:stop()
	if not rec then return nil, "exec: " .. xerr end
	return rec.exit_code or (128 + rec.signal)
end

local function parse(opts, args, tool)
	local dir = run_dir(opts, args)
	if not dir then return tool:usage("parse: give a run directory") end
	local audit, err = trace.parse(dir)
	if not audit then return nil, "parse: " .. err end
	io.write(trace.report(audit, dir))
	print(("wrote %s/CTS/"):format(dir))
	return audit.ok
end

local function export(opts)
	local r, err = trace.export_opendc(opts.input, opts.output)
	if not r then return nil, "export: " .. err end
	print(("exported %d tasks, %d fragments -> %s"):format(r.tasks or 0, r.fragments or 0, opts.output))
	return 0
end

local function verify(opts, args, tool)
	local dir = opts.input or args[1]
	if not dir then return tool:usage("verify: give --input OUT") end
	local r, err = trace.verify_opendc(dir)
	if not r then return nil, "verify: " .. err end
	print(("%s: OK (%d tasks, %d fragments)"):format(dir, r.tasks or 0, r.fragments or 0))
	return 0
end

return require("kx.cli").tool{
	name = "trace",
	summary = "Tracekit's collector workflow: per-process traces of a run, its invocations, the audit and the OpenDC export (kx.trace).",
	commands = {
		{ name = "start", flags = with(tracer_flags, match_flag), run = start,
		  summary = "start a background collector for the run",
		  help = [[
The collector samples the processes whose name matches --match, and
everything `trace exec` launches into the run, until `trace stop`.  One
collector per run directory; it holds DIR/run.lock while it runs.]] },
		{ name = "stop", flags = with(), args = { "[DIR]" }, run = stop,
		  summary = "stop the run's collector",
		  help = [[
Signals the collector only while it holds the run's lock (a stale
collector.pid whose pid was reused is never signalled); a collector that
died is reported as such and stop exits 1.]] },
		{ name = "exec", flags = with(tracer_flags, {
			{ "trace-id", arg = "T", help = "the invocation's trace_id (default RUN-N)" },
			{ "ts-enqueue", type = "number", arg = "MS", env = "TS_ENQUEUE",
			  help = "when the task was queued, ms since the epoch (as Tracekit's worker hands it to its adapter)" },
		  }), args = { "CMD..." }, run = exec,
		  summary = "run one command traced (its whole process tree) and record its invocation; exits with the command's status" },
		{ name = "parse", flags = with(), args = { "[DIR]" }, run = parse,
		  summary = "write DIR/CTS/ and print the audit; exits 1 when the audit fails",
		  help = [[
Writes invocations.jsonl, proc_metrics.jsonl, procs.jsonl, nodes.json and
audit_report.md into DIR/CTS/, all of them or none.]] },
		{ name = "export", run = export,
		  flags = { { "input", arg = "DIR", required = true, help = "a run directory with CTS/" },
			    { "output", arg = "OUT", required = true, help = "where the OpenDC files go" } },
		  summary = "write OpenDC's tasks.parquet, fragments.parquet, topology.json (and ids.json)" },
		{ name = "verify", args = { "[OUT]" }, run = verify,
		  flags = { { "input", arg = "OUT", help = "an export's directory" } },
		  summary = "check an export the way OpenDC reads it" },
		{ name = "collect", flags = with(tracer_flags, match_flag), run = collect,
		  summary = "the collector itself (what `start` runs in the background)" },
	},
	epilog = [[
A run's directory is logs/RUN_ID unless --dir is given.  Environment (as
Tracekit's Makefile): RUN_ID, NODE_ID, STAGE, PROC_INTERVAL_MS (default 200),
PROC_MATCH; TS_ENQUEUE (ms since the epoch) for exec.]],
}
