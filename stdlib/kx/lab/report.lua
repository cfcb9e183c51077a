-- kx.lab.report: one self-contained report.html for a directory (plots
-- inline as SVG, tables, the environment; no external file, script or
-- font), with each plot also saved as DIR/plots/NAME.svg.  It shows what
-- the directory holds: a kx.lab experiment's results (results.jsonl,
-- env.json), virtual-against-real time of a kx.vtime experiment
-- (vtime.jsonl), a kx.trace run (run.json, raw/ or CTS/).
local stats = require "kx.lab.stats"
local store = require "kx.lab.store"
local summary = require "kx.lab.summary"
local plot = require "kx.lab.plot"
local params = require "kx.lab.params"

local M = {}
local esc = plot.escape

local CSS = [[
body{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;margin:24px auto;max-width:1060px;color:#222;padding:0 12px}
h1{font-size:24px;margin-bottom:4px}h2{font-size:19px;margin-top:34px;border-bottom:1px solid #ccc;padding-bottom:3px}
h3{font-size:15px;margin-top:22px}.about{color:#555;margin-top:0}
table{border-collapse:collapse;margin:8px 0 14px;font-size:13px}
th,td{border:1px solid #d6d6d6;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#f1f3f5}td.l,th.l{text-align:left;white-space:normal}
.plots{display:flex;flex-wrap:wrap;gap:10px}.plots svg{max-width:100%;height:auto;border:1px solid #eee}
.wide{overflow-x:auto}.note{color:#666;font-size:13px}.bad{color:#b00020;font-weight:bold}.ok{color:#1b7f3b;font-weight:bold}
]]

-- An HTML page being built, with its plots.
local Page = {}
Page.__index = Page

local function page(title) return setmetatable({ title = title, parts = {}, plots = {} }, Page) end

function Page:add(s) self.parts[#self.parts + 1] = s end
function Page:h(level, text) self:add(("<h%d>%s</h%d>"):format(level, esc(text), level)) end
function Page:p(text, class) self:add(("<p%s>%s</p>"):format(class and (' class="' .. class .. '"') or "", esc(text))) end

-- A table: header list (names = false: no header row), rows of cells;
-- cells are escaped, numbers formatted; left[i]: column i aligned left.
function Page:table(header, rows, left)
	local out = { '<div class="wide"><table>' }
	if header.names ~= false then
		out[#out + 1] = "<tr>"
		for i, h in ipairs(header) do
			out[#out + 1] = ("<th%s>%s</th>"):format((left and left[i]) and ' class="l"' or "", esc(h))
		end
		out[#out + 1] = "</tr>"
	end
	for _, r in ipairs(rows) do
		out[#out + 1] = "<tr>"
		for i = 1, #header do
			local v = r[i]
			local text = type(v) == "number" and stats.fmt(v) or tostring(v == nil and "" or v)
			out[#out + 1] = ("<td%s>%s</td>"):format((left and left[i]) and ' class="l"' or "", esc(text))
		end
		out[#out + 1] = "</tr>"
	end
	out[#out + 1] = "</table></div>"
	self:add(table.concat(out))
end

-- A chart of kind (line, bar, cdf, timeseries, gantt): two side by side on
-- the page, a Gantt chart across it.
function Page:plot(name, kind, spec)
	spec.width = spec.width or (kind == "gantt" and 1040 or 520)
	spec.height = spec.height or (kind ~= "gantt" and 360 or nil)
	local svg = plot[kind](spec)
	self.plots[#self.plots + 1] = { name = name, svg = svg }
	self:add(svg)
end

function Page:open_plots() self:add('<div class="plots">') end
function Page:close_plots() self:add("</div>") end

function Page:html()
	return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>%s</title>'
		.. '<meta name="viewport" content="width=device-width, initial-scale=1"><style>%s</style></head><body>\n%s\n'
		.. '<p class="note">Written by kxrun %s (kx.lab) on %s.</p></body></html>\n')
		:format(esc(self.title), CSS, table.concat(self.parts, "\n"), esc(kx.version), os.date("!%Y-%m-%d %H:%M:%S UTC"))
end

M.page = page

local function file_name(s) return (tostring(s):gsub("[^%w_.-]+", "_")) end
M.file_name = file_name

local function iso(t) return t and os.date("!%Y-%m-%d %H:%M:%S UTC", math.floor(t)) or "-" end
M.iso = iso

-- ---- a kx.lab experiment --------------------------------------------------------------

local function numeric_axis(sum, m)
	for _, a in ipairs(sum.axes) do
		local ok = true
		for _, g in ipairs(m.groups) do
			if type(g.point[a]) ~= "number" then ok = false break end
		end
		if ok then return a end
	end
end

local function series_name(g, sum, skip)
	local parts = {}
	if g.system then parts[#parts + 1] = g.system end
	for _, a in ipairs(sum.axes) do
		if a ~= skip then parts[#parts + 1] = ("%s=%s"):format(a, params.format(sum.decls[a], g.point[a])) end
	end
	return #parts > 0 and table.concat(parts, " ") or "median"
end

local function group_name(g)
	local s = (g.system or "") .. (g.label ~= "" and ((g.system and " " or "") .. g.label) or "")
	return s ~= "" and s or "all runs"
end

-- A log scale for positive values spanning 16x or more; base 2 when they
-- are all powers of two.
local function log_axis(values)
	local lo, hi, pow2 = math.huge, -math.huge, true
	for _, v in ipairs(values) do
		lo, hi = math.min(lo, v), math.max(hi, v)
		local i = math.tointeger(v)
		pow2 = pow2 and i ~= nil and i > 0 and i & (i - 1) == 0
	end
	return lo > 0 and hi / lo >= 16, pow2 and 2 or nil
end

local function metric_plots(pg, sum, m, name, t0)
	local title = m.name .. (m.unit and (" (" .. m.unit .. ")") or "")
	local yaxis = { label = m.name, unit = m.unit }
	pg:open_plots()
	local xa = numeric_axis(sum, m)
	if xa then
		local series, byname, xs, ys = {}, {}, {}, {}
		for _, g in ipairs(m.groups) do
			local sn = series_name(g, sum, xa)
			local s = byname[sn]
			if not s then s = { name = sn, points = {} } byname[sn] = s series[#series + 1] = s end
			s.points[#s.points + 1] = { g.point[xa], g.summary.median, g.summary.ci_lo, g.summary.ci_hi }
			xs[#xs + 1] = g.point[xa]
			ys[#ys + 1] = g.summary.ci_lo or g.summary.median
			ys[#ys + 1] = g.summary.ci_hi or g.summary.median
		end
		local d = sum.decls[xa] or {}
		local xlog, xbase = log_axis(xs)
		pg:plot(name .. "-line", "line", { title = ("%s against %s (median, 95%% CI)"):format(m.name, xa),
			x = { label = xa, unit = d.type == "size" and "B" or d.type == "duration" and "s" or d.unit, log = xlog, base = xbase },
			y = { label = m.name, unit = m.unit, log = (log_axis(ys)) }, series = series })
	else
		local cats, catidx, series, byname = {}, {}, {}, {}
		for _, g in ipairs(m.groups) do
			local c = g.label ~= "" and g.label or "all runs"
			if not catidx[c] then cats[#cats + 1] = c catidx[c] = #cats end
			local sn = g.system or "median"
			local s = byname[sn]
			if not s then s = { name = sn, values = {} } byname[sn] = s series[#series + 1] = s end
			s.values[catidx[c]] = { g.summary.median, g.summary.ci_lo, g.summary.ci_hi }
		end
		pg:plot(name .. "-bar", "bar", { title = title .. ": median, 95% CI", categories = cats, y = yaxis,
			x = { label = #sum.axes > 0 and table.concat(sum.axes, ", ") or "" }, series = series })
	end
	local cdf, all = {}, {}
	for i, g in ipairs(m.groups) do
		if i <= 8 then cdf[#cdf + 1] = { name = group_name(g), values = g.values } end
		for _, v in ipairs(g.values) do all[#all + 1] = v end
	end
	pg:plot(name .. "-cdf", "cdf", { title = title .. ": distribution of runs" .. (#m.groups > 8 and " (first 8 points)" or ""),
		x = { label = m.name, unit = m.unit, log = log_axis(all) }, series = cdf })
	local ts, byname = {}, {}
	for _, g in ipairs(m.groups) do
		local sn = g.system or (#m.groups <= 8 and group_name(g) or "runs")
		local s = byname[sn]
		if not s then s = { name = sn, points = {} } byname[sn] = s ts[#ts + 1] = s end
		for i, v in ipairs(g.values) do
			if g.times[i] then s.points[#s.points + 1] = { g.times[i] - t0, v } end
		end
	end
	pg:plot(name .. "-time", "timeseries", { title = title .. " of each run over time (drift)",
		x = { label = "time since the first run", unit = "s" }, y = yaxis, series = ts })
	pg:close_plots()
end

local function metric_table(pg, sum, m)
	local header, left = {}, {}
	for _, a in ipairs(sum.axes) do header[#header + 1] = a left[#header] = true end
	if #sum.systems > 0 then header[#header + 1] = "system" left[#header] = true end
	for _, h in ipairs{ "runs", "median", "95% CI of median", "mean", "stddev", "CoV", "min", "p5", "p95", "p99", "max" } do
		header[#header + 1] = h
	end
	if #sum.systems > 1 then header[#header + 1] = ("ratio to %s [95%% CI]"):format(sum.baseline) end
	local rows = {}
	for _, g in ipairs(m.groups) do
		local s, r = g.summary, {}
		for _, a in ipairs(sum.axes) do r[#r + 1] = params.format(sum.decls[a], g.point[a]) end
		if #sum.systems > 0 then r[#r + 1] = g.system or "" end
		local cells = { s.n, s.median, summary.ci_text(s.ci_lo, s.ci_hi), s.mean, s.stddev or "-",
			s.cov and ("%.1f%%"):format(s.cov * 100) or "-", s.min, s.p5, s.p95, s.p99, s.max }
		for i = 1, 11 do r[#r + 1] = cells[i] end
		if #sum.systems > 1 then
			r[#r + 1] = g.ratio and (stats.fmt(g.ratio.ratio) .. " " .. summary.ci_text(g.ratio.lo, g.ratio.hi))
				or (g.system == sum.baseline and "1" or "-")
		end
		rows[#rows + 1] = r
	end
	pg:table(header, rows, left)
end

local function env_section(pg, env, rows, problems)
	pg:h(2, "Environment")
	local git = env.git
	local load = function(l) return l and table.concat(l, " ") or "-" end
	local kv = {
		{ "experiment", env.experiment }, { "script", env.script },
		{ "git commit", git and (git.commit .. (git.dirty and " (with uncommitted changes)" or "")) or "not in a git repository" },
		{ "kxrun", env.kxrun_version }, { "kernel", env.kernel }, { "os", env.os },
		{ "CPU", ("%s × %s"):format(tostring(env.cpu_count), tostring(env.cpu_model)) },
		{ "memory", env.memory_mb and ("%d MB"):format(env.memory_mb) or "-" },
		{ "host", env.hostname },
		{ "load average before / after", ("%s / %s"):format(load(env.loadavg_before), load(env.loadavg_after)) },
		{ "rows", #rows },
	}
	pg:table({ "", "", names = false }, kv, { true, true })
	local values = {}
	for _, p in ipairs(env.params or {}) do
		values[#values + 1] = { p.name, params.format(p, (env.values or {})[p.name]), p.help or "" }
	end
	if #values > 0 then
		pg:h(3, "Parameters")
		pg:table({ "name", "value", "meaning" }, values, { true, true, true })
	end
	local sess = {}
	for i, s in ipairs(env.sessions or {}) do
		sess[#sess + 1] = { i, iso(s.started), s.ended and iso(s.ended) or "interrupted",
			load(s.loadavg_before), load(s.loadavg_after), table.concat(s.argv or {}, " ") }
	end
	if #sess > 0 then
		pg:h(3, "Sessions")
		pg:table({ "#", "started", "ended", "load before", "load after", "arguments" }, sess,
			{ false, true, true, true, true, true })
	end
	for _, p in ipairs(problems or {}) do pg:p(p, "bad") end
end

-- The experiment's sections (results.jsonl present); returns a function
-- that adds its environment (at the end of the page).
function M.experiment(pg, dir)
	local rows, env, problems = store.read(dir)
	env = env or {}
	local sum = summary.summarize(rows, env)
	pg.title = (env.experiment or "experiment") .. " — kx.lab report"
	pg:h(1, env.experiment or dir)
	if env.about then pg:p(env.about, "about") end
	pg:p(("%d runs in %s; %d failed. Results: results.jsonl, results.csv; plots: plots/*.svg.")
		:format(#rows, dir, #sum.failures), "note")
	for _, m in ipairs(sum.metrics) do
		pg:h(2, m.name .. (m.unit and (" (" .. m.unit .. ")") or ""))
		metric_table(pg, sum, m)
		local t0 = math.huge
		for _, g in ipairs(m.groups) do
			for _, t in ipairs(g.times) do t0 = math.min(t0, t) end
		end
		metric_plots(pg, sum, m, file_name(m.name .. (m.unit and ("_" .. m.unit) or "")), t0)
	end
	if #sum.failures > 0 then
		pg:h(2, "Failed runs")
		local fr = {}
		for i, r in ipairs(sum.failures) do
			if i > 50 then break end
			fr[#fr + 1] = { summary.point_label(r.point, sum.axes, env), r.system or "", r.rep, r.error }
		end
		pg:table({ "point", "system", "rep", "error" }, fr, { true, true, false, true })
	end
	return function() env_section(pg, env, rows, problems) end
end

-- report.write(dir, {output=}) -> path | nil, message
function M.write(dir, opts)
	if type(dir) ~= "string" then
		error(("bad argument #1 to 'report' (directory expected, got %s)"):format(type(dir)), 2)
	end
	dir = dir:gsub("/+$", "")
	local runs = require "kx.lab.runs"
	local has_results = kx.read_file(dir .. "/results.jsonl") ~= nil
	local has_vtime = kx.read_file(dir .. "/vtime.jsonl") ~= nil
	local has_trace = runs.is_trace(dir)
	if not (has_results or has_vtime or has_trace) then
		return nil, ("%s has no results.jsonl (kx.lab), vtime.jsonl (kx.vtime rounds) nor run.json, raw/ or CTS/ (kx.trace)"):format(dir)
	end
	local pg = page(dir .. " — kxrun report")
	local env = has_results and M.experiment(pg, dir)
	if has_vtime then runs.vtime(pg, dir, not has_results) end
	if has_trace then runs.trace(pg, dir, not (has_results or has_vtime)) end
	if env then env() end
	local out = opts and opts.output or (dir .. "/report.html")
	local ok, err = kx.mkdir(dir .. "/plots")
	if not ok then return nil, err end
	for _, p in ipairs(pg.plots) do
		ok, err = kx.write_file(("%s/plots/%s.svg"):format(dir, file_name(p.name)), p.svg)
		if not ok then return nil, err end
	end
	ok, err = kx.write_file(out, pg:html())
	if not ok then return nil, err end
	return out
end

return M
