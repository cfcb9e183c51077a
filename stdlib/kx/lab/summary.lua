-- kx.lab.summary: results rows grouped by metric, point and system, with
-- their statistics and the ratios between systems; and the terminal table.
local stats = require "kx.lab.stats"
local params = require "kx.lab.params"
local store = require "kx.lab.store"

local M = {}

-- The parameters that vary across rows (the sweep's axes), in `order` first.
function M.axes(rows, order)
	local seen, distinct = {}, {}
	for _, r in ipairs(rows) do
		for k, v in pairs(type(r.point) == "table" and r.point or {}) do
			local e = kx.json.encode(v)
			distinct[k] = distinct[k] or {}
			if not distinct[k][e] then
				distinct[k][e] = true
				seen[k] = (seen[k] or 0) + 1
			end
		end
	end
	local axes, taken = {}, {}
	for _, k in ipairs(order or {}) do
		if (seen[k] or 0) > 1 and not taken[k] then axes[#axes + 1] = k taken[k] = true end
	end
	local rest = {}
	for k, n in pairs(seen) do if n > 1 and not taken[k] then rest[#rest + 1] = k end end
	table.sort(rest)
	for _, k in ipairs(rest) do axes[#axes + 1] = k end
	return axes
end

-- Declarations by name from env.json's params list (types for formatting).
local function decls(env)
	local out = {}
	for _, p in ipairs(env and env.params or {}) do out[p.name] = p end
	return out
end

function M.point_label(point, axes, env)
	local d, parts = decls(env), {}
	for _, a in ipairs(axes) do
		local v = point and point[a]
		parts[#parts + 1] = ("%s=%s"):format(a, params.format(d[a], v))
	end
	return table.concat(parts, " ")
end

-- summarize(rows, env, {baseline=}) -> {
--   axes = {...}, systems = {...}, baseline = name, failures = {rows},
--   metrics = { {name=, unit=, groups = { {point=, system=, label=, values=,
--               times=, summary=, ratio=} } } } }
function M.summarize(rows, env, opts)
	local order = {}
	for _, p in ipairs(env and env.params or {}) do order[#order + 1] = p.name end
	local out = { axes = M.axes(rows, order), systems = {}, metrics = {}, failures = {}, decls = decls(env) }
	local sysseen, metrics, mindex = {}, {}, {}
	for _, r in ipairs(rows) do
		if r.system and not sysseen[r.system] then
			sysseen[r.system] = true
			out.systems[#out.systems + 1] = r.system
		end
		if r.error then out.failures[#out.failures + 1] = r end
		for name, v in pairs(type(r.values) == "table" and r.values or {}) do
			if type(v) == "number" then
				local unit = type(r.units) == "table" and r.units[name] or nil
				local mk = name .. "\0" .. (unit or "")
				local m = mindex[mk]
				if not m then
					m = { name = name, unit = unit, groups = {}, byk = {} }
					mindex[mk] = m
					metrics[#metrics + 1] = m
				end
				local gk = store.key(r.point or {}, r.system)
				local g = m.byk[gk]
				if not g then
					g = { point = r.point or {}, system = r.system, values = {}, times = {},
						label = M.point_label(r.point, out.axes, env) }
					m.byk[gk] = g
					m.groups[#m.groups + 1] = g
				end
				g.values[#g.values + 1] = v
				g.times[#g.times + 1] = r.t
			end
		end
	end
	table.sort(metrics, function(a, b) return a.name < b.name or a.name == b.name and (a.unit or "") < (b.unit or "") end)
	out.baseline = opts and opts.baseline or (env and env.baseline) or out.systems[1]
	for _, m in ipairs(metrics) do
		for _, g in ipairs(m.groups) do g.summary = stats.summary(g.values) end
		if #out.systems > 1 then
			for _, g in ipairs(m.groups) do
				if g.system ~= out.baseline then
					local base = m.byk[store.key(g.point, out.baseline)]
					if base then g.ratio = stats.ratio(g.values, base.values) end
				end
			end
		end
		m.byk = nil
	end
	out.metrics = metrics
	return out
end

local function ci_text(lo, hi)
	if not lo then return "" end
	return ("[%s, %s]"):format(stats.fmt(lo), stats.fmt(hi))
end
M.ci_text = ci_text

-- The aligned terminal table(s), one per metric.
function M.text(sum)
	local parts = {}
	for _, m in ipairs(sum.metrics) do
		local header = {}
		for _, a in ipairs(sum.axes) do header[#header + 1] = a end
		if #sum.systems > 0 then header[#header + 1] = "system" end
		for _, h in ipairs{ "runs", "median", "95% CI", "mean", "CoV", "min", "p95", "max" } do header[#header + 1] = h end
		local with_ratio = #sum.systems > 1
		if with_ratio then header[#header + 1] = ("ratio to %s [95%% CI]"):format(sum.baseline) end
		local rows = {}
		for _, g in ipairs(m.groups) do
			local s, row = g.summary, {}
			for _, a in ipairs(sum.axes) do row[#row + 1] = params.format(sum.decls[a], g.point[a]) end
			if #sum.systems > 0 then row[#row + 1] = g.system or "" end
			row[#row + 1] = s.n
			row[#row + 1] = s.median
			row[#row + 1] = ci_text(s.ci_lo, s.ci_hi)
			row[#row + 1] = s.mean
			row[#row + 1] = s.cov and ("%.1f%%"):format(s.cov * 100) or "-"
			row[#row + 1] = s.min
			row[#row + 1] = s.p95
			row[#row + 1] = s.max
			if with_ratio then
				row[#row + 1] = g.ratio and ("%s %s"):format(stats.fmt(g.ratio.ratio), ci_text(g.ratio.lo, g.ratio.hi))
					or (g.system == sum.baseline and "1" or "-")
			end
			rows[#rows + 1] = row
		end
		parts[#parts + 1] = ("%s%s\n"):format(m.name, m.unit and (" (" .. m.unit .. ")") or "")
			.. stats.table(header, rows)
	end
	if #sum.failures > 0 then
		parts[#parts + 1] = ("%d failed run(s); first: %s\n"):format(#sum.failures, tostring(sum.failures[1].error))
	end
	return table.concat(parts, "\n")
end

return M
