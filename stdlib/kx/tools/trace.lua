-- kxrun trace: Tracekit's collector workflow on kx.trace.
local trace = require "kx.trace"
local core = require "kx.trace.core"

local USAGE = [[
usage: kxrun trace start   [--run-id ID | --dir DIR] [--interval-ms N] [--match REGEX]
                           [--node ID] [--stage STAGE] [--source auto|ebpf|proc]
       kxrun trace stop    [--run-id ID | --dir DIR]
       kxrun trace exec    [--run-id ID | --dir DIR] [--trace-id T] [--ts-enqueue MS]
                           [--source auto|ebpf|proc] -- CMD ARGS...
       kxrun trace parse   [--run-id ID | --dir DIR | DIR]
       kxrun trace export  --input DIR --output OUT
       kxrun trace verify  --input OUT

start runs a background collector for the run (samples of processes whose
name matches --match, and of everything `trace exec` launches) until `stop`.
exec runs one command traced (its whole process tree) and records its
invocation; it exits with the command's status.  parse writes DIR/CTS/
(invocations.jsonl, proc_metrics.jsonl, nodes.json, audit_report.md) and
prints the audit; it exits 1 when the audit fails.  export/verify write and
check OpenDC's tasks.parquet, fragments.parquet and topology.json.
A run's directory is logs/RUN_ID unless --dir is given.
Environment (as Tracekit's Makefile): RUN_ID, NODE_ID, STAGE,
PROC_INTERVAL_MS (default 200), PROC_MATCH; TS_ENQUEUE (ms since the epoch) for
exec, as Tracekit's worker hands it to its adapter.
]]

local function die(fmt, ...)
	io.stderr:write("kxrun trace: ", fmt:format(...), "\n")
	return 1
end

-- --flag VALUE pairs up to "--"; the rest are positional.
local function parse_flags(argv, first)
	local flags, pos, i = {}, {}, first
	while i <= #argv do
		local a = argv[i]
		if a == "--" then
			for j = i + 1, #argv do pos[#pos + 1] = argv[j] end
			break
		elseif a == "-h" or a == "--help" then
			flags.help = true
		elseif a:match("^%-%-") then
			local k, v = a:match("^%-%-([%w-]+)=(.*)$")
			if not k then
				k, v = a:sub(3), argv[i + 1]
				if v == nil then return nil, "option --" .. k .. " needs a value" end
				i = i + 1
			end
			flags[k] = v
		else
			pos[#pos + 1] = a
		end
		i = i + 1
	end
	return flags, pos
end

local function run_dir(flags, pos)
	if flags.dir then return flags.dir end
	if pos and pos[1] and not flags["run-id"] then return pos[1] end
	local id = flags["run-id"] or os.getenv("RUN_ID")
	if not id or id == "" then return nil end
	return "logs/" .. id
end

-- The sampling interval in seconds, or nil and why not.
local function interval(flags)
	local text = flags["interval-ms"] or os.getenv("PROC_INTERVAL_MS") or "200"
	local ms = tonumber(text)
	if not ms or not (ms >= 10 and ms < math.huge) then
		return nil, ("--interval-ms (PROC_INTERVAL_MS) must be a number >= 10, not '%s'"):format(text)
	end
	return ms / 1000
end

local function read(path)
	local f = io.open(path)
	if not f then return nil end
	local s = f:read("a")
	f:close()
	return s
end

local commands = {}

function commands.start(flags)
	local dir = run_dir(flags)
	if not dir then return die("start: give --run-id, --dir or RUN_ID") end
	local iv, ierr = interval(flags)
	if not iv then return die("start: %s", ierr) end
	local match = flags.match or os.getenv("PROC_MATCH")
	if match and match ~= "" then
		local ok, merr = core.check_match(match)
		if not ok then return die("start: %s", merr) end
	end
	local owner = trace.owner(dir)
	if owner then
		return die("start: a collector already runs for %s (pid %d)", dir, owner)
	end
	os.remove(dir .. "/collector.pid")   -- a dead collector's
	local argv = { kx.exe, "trace", "collect", "--dir", dir, "--interval-ms", tostring(iv * 1000),
		"--stage", flags.stage or os.getenv("STAGE") or "cloud" }
	local node = flags.node or os.getenv("NODE_ID")
	if node then argv[#argv + 1] = "--node"; argv[#argv + 1] = node end
	if match and match ~= "" then argv[#argv + 1] = "--match"; argv[#argv + 1] = match end
	if flags.source then argv[#argv + 1] = "--source"; argv[#argv + 1] = flags.source end
	os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'")
	argv.detach, argv.stdin, argv.stdout = true, "null", "null"
	argv.stderr = dir .. "/collector.log"
	local p, err = kx.spawn(argv)
	if not p then return die("start: %s", err) end
	-- it is up once its run.json and pid file are there
	for _ = 1, 200 do
		if tonumber(read(dir .. "/collector.pid") or "") == p.pid then
			print(("trace collector started (pid %d, interval %.3fs) -> %s"):format(p.pid, iv, dir))
			return 0
		end
		local st = p:wait(0.025)
		if st then
			return die("start: the collector exited (%s): %s", st.code or st.signal,
				(read(dir .. "/collector.log") or ""):gsub("%s+$", ""))
		end
	end
	p:kill()
	return die("start: the collector did not come up; see %s/collector.log", dir)
end

-- The background collector itself (started by `start`).
function commands.collect(flags)
	local dir = run_dir(flags)
	local iv, ierr = interval(flags)
	if not iv then return die("collect: %s", ierr) end
	local run, err = trace.start{ dir = dir, interval = iv, node = flags.node,
		stage = flags.stage, match = flags.match, source = flags.source }
	if not run then return die("collect: %s", err) end
	local pid = io.open("/proc/self/stat"):read("a"):match("^%d+")
	local f = assert(io.open(dir .. "/collector.pid.tmp", "w"))
	f:write(pid, "\n")
	f:close()
	os.rename(dir .. "/collector.pid.tmp", dir .. "/collector.pid")
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

function commands.stop(flags, pos)
	local dir = run_dir(flags, pos)
	if not dir then return die("stop: give --run-id, --dir or RUN_ID") end
	local pid = tonumber(read(dir .. "/collector.pid") or "")
	if not pid then return die("stop: no collector runs for %s (no collector.pid)", dir) end
	-- the pid file may be stale and its pid reused: only the process that
	-- holds the run's lock is the collector
	local owner = trace.owner(dir)
	if not owner then
		os.remove(dir .. "/collector.pid")
		return die("stop: collector %d is not running (it died; nothing was signalled); the run may be truncated", pid)
	end
	if owner ~= pid then
		return die("stop: %s is written by process %d, not by collector %d of collector.pid; nothing was signalled",
			dir, owner, pid)
	end
	local ok, err = core.signal_holder(dir .. "/run.lock", pid, 15)
	if not ok then return die("stop: %s", err) end
	-- stopped once it has let go of the run (its end.json is written)
	for _ = 1, 400 do
		if not trace.owner(dir) then
			print(("trace collector stopped (pid %d) -> %s"):format(pid, dir))
			return 0
		end
		kx.sleep(0.025)
	end
	return die("stop: collector %d did not stop within 10 s", pid)
end

function commands.exec(flags, pos)
	local dir = run_dir(flags)
	if not dir then return die("exec: give --run-id, --dir or RUN_ID") end
	if #pos == 0 then return die("exec: no command (kxrun trace exec [options] -- CMD ARGS)") end
	local iv, ierr = interval(flags)
	if not iv then return die("exec: %s", ierr) end
	local enqueue_text = flags["ts-enqueue"] or os.getenv("TS_ENQUEUE")
	local enqueue = enqueue_text and enqueue_text ~= "" and tonumber(enqueue_text)
	if enqueue_text and enqueue_text ~= "" and not (enqueue and math.abs(enqueue) < math.huge) then
		return die("exec: --ts-enqueue (TS_ENQUEUE) must be a time in ms since the epoch, not '%s'", enqueue_text)
	end
	-- appends to the run's files (a collector may write beside it)
	local run, err = trace.start{ dir = dir, interval = iv,
		node = flags.node or os.getenv("NODE_ID"), stage = flags.stage or os.getenv("STAGE"), join = true,
		source = flags.source }
	if not run then return die("exec: %s", err) end
	local spec = { table.unpack(pos) }
	spec.trace_id = flags["trace-id"]
	spec.ts_enqueue = enqueue or nil
	local rec, xerr = run:exec(spec)
	run.tracer:stop()
	if not rec then return die("exec: %s", xerr) end
	return rec.exit_code or (128 + rec.signal)
end

function commands.parse(flags, pos)
	local dir = run_dir(flags, pos)
	if not dir then return die("parse: give a run directory") end
	local audit, err = trace.parse(dir)
	if not audit then return die("parse: %s", err) end
	io.write(trace.report(audit, dir))
	print(("wrote %s/CTS/"):format(dir))
	return audit.ok and 0 or 1
end

function commands.export(flags)
	if not flags.input or not flags.output then return die("export: give --input DIR --output OUT") end
	local r, err = trace.export_opendc(flags.input, flags.output)
	if not r then return die("export: %s", err) end
	print(("exported %d tasks, %d fragments -> %s"):format(r.tasks or 0, r.fragments or 0, flags.output))
	return 0
end

function commands.verify(flags, pos)
	local dir = flags.input or pos[1]
	if not dir then return die("verify: give --input OUT") end
	local r, err = trace.verify_opendc(dir)
	if not r then return die("verify: %s", err) end
	print(("%s: OK (%d tasks, %d fragments)"):format(dir, r.tasks or 0, r.fragments or 0))
	return 0
end

return function(argv)
	local cmd = argv[1]
	if not cmd or cmd == "-h" or cmd == "--help" or cmd == "help" then
		io.write(USAGE)
		return cmd and 0 or 1
	end
	local fn = commands[cmd]
	if not fn then return die("unknown command '%s' (see kxrun trace --help)", cmd) end
	local flags, pos = parse_flags(argv, 2)
	if not flags then return die("%s", pos) end
	if flags.source and not ({ auto = 1, ebpf = 1, proc = 1 })[flags.source] then
		return die("%s: --source must be auto, ebpf or proc, not '%s'", cmd, flags.source)
	end
	if flags.help then io.write(USAGE) return 0 end
	return fn(flags, pos)
end
