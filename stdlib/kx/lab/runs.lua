-- kx.lab.runs: report sections for what other modules record — a kx.trace
-- run directory (Gantt of the invocations per node, CPU and RSS over time
-- per traced process, the audit) and the virtual-against-real time per
-- round of kx.vtime experiments (DIR/vtime.jsonl, written by exp:vtime()).
local stats = require "kx.lab.stats"
local store = require "kx.lab.store"
local plot = require "kx.lab.plot"
local json = kx.json

local M = {}

local function jsonl(path)
	local text = kx.read_file(path)
	if not text then return nil end
	local rows, problems = store.parse_jsonl(text, path:match("[^/]+$"))
	return rows, problems
end

local function exists(path)
	local f = io.open(path, "r")
	if f then f:close() end
	return f ~= nil
end

function M.is_trace(dir)
	return exists(dir .. "/run.json") or exists(dir .. "/raw/invocations.jsonl")
		or exists(dir .. "/raw/proc_metrics.jsonl") or exists(dir .. "/CTS/invocations.jsonl")
		or exists(dir .. "/CTS/proc_metrics.jsonl")
end

-- ---- kx.vtime --------------------------------------------------------------------

function M.vtime(pg, dir, top)
	local rows, problems = jsonl(dir .. "/vtime.jsonl")
	if top then pg.title = dir .. " — kx.vtime rounds" pg:h(1, dir) end
	pg:h(2, "Virtual against real time (kx.vtime)")
	pg:p("Each row of vtime.jsonl is one advance of an experiment: the virtual clock (exp:now()) "
		.. "and the real clock (kx.now()) read around it.", "note")
	local labels, by = {}, {}
	for _, r in ipairs(rows) do
		local l = tostring(r.label or "vtime")
		if not by[l] then by[l] = {} labels[#labels + 1] = l end
		table.insert(by[l], r)
	end
	local vr, per_round, cdf, table_rows = {}, {}, {}, {}
	local maxr = 0
	for _, l in ipairs(labels) do
		local pts, pr, ms = { { 0, 0 } }, {}, {}
		local rounds, real, virt = 0, 0, 0
		for _, r in ipairs(by[l]) do
			pts[#pts + 1] = { r.real_s or 0, (r.virtual_ns or 0) / 1e9 }
			local n = math.max(r.rounds or 1, 1)
			local each = (r.dt_real_s or 0) * 1e3 / n
			pr[#pr + 1] = { r.round or #pr + 1, each }
			if (r.rounds or 0) > 0 then ms[#ms + 1] = each end
			rounds = rounds + (r.rounds or 0)
			real = real + (r.dt_real_s or 0)
			virt = virt + (r.dt_virtual_ns or 0) / 1e9
			maxr = math.max(maxr, r.real_s or 0)
		end
		vr[#vr + 1] = { name = l, points = pts }
		per_round[#per_round + 1] = { name = l, points = pr }
		cdf[#cdf + 1] = { name = l, values = ms }
		local s = stats.summary(ms, { resamples = 500 })
		table_rows[#table_rows + 1] = { l, rounds, virt, real, virt > 0 and real / virt or nil,
			s.median, s.p95, s.max }
	end
	pg:table({ "experiment", "rounds", "virtual (s)", "real (s)", "real / virtual",
		"real per round, median (ms)", "p95 (ms)", "max (ms)" }, table_rows, { true })
	pg:open_plots()
	pg:plot("vtime-virtual-real", "timeseries", { title = "Virtual time against real time",
		x = { label = "real time", unit = "s" }, y = { label = "virtual time", unit = "s" }, series = vr })
	pg:plot("vtime-round", "timeseries", { title = "Real time per round",
		x = { label = "round" }, y = { label = "real time per round", unit = "ms" }, series = per_round })
	pg:plot("vtime-round-cdf", "cdf", { title = "Real time per round: distribution",
		x = { label = "real time per round", unit = "ms" }, series = cdf })
	pg:close_plots()
	for _, p in ipairs(problems or {}) do pg:p(p, "bad") end
end

-- ---- kx.trace ----------------------------------------------------------------------

-- Markdown table rows of audit_report.md -> list of cell lists.
local function audit_rows(md)
	local out = {}
	for line in md:gmatch("[^\n]+") do
		if line:match("^|") and not line:match("^|%-") then
			local cells = {}
			for cell in line:gsub("\\|", "\1"):gmatch("|([^|]*)") do
				cells[#cells + 1] = (cell:gsub("\1", "|"):gsub("^%s+", ""):gsub("%s+$", ""))
			end
			if cells[#cells] == "" then cells[#cells] = nil end
			out[#out + 1] = cells
		end
	end
	return out
end

local function audit(pg, dir)
	local md = kx.read_file(dir .. "/CTS/audit_report.md")
	local rows, overall
	if md then
		overall = md:match("Overall: %*%*(%u+)%*%*")
		rows = audit_rows(md)
		table.remove(rows, 1)   -- its header
	else
		local ok, trace = pcall(require, "kx.trace")
		if not ok then pg:p("no CTS/audit_report.md and kx.trace is not built in: no audit", "bad") return end
		local a = trace.audit(dir)
		overall = a.ok and "PASS" or "FAIL"
		rows = {}
		for _, c in ipairs(a.checks) do rows[#rows + 1] = { c.name, c.ok and "PASS" or "FAIL", c.count, c.detail } end
	end
	pg:h(2, "Audit")
	pg:add(('<p>Overall: <span class="%s">%s</span>%s</p>'):format(overall == "PASS" and "ok" or "bad",
		plot.escape(overall or "?"), md and " (CTS/audit_report.md)" or " (computed now: the run has no CTS/ yet)"))
	pg:table({ "check", "result", "problems", "detail" }, rows, { true, true, false, true })
end

-- Lanes so that invocations of a node that overlap in time do not overlap on the page.
local function lanes(invs)
	table.sort(invs, function(a, b) return (a.ts_start or 0) < (b.ts_start or 0) end)
	local ends, out = {}, {}
	for _, r in ipairs(invs) do
		local lane
		for i, e in ipairs(ends) do
			if e <= (r.ts_enqueue or r.ts_start) then lane = i break end
		end
		if not lane then lane = #ends + 1 end
		ends[lane] = r.ts_end
		out[lane] = out[lane] or {}
		table.insert(out[lane], r)
	end
	return out
end

local function num(v) return type(v) == "number" and v or nil end

function M.trace(pg, dir, top)
	local base = (exists(dir .. "/raw/invocations.jsonl") or exists(dir .. "/raw/proc_metrics.jsonl"))
		and dir .. "/raw" or dir .. "/CTS"
	local inv = jsonl(base .. "/invocations.jsonl") or {}
	local samples = jsonl(base .. "/proc_metrics.jsonl") or {}
	local procs = jsonl(base .. "/procs.jsonl") or {}
	local meta = json.decode(kx.read_file(dir .. "/run.json") or "null")
	meta = type(meta) == "table" and meta or {}
	if top then pg.title = (meta.run_id or dir) .. " — kx.trace run" pg:h(1, "kx.trace run " .. (meta.run_id or dir)) end
	pg:h(2, "Trace run")
	local node = meta.node or json.decode(kx.read_file(dir .. "/CTS/nodes.json") or "null") or {}
	if node[1] then node = node[1] end
	pg:table({ "", "", names = false }, {
		{ "directory", dir }, { "files read", base:match("[^/]+$") .. "/" },
		{ "node", ("%s (%s cores, %s MB, %s)"):format(tostring(node.node_id), tostring(node.cpu_cores),
			tostring(node.mem_mb), tostring(node.cpu_model)) },
		{ "source", tostring(meta.source or "-") .. (meta.interval_s and (", every %g s"):format(meta.interval_s) or "") },
		{ "invocations", #inv }, { "samples", #samples }, { "processes", #procs },
	}, { true, true })

	local t0
	for _, r in ipairs(inv) do
		local t = num(r.ts_enqueue) or num(r.ts_start)
		if t and (not t0 or t < t0) then t0 = t end
	end
	for _, r in ipairs(samples) do
		local t = num(r.ts_ms) and r.ts_ms - (num(r.dt_ms) or 0)
		if t and (not t0 or t < t0) then t0 = t end
	end
	t0 = t0 or 0
	local function sec(ms) return (ms - t0) / 1e3 end

	pg:open_plots()
	-- Gantt: invocations per node, a lane per overlap
	local by_node, nodes = {}, {}
	for _, r in ipairs(inv) do
		if num(r.ts_start) and num(r.ts_end) then
			local n = tostring(r.node_id or "?")
			if not by_node[n] then by_node[n] = {} nodes[#nodes + 1] = n end
			table.insert(by_node[n], r)
		end
	end
	table.sort(nodes)
	local grows = {}
	for _, n in ipairs(nodes) do
		for _, lane in ipairs(lanes(by_node[n])) do
			local bars = {}
			for _, r in ipairs(lane) do
				local failed = (r.exit_code and r.exit_code ~= 0) or (r.signal and r.signal ~= json.null)
				bars[#bars + 1] = { start = sec(r.ts_start), stop = sec(r.ts_end),
					wait = num(r.ts_enqueue) and sec(r.ts_enqueue), failed = failed and true or false,
					label = ("%s: %s"):format(tostring(r.trace_id), table.concat(type(r.argv) == "table" and r.argv or {}, " "):sub(1, 80)) }
			end
			grows[#grows + 1] = { label = n, bars = bars }
		end
	end
	if #grows > 0 then
		pg:plot("trace-gantt", "gantt", { title = "Invocations per node",
			x = { label = "time since the first record", unit = "s" },
			legend = { { name = "running", color = plot.palette[1] }, { name = "queued (enqueue to start)", color = "#ccc" },
				{ name = "failed (exit ≠ 0 or signal)", color = "#D55E00" } }, rows = grows })
	end

	-- CPU and RSS per process (the 8 that used most CPU; the rest summed)
	local comm = {}
	for _, p in ipairs(procs) do if p.pid then comm[p.pid] = p.comm end end
	local per, order = {}, {}
	for _, s in ipairs(samples) do
		if num(s.pid) and num(s.ts_ms) then
			local p = per[s.pid]
			if not p then p = { pid = s.pid, cpu = 0, rows = {} } per[s.pid] = p order[#order + 1] = p end
			p.cpu = p.cpu + (num(s.cpu_ms) or 0)
			p.rows[#p.rows + 1] = s
		end
	end
	table.sort(order, function(a, b) return a.cpu > b.cpu or a.cpu == b.cpu and a.pid < b.pid end)
	local cpu, rss = {}, {}
	for i, p in ipairs(order) do
		if i > 8 then break end
		local name = ("%s %d"):format(comm[p.pid] or "pid", p.pid)
		local c, r = { name = name, points = {} }, { name = name, points = {} }
		table.sort(p.rows, function(a, b) return a.ts_ms < b.ts_ms end)
		for _, s in ipairs(p.rows) do
			if num(s.dt_ms) and s.dt_ms > 0 and num(s.cpu_ms) then
				c.points[#c.points + 1] = { sec(s.ts_ms), 100 * s.cpu_ms / s.dt_ms }
			end
			if num(s.rss_kb) then r.points[#r.points + 1] = { sec(s.ts_ms), s.rss_kb / 1024 } end
		end
		cpu[#cpu + 1], rss[#rss + 1] = c, r
	end
	if #cpu > 0 then
		local more = #order > 8 and (" (8 of %d processes, by CPU used)"):format(#order) or ""
		pg:plot("trace-cpu", "timeseries", { title = "CPU per process" .. more,
			x = { label = "time since the first record", unit = "s" }, y = { label = "CPU", unit = "% of a core" }, series = cpu })
		pg:plot("trace-rss", "timeseries", { title = "Resident memory per process" .. more,
			x = { label = "time since the first record", unit = "s" }, y = { label = "RSS", unit = "MiB" }, series = rss })
	end
	pg:close_plots()
	if #grows == 0 and #cpu == 0 then pg:p("The run has no invocation and no sample yet.", "note") end

	audit(pg, dir)

	if #inv > 0 then
		pg:h(3, "Invocations")
		local rows = {}
		table.sort(inv, function(a, b) return (num(a.ts_start) or 0) < (num(b.ts_start) or 0) end)
		for i, r in ipairs(inv) do
			if i > 200 then break end
			rows[#rows + 1] = { tostring(r.trace_id), tostring(r.node_id), tostring(r.pid),
				table.concat(type(r.argv) == "table" and r.argv or {}, " "):sub(1, 100),
				num(r.ts_start) and num(r.ts_enqueue) and r.ts_start - r.ts_enqueue,
				num(r.ts_end) and num(r.ts_start) and r.ts_end - r.ts_start, num(r.cpu_ms),
				r.exit_code ~= nil and tostring(r.exit_code) or ("signal " .. tostring(r.signal)) }
		end
		pg:table({ "trace_id", "node", "pid", "command", "queued (ms)", "ran (ms)", "CPU (ms)", "exit" }, rows,
			{ true, true, false, true })
		if #inv > 200 then pg:p(("%d more in %s/invocations.jsonl"):format(#inv - 200, base), "note") end
	end
end

return M
