-- kx.trace: per-process CPU/memory traces, invocation records, node facts,
-- audit, and OpenDC export (Tracekit's files, recorded exactly).
--
--   local run = trace.start{ dir = "logs/RUN", interval = 0.2, node = nil, stage = "cloud" }
--   local rec = run:exec{ "ffmpeg", "-i", "in.mp4", "out.mp4", trace_id = "t1" }
--   run:stop(); trace.parse("logs/RUN")
--
-- A run directory holds run.json (the run and the node's facts) and raw/
-- (append-only JSON lines: proc_metrics, procs, invocations; end.json once
-- stopped).  parse() writes CTS/ from them: invocations.jsonl,
-- proc_metrics.jsonl, nodes.json, audit_report.md.
local core = require "kx.trace.core"
local json = kx.json

local trace = {}

local read_file = kx.read_file

-- One JSON line appended with a single write(2).
local function append_line(path, value)
	local f, err = io.open(path, "a")
	if not f then return nil, err end
	f:setvbuf("full", 1 << 20)
	f:write(json.encode(value), "\n")
	return f:close()
end

local function first_line(path, pattern)
	local f = io.open(path, "r")
	if not f then return nil end
	for line in f:lines() do
		local v = line:match(pattern)
		if v then f:close() return v end
	end
	f:close()
end

-- The node's facts, as nodes.json has them.
function trace.node_facts(node, stage)
	local host = (read_file("/proc/sys/kernel/hostname") or "localhost"):gsub("%s+$", "")
	local cores = 0
	local f = io.open("/proc/cpuinfo")
	if f then
		for line in f:lines() do
			if line:match("^processor%s*:") then cores = cores + 1 end
		end
		f:close()
	end
	local mem_kb = tonumber(first_line("/proc/meminfo", "^MemTotal:%s*(%d+)")) or 0
	local max_khz = tonumber((read_file("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") or ""):match("%d+"))
	local mhz = max_khz and max_khz / 1000 or tonumber(first_line("/proc/cpuinfo", "^cpu MHz%s*:%s*([%d.]+)"))
	return {
		node_id = node or host,
		stage = stage or "cloud",
		cpu_cores = math.max(cores, 1),
		mem_mb = mem_kb // 1024,
		cpu_model = first_line("/proc/cpuinfo", "^model name%s*:%s*(.-)%s*$") or "unknown",
		cpu_freq_mhz = mhz and math.floor(mhz + 0.5) or 0,
	}
end

local Run = {}
Run.__index = Run

local function exists(path)
	local f = io.open(path, "r")
	if f then f:close() end
	return f ~= nil
end

-- The paths among those a start may create that do not exist yet (dir's
-- missing parents first): a failed start removes them again.
local function missing(dir, inside)
	local out, prefix = {}, dir:sub(1, 1) == "/" and "" or nil
	for part in dir:gmatch("[^/]+") do
		prefix = prefix and prefix .. "/" .. part or part
		if not exists(prefix) then out[#out + 1] = prefix end
	end
	for _, name in ipairs(inside) do
		if not exists(dir .. "/" .. name) then out[#out + 1] = dir .. "/" .. name end
	end
	return out
end

local function remove_all(paths)
	for i = #paths, 1, -1 do os.remove(paths[i]) end
end

local function bad_field(field, what)
	error(("bad argument #1 to 'start' (field '%s' %s)"):format(field, what), 3)
end

-- Lock, tracer and run.json of a started run (s holds what is open, so a
-- failure anywhere can close it).
local function open_run(s, dir, opts, interval, source)
	-- one owner per run directory (trace exec joins a run and takes none)
	if not opts.join then
		local lock, lerr, holder = core.lock(dir .. "/run.lock")
		if not lock then
			if holder then
				return nil, ("a trace run already writes to %s (process %d)"):format(dir, holder)
			end
			return nil, lerr
		end
		s.lock = lock
	end
	local run = setmetatable({
		dir = dir, interval = interval, lock = s.lock,
		node = opts.node, stage = opts.stage or "cloud", seq = 0,
	}, Run)
	run.facts = trace.node_facts(opts.node, run.stage)
	run.node = run.facts.node_id
	run.run_id = opts.run_id or dir:match("([^/]+)/*$")
	local tracer, terr = core.tracer{
		samples = dir .. "/raw/proc_metrics.jsonl",
		procs = dir .. "/raw/procs.jsonl",
		interval = interval, match = opts.match, source = source,
		-- launched commands' PID files: a collector of the same run
		-- leaves their trees to the tracer that launched them
		sentinels = dir .. "/raw/pids",
	}
	if source ~= "proc" and core.bpf_log() ~= "" then
		kx.log.debug("kx.trace: libbpf loading the eBPF program:\n%s", core.bpf_log())
	end
	if not tracer then return nil, terr end
	s.tracer = tracer
	run.tracer = tracer
	run.source, run.source_note = tracer:source()
	local meta = {
		run_id = run.run_id, node = run.facts, source = run.source,
		interval_s = interval, started_ms = math.floor(core.now_ms()),
		match = opts.match, pid = tonumber(read_file("/proc/self/stat"):match("^%d+")),
	}
	-- joining a run (another process's collector writes beside us) keeps
	-- its run.json and its end
	if not (opts.join and read_file(dir .. "/run.json")) then
		local ok, werr = kx.write_file(dir .. "/run.json", json.encode(meta, { indent = 2 }) .. "\n")
		if not ok then return nil, werr end
		os.remove(dir .. "/raw/end.json")
	end
	if run.source_note and source == "auto" and not opts.quiet then
		kx.log.warn("kx.trace: %s; sampling /proc instead", run.source_note)
	end
	return run
end

-- trace.start{dir=, interval=0.2, node=, stage=, match=, source="auto", join=false}
-- -> run | nil, message.  Everything is checked before anything starts; a
-- start that fails leaves nothing behind (no tracer, no lock, no file).
function trace.start(opts)
	if type(opts) ~= "table" then
		error(("bad argument #1 to 'start' (table expected, got %s)"):format(type(opts)), 2)
	end
	local dir = opts.dir
	if type(dir) ~= "string" or dir == "" then bad_field("dir", "must be a directory name") end
	local interval = opts.interval or 0.2
	if type(interval) ~= "number" or not (interval >= 0.01 and interval < math.huge) then
		bad_field("interval", "must be a finite number >= 0.01 seconds")
	end
	local source = opts.source or "auto"
	if source ~= "auto" and source ~= "proc" and source ~= "ebpf" then
		error(("bad argument #1 to 'start' (source must be auto, proc or ebpf, got %s)"):format(tostring(source)), 2)
	end
	for _, k in ipairs{ "node", "stage", "run_id", "match" } do
		if opts[k] ~= nil and type(opts[k]) ~= "string" then
			bad_field(k, ("must be a string, not a %s"):format(type(opts[k])))
		end
	end
	if opts.match then
		local ok, merr = core.check_match(opts.match)
		if not ok then return nil, merr end
	end

	local made = missing(dir, { "raw", "raw/pids", "run.lock", "raw/proc_metrics.jsonl", "raw/procs.jsonl" })
	local made_ok, merr = kx.mkdir(dir .. "/raw/pids")
	if not made_ok then
		remove_all(made)
		return nil, ("cannot create %s/raw (%s)"):format(dir, merr)
	end
	local probe = dir .. "/raw/.writable"
	local f, err = io.open(probe, "w")
	if not f or not f:write("x") or not f:close() then
		os.remove(probe)
		remove_all(made)
		return nil, ("output directory %s is not writable: %s"):format(dir, tostring(err))
	end
	os.remove(probe)
	local free = core.free_bytes(dir)
	if free and free < 1 << 20 then
		remove_all(made)
		return nil, ("output directory %s is full (%d bytes free)"):format(dir, free)
	end

	local opened = {}
	local ok, run, rerr = pcall(open_run, opened, dir, opts, interval, source)
	if ok and run then return run end
	if opened.tracer then opened.tracer:stop() end
	if opened.lock then opened.lock:release() end
	remove_all(made)
	if not ok then error(run, 0) end
	return nil, rerr
end

-- run:exec{argv..., trace_id=, ts_enqueue=, cwd=, env=, stdin=, stdout=, stderr=}
-- -> the invocation record | nil, message
function Run:exec(t)
	if type(t) ~= "table" or #t == 0 then
		error("bad argument #1 to 'exec' (table with argv expected)", 2)
	end
	if t.trace_id ~= nil and type(t.trace_id) ~= "string" then
		error(("bad argument #1 to 'exec' (field 'trace_id' must be a string, not a %s)"):format(type(t.trace_id)), 2)
	end
	if t.ts_enqueue ~= nil and (type(t.ts_enqueue) ~= "number" or not (math.abs(t.ts_enqueue) < math.huge)) then
		error(("bad argument #1 to 'exec' (field 'ts_enqueue' must be a number, ms since the epoch, not %s)")
			:format(tostring(t.ts_enqueue)), 2)
	end
	for _, k in ipairs{ "cwd", "stdin", "stdout", "stderr" } do
		if t[k] ~= nil and type(t[k]) ~= "string" then
			error(("bad argument #1 to 'exec' (field '%s': string expected, got %s)"):format(k, type(t[k])), 2)
		end
	end
	if t.env ~= nil then
		if type(t.env) ~= "table" then
			error(("bad argument #1 to 'exec' (field 'env': table expected, got %s)"):format(type(t.env)), 2)
		end
		for k, v in pairs(t.env) do
			if type(k) ~= "string" or not (type(v) == "string" or type(v) == "number" or type(v) == "boolean") then
				error(("bad argument #1 to 'exec' (field 'env': %s = %s: a name and a string or false expected)")
					:format(tostring(k), type(v)), 2)
			end
		end
	end
	local enqueue = t.ts_enqueue or math.floor(core.now_ms())
	local argv = {}
	for i = 1, #t do argv[i] = tostring(t[i]) end
	local spec = { table.unpack(argv) }
	spec.cwd, spec.env, spec.stdin, spec.stdout, spec.stderr = t.cwd, t.env, t.stdin, t.stdout, t.stderr
	local rec, err = self.tracer:launch(spec)
	if not rec then return nil, err end
	self.seq = self.seq + 1
	rec.trace_id = t.trace_id or ("%s-%d"):format(self.run_id, self.seq)
	rec.node_id = self.node
	rec.stage = self.stage
	rec.argv = argv
	rec.ts_enqueue = enqueue
	local ok, werr = append_line(self.dir .. "/raw/invocations.jsonl", rec)
	if not ok then return nil, werr end
	return rec
end

-- run:watch(pid): an existing process and its descendants.
function Run:watch(pid)
	return self.tracer:watch(pid)
end

-- trace.owner(dir) -> the pid of the process whose run writes to dir, or
-- nil (from the kernel's lock table: a dead owner holds nothing).
function trace.owner(dir)
	return core.lock_holder(dir .. "/run.lock")
end

-- Processes followed now, and sample rows written so far.
function Run:live()
	return self.tracer:live()
end

function Run:stop()
	if self.stopped then return true end
	self.stopped = true
	self.tracer:stop()
	local _, rows, lost = self.tracer:live()
	if lost then kx.log.warn("kx.trace: %s: %s", self.dir, lost) end
	local ok, err = kx.write_file(self.dir .. "/raw/end.json",
		json.encode{ stopped_ms = math.floor(core.now_ms()), rows = rows, write_errors = lost } .. "\n")
	if self.lock then self.lock:release() end
	return ok, err
end
Run.__close = Run.stop
Run.__tostring = function(r) return ("trace run %s (%s)"):format(r.dir, r.source) end

-- ---- parse and audit ---------------------------------------------------------

local function read_jsonl(path, problems, label)
	local rows = {}
	local f = io.open(path, "r")
	if not f then return rows, false end
	local n = 0
	for line in f:lines() do
		n = n + 1
		if line:match("%S") then
			local v, err = json.decode(line)
			if type(v) ~= "table" then
				problems[#problems + 1] = ("%s:%d: %s"):format(label, n, err or "not a JSON object")
			else
				v._line = n
				v._raw = line
				rows[#rows + 1] = v
			end
		end
	end
	f:close()
	return rows, true
end

local INVOCATION_FIELDS = { "trace_id", "pid", "node_id", "argv", "ts_enqueue", "ts_start", "ts_end" }
local SAMPLE_FIELDS = { "ts_ms", "pid", "dt_ms", "cpu_ms", "rss_kb" }
local NODE_FIELDS = { "node_id", "stage", "cpu_cores", "mem_mb", "cpu_model", "cpu_freq_mhz" }

local function missing_fields(row, fields)
	local out = {}
	for _, k in ipairs(fields) do
		if row[k] == nil or row[k] == json.null then out[#out + 1] = k end
	end
	return out
end

local function check(list, name, problems, detail_ok)
	local c = { name = name, ok = #problems == 0, count = #problems }
	if #problems == 0 then
		c.detail = detail_ok or "ok"
	else
		local shown = {}
		for i = 1, math.min(#problems, 10) do shown[i] = problems[i] end
		c.detail = table.concat(shown, "; ") .. (#problems > 10 and ("; ... %d more"):format(#problems - 10) or "")
	end
	list[#list + 1] = c
	return c
end

-- Reads a run directory (raw/ or, failing that, CTS/), checks it, and
-- returns the rows and the audit.
local function load_and_audit(dir)
	local malformed = {}
	local base = dir .. "/raw"
	local meta = read_file(dir .. "/run.json")
	if not exists(base .. "/proc_metrics.jsonl") and not exists(base .. "/invocations.jsonl") then
		base = dir .. "/CTS"
	end
	local inv = read_jsonl(base .. "/invocations.jsonl", malformed, "invocations.jsonl")
	local samples = read_jsonl(base .. "/proc_metrics.jsonl", malformed, "proc_metrics.jsonl")
	local procs = read_jsonl(base .. "/procs.jsonl", malformed, "procs.jsonl")
	local node
	if meta then
		local m = json.decode(meta)
		node = m and m.node
	end
	if not node then
		local nj = read_file(dir .. "/CTS/nodes.json")
		node = nj and json.decode(nj)
		if node and node[1] then node = node[1] end
	end

	local checks = {}
	check(checks, "well-formed lines", malformed, ("%d invocations, %d samples, %d processes read"):format(#inv, #samples, #procs))

	local incomplete = {}
	for _, r in ipairs(inv) do
		local miss = missing_fields(r, INVOCATION_FIELDS)
		if r.exit_code == nil and r.signal == nil then miss[#miss + 1] = "exit_code" end
		if #miss > 0 then
			incomplete[#incomplete + 1] = ("invocations.jsonl:%d lacks %s"):format(r._line, table.concat(miss, ","))
		end
	end
	for _, r in ipairs(samples) do
		local miss = missing_fields(r, SAMPLE_FIELDS)
		if #miss > 0 then
			incomplete[#incomplete + 1] = ("proc_metrics.jsonl:%d lacks %s"):format(r._line, table.concat(miss, ","))
		end
	end
	if not node then
		incomplete[#incomplete + 1] = "no node facts (run.json or CTS/nodes.json)"
	else
		local miss = missing_fields(node, NODE_FIELDS)
		if #miss > 0 then incomplete[#incomplete + 1] = "nodes.json lacks " .. table.concat(miss, ",") end
	end
	check(checks, "field completeness", incomplete)

	-- temporal consistency
	local temporal = {}
	local life = {}   -- pid -> {start, end} (latest known)
	for _, p in ipairs(procs) do
		if type(p.pid) == "number" then life[p.pid] = { p.start, p["end"], p.ppid } end
	end
	for _, r in ipairs(inv) do
		local e, s, t = r.ts_enqueue, r.ts_start, r.ts_end
		if type(e) == "number" and type(s) == "number" and type(t) == "number" then
			if not (e <= s and s <= t) then
				temporal[#temporal + 1] = ("invocations.jsonl:%d: ts_enqueue %s <= ts_start %s <= ts_end %s does not hold")
					:format(r._line, e, s, t)
			end
		end
		if type(r.pid) == "number" and type(s) == "number" then
			local l = life[r.pid]
			life[r.pid] = { s, t, l and l[3] }
		end
	end
	local tick = 10 + 1   -- kernel start times have clock-tick precision
	for _, r in ipairs(samples) do
		local l = life[r.pid]
		if l and type(r.ts_ms) == "number" then
			if (l[1] and r.ts_ms < l[1] - tick) or (l[2] and r.ts_ms > l[2] + tick) then
				temporal[#temporal + 1] = ("proc_metrics.jsonl:%d: pid %s sampled at %s outside its life %s..%s")
					:format(r._line, r.pid, r.ts_ms, tostring(l[1]), tostring(l[2]))
			end
		end
		if type(r.dt_ms) == "number" and r.dt_ms < 0 or type(r.cpu_ms) == "number" and r.cpu_ms < 0 then
			temporal[#temporal + 1] = ("proc_metrics.jsonl:%d: negative dt_ms or cpu_ms"):format(r._line)
		end
	end
	-- one writer per pid: a pid's rows cover disjoint windows (ts_ms - dt_ms, ts_ms]
	local by_pid = {}
	for _, r in ipairs(samples) do
		if type(r.pid) == "number" and type(r.ts_ms) == "number" and type(r.dt_ms) == "number" then
			local l = by_pid[r.pid]
			if not l then l = {} by_pid[r.pid] = l end
			l[#l + 1] = r
		end
	end
	for pid, rows in pairs(by_pid) do
		table.sort(rows, function(a, b) return a.ts_ms < b.ts_ms end)
		for i = 2, #rows do
			-- 1 ms: ts_ms is written in whole ms
			if rows[i].ts_ms - rows[i].dt_ms < rows[i - 1].ts_ms - 1 then
				temporal[#temporal + 1] = ("proc_metrics.jsonl:%d: pid %s's window overlaps its row at line %d (two writers?)")
					:format(rows[i]._line, pid, rows[i - 1]._line)
				break
			end
		end
	end
	check(checks, "temporal consistency", temporal)

	-- cross references: every sampled pid has an invocation or an ancestor that has one
	local invoked, parent = {}, {}
	for _, r in ipairs(inv) do if r.pid then invoked[r.pid] = true end end
	for _, p in ipairs(procs) do if p.pid and p.ppid then parent[p.pid] = p.ppid end end
	for _, r in ipairs(samples) do
		if r.pid and r.ppid and not parent[r.pid] then parent[r.pid] = r.ppid end
	end
	local orphans, seen = {}, {}
	for _, r in ipairs(samples) do
		local pid = r.pid
		if pid and not seen[pid] then
			seen[pid] = true
			local p, hops, found = pid, 0, false
			while p and hops < 64 do
				if invoked[p] then found = true break end
				p, hops = parent[p], hops + 1
			end
			if not found then
				orphans[#orphans + 1] = ("pid %s (proc_metrics.jsonl:%d) has no invocation nor an ancestor with one"):format(pid, r._line)
			end
		end
	end
	local matched = meta and (json.decode(meta) or {}).match
	if matched then
		check(checks, "cross-references", {}, ("%d sampled pids (name match %q: roots need no invocation)"):format(#orphans, matched))
	else
		check(checks, "cross-references", orphans)
	end

	-- the run's end
	local truncated = {}
	local ending = base == dir .. "/raw" and read_file(dir .. "/raw/end.json")
	if base == dir .. "/raw" and not ending then
		truncated[1] = "run truncated: no raw/end.json (the collector was killed or is still running)"
	end
	local ended = ending and json.decode(ending)
	if type(ended) == "table" and type(ended.write_errors) == "string" then
		truncated[#truncated + 1] = "records lost while running: " .. ended.write_errors
	end
	check(checks, "run completed", truncated)

	local ok = true
	for _, c in ipairs(checks) do ok = ok and c.ok end
	return { ok = ok, checks = checks }, inv, samples, procs, node
end

-- trace.audit(dir) -> { ok = bool, checks = { {name=, ok=, count=, detail=}... } }
function trace.audit(dir)
	local audit = load_and_audit(dir)
	return audit
end

-- CTS rows are the raw lines as written (no re-encoding of numbers).
local function jsonl(rows)
	local out = {}
	for i, r in ipairs(rows) do out[i] = r._raw end
	return table.concat(out, "\n") .. (#out > 0 and "\n" or "")
end

function trace.report(audit, dir)
	local lines = { ("# Audit report: %s"):format(dir), "",
		("Overall: **%s**"):format(audit.ok and "PASS" or "FAIL"), "",
		"| check | result | problems | detail |", "|---|---|---|---|" }
	for _, c in ipairs(audit.checks) do
		lines[#lines + 1] = ("| %s | %s | %d | %s |"):format(c.name, c.ok and "PASS" or "FAIL", c.count,
			(c.detail:gsub("|", "\\|")))
	end
	return table.concat(lines, "\n") .. "\n"
end

-- trace.parse(dir): writes dir/CTS/{invocations.jsonl, proc_metrics.jsonl,
-- procs.jsonl, nodes.json, audit_report.md}; returns the audit.
function trace.parse(dir)
	if type(dir) ~= "string" then
		error(("bad argument #1 to 'parse' (string expected, got %s)"):format(type(dir)), 2)
	end
	if not exists(dir .. "/run.json") and not exists(dir .. "/CTS/invocations.jsonl")
		and not exists(dir .. "/raw/proc_metrics.jsonl") then
		return nil, ("%s is not a trace run directory (no run.json, raw/ or CTS/)"):format(dir)
	end
	local audit, inv, samples, procs, node = load_and_audit(dir)
	local files = {
		{ "invocations.jsonl", jsonl(inv) },
		{ "proc_metrics.jsonl", jsonl(samples) },
		{ "procs.jsonl", jsonl(procs) },
		{ "nodes.json", json.encode(node or {}, { indent = 2 }) .. "\n" },
		{ "audit_report.md", trace.report(audit, dir) },
	}
	-- all five files or none: written into a directory beside CTS/, which
	-- then takes its place
	local cts = dir .. "/CTS"
	local tmp, terr = core.tmpdir_beside(cts)
	if not tmp then return nil, terr end
	local names = {}
	for i, f in ipairs(files) do
		names[i] = f[1]
		local ok, err = kx.write_file(tmp .. "/" .. f[1], f[2])
		if not ok then
			core.discard_dir(tmp)
			-- named at its place in CTS/
			return nil, (err:gsub(tmp:gsub("%p", "%%%0"), (cts:gsub("%%", "%%%%"))))
		end
	end
	local ok, err = core.publish_dir(tmp, cts, names)
	if not ok then
		core.discard_dir(tmp)
		return nil, err
	end
	return audit
end

-- OpenDC export and its check, by kx.opendc.
function trace.export_opendc(dir, out)
	local ok, opendc = pcall(require, "kx.opendc")
	if not ok then return nil, "OpenDC export not built into this kxrun" end
	return opendc.export(dir, out)
end

function trace.verify_opendc(dir)
	local ok, opendc = pcall(require, "kx.opendc")
	if not ok then return nil, "OpenDC export not built into this kxrun" end
	return opendc.verify(dir)
end

return trace
