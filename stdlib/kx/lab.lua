-- kx.lab: experiments as scripts — declared parameters, sweeps, repeats,
-- results that survive, statistics, plots and a report.  The manual is
-- docs/lab.md.
--
--   local lab = require "kx.lab"
--   local exp = lab.experiment{
--     name = "spawn", about = "kx.spawn against a shell loop",
--     params = { { "n", type = "int", default = "100,1000", list = true, help = "processes" } },
--     metrics = { time = "ms" }, reps = 5, warmup = 1,
--   }
--   exp:run{ systems = {
--     { "kxrun", function(p) ... return ms end },
--     { "sh",    function(p) ... return ms end },
--   } }
local params = require "kx.lab.params"
local stats = require "kx.lab.stats"
local store = require "kx.lab.store"
local summary = require "kx.lab.summary"

local lab = {
	params = params, stats = stats, store = store, summary = summary,
	plot = require "kx.lab.plot",
}

-- lab.size("64M") -> 67108864; lab.duration("250ms") -> 0.25 (nil, why on bad text)
lab.size = params.parse_value.size
lab.duration = params.parse_value.duration

-- lab.report(dir [, {output=}]) -> path of report.html | nil, message
function lab.report(dir, opts)
	return require("kx.lab.report").write(dir, opts)
end

-- Parameters every experiment has, after its own.
local CONTROL = {
	{ "reps", type = "int", help = "measured runs of each point (and system)" },
	{ "warmup", type = "int", help = "runs before a point's first measured one, not recorded" },
	{ "budget", type = "duration", help = "time budget per point: no new run once it is spent" },
	{ "out", type = "string", meta = "DIR", help = "results directory (results.jsonl, env.json, results.csv, report.html)" },
	{ "report", type = "bool", help = "write report.html and plots/*.svg at the end" },
}

local Exp = {}
Exp.__index = Exp

local function script_path()
	return rawget(_G, "arg") and arg[0] or nil
end

local function fail(def, msg)
	if def.argv then error(msg, 3) end
	io.stderr:write(("kxrun: %s: %s\n"):format(script_path() or def.name, msg))
	os.exit(2)
end

-- lab.experiment{ name=, about=, params={...}, metrics={name=unit}, reps=5,
--   warmup=1, budget=, out=, baseline=, argv=, quiet= } -> experiment
-- (quiet: no summary table at the end, for scripts that print their own)
-- Parses the script's command line (or argv): --help prints the parameters
-- and exits 0; a bad value prints one line naming it and exits 2 (with argv
-- given, both raise an error instead).
function lab.experiment(def)
	if type(def) ~= "table" then
		error(("bad argument #1 to 'experiment' (table expected, got %s)"):format(type(def)), 2)
	end
	local script = script_path()
	local name = def.name or (script and script:match("([^/]+)%.lua$")) or "experiment"
	if not name:match("^[%w_.-]+$") then error(("experiment name %q: letters, digits, _ . - only"):format(name), 2) end
	local list = {}
	for _, p in ipairs(def.params or {}) do
		for _, c in ipairs(CONTROL) do
			if p[1] == c[1] then
				error(("parameter '%s' is kx.lab's own (set its default with %s = ... in the experiment)"):format(p[1], p[1]), 2)
			end
		end
		list[#list + 1] = p
	end
	local out_default = def.out
	if out_default == nil then out_default = "results/" .. name end
	local defaults = { reps = def.reps or 5, warmup = def.warmup or 1, budget = def.budget,
		out = out_default or nil, report = def.report ~= false }
	for _, c in ipairs(CONTROL) do
		local p = { c[1], type = c.type, help = c.help, meta = c.meta, default = defaults[c[1]] }
		list[#list + 1] = p
	end
	local decl = params.declare(list)
	for _, c in ipairs(CONTROL) do decl.byname[c[1]].section, decl.byname[c[1]].control = "Run", true end
	local argv = def.argv
	if not argv then
		argv = {}
		for i = 1, (rawget(_G, "arg") and #arg or 0) do argv[i] = arg[i] end
	end
	local values, err = params.parse(decl, argv)
	if values == "help" then
		if def.argv then error("help", 2) end
		local args = {}
		for _, p in ipairs(decl) do
			if p.positional then args[#args + 1] = ("[%s]"):format(p.meta or p.name:upper()) end
		end
		args[#args + 1] = "[--name=value ...]"
		io.write(params.help(decl, ("usage: kxrun %s %s"):format(script or name, table.concat(args, " ")), def.about))
		os.exit(0)
	end
	if not values then fail(def, err) end
	if values.reps < 1 then fail(def, "--reps: must be at least 1") end
	if values.warmup < 0 then fail(def, "--warmup: must be 0 or more") end
	local exp = setmetatable({
		name = name, about = def.about, decl = decl, params = values,
		metrics = def.metrics or {}, baseline = def.baseline,
		reps = values.reps, warmup = values.warmup, budget = values.budget,
		dir = values.out, script = script, argv = argv, counters = {}, quiet = def.quiet,
	}, Exp)
	return exp
end

-- The experiment's own parameter values (without kx.lab's).
function Exp:point_params()
	local out = {}
	for _, p in ipairs(self.decl) do
		if not p.control then out[p.name] = self.params[p.name] end
	end
	return out
end

local function decl_list(decl)
	local out = {}
	for _, p in ipairs(decl) do
		if not p.control then
			out[#out + 1] = { name = p.name, type = p.type, unit = p.unit, list = p.list, help = p.help }
		end
	end
	return out
end

-- Opens the results store (once) and writes env.json for this session.
function Exp:open()
	if self.store then return self.store end
	local st, err = store.open(self.dir, self.name)
	if not st then error("kx.lab: " .. err, 0) end
	self.store = st
	local prev = st.env or {}
	local sessions = type(prev.sessions) == "table" and prev.sessions or {}
	local env = store.machine()
	env.experiment, env.about = self.name, self.about
	env.script = self.script
	env.argv = self.argv
	env.params = decl_list(self.decl)
	env.values = self:point_params()
	env.metrics = self.metrics
	env.baseline = self.baseline
	env.git = store.git(self.script)
	env.started = kx.time()
	env.loadavg_before = store.loadavg()
	self.session = #sessions + 1
	local copy = {}
	for k, v in pairs(env) do copy[k] = v end
	copy.params, copy.metrics = nil, nil
	sessions[#sessions + 1] = copy
	env.sessions = sessions
	self.env = env
	local ok, werr = st:write_env(env)
	if not ok then error("kx.lab: " .. tostring(werr), 0) end
	return st
end

local function metric_values(self, v)
	if type(v) == "number" then
		local only, count = nil, 0
		for k in pairs(self.metrics) do only, count = k, count + 1 end
		return { [count == 1 and only or "value"] = v }
	end
	if type(v) ~= "table" then
		error(("a measurement returns a number or a table of numbers, not %s"):format(type(v)), 0)
	end
	for k, x in pairs(v) do
		if type(k) ~= "string" or type(x) ~= "number" then
			error(("a measurement's table maps metric names to numbers (got %s = %s)"):format(tostring(k), tostring(x)), 0)
		end
	end
	return v
end

-- exp:record{ point=, system=, values= | error=, rep= } appends one row now.
-- point adds to (or overrides) the experiment's parameter values.
function Exp:record(r)
	local st = self:open()
	local point = self:point_params()
	for k, v in pairs(r.point or {}) do point[k] = v end
	local row = { point = point, system = r.system, t = kx.time(), session = self.session,
		wall_s = r.wall_s, stopped = r.stopped }
	local key = store.key(point, r.system)
	if r.rep then
		row.rep = r.rep
	else
		local counts = self.counters
		if not counts[key] then counts[key] = (st:done())[key] or 0 end
		counts[key] = counts[key] + 1
		row.rep = counts[key]
	end
	if r.error ~= nil then
		row.error = tostring(r.error)
	else
		row.values = metric_values(self, r.values)
		row.units = {}
		for k in pairs(row.values) do row.units[k] = self.metrics[k] end
		for k, u in pairs(r.units or {}) do row.units[k] = u end
		for k, u in pairs(row.units) do if u == "" then row.units[k] = nil end end
		if next(row.units) == nil then row.units = nil end
	end
	local ok, err = st:append(row)
	if not ok then error("kx.lab: " .. err, 0) end
	return row
end

-- Every combination of the axes' values; the other parameters as they are.
local function product(axes, values)
	local points = { values }
	for _, a in ipairs(axes) do
		local v = values[a]
		local next_points = {}
		for _, p in ipairs(points) do
			for _, x in ipairs(type(v) == "table" and v or { v }) do
				local q = {}
				for k, y in pairs(p) do q[k] = y end
				q[a] = x
				next_points[#next_points + 1] = q
			end
		end
		points = next_points
	end
	return points
end

local function eta_text(s)
	if not s or s ~= s or s == math.huge then return "?" end
	s = math.floor(s + 0.5)
	if s >= 3600 then return ("%dh%02dm"):format(s // 3600, s % 3600 // 60) end
	if s >= 60 then return ("%dm%02ds"):format(s // 60, s % 60) end
	return ("%ds"):format(s)
end

-- exp:run{ measure = fn(point, rep) | systems = { {name, fn}, ... },
--          sweep = {names} (default: the list parameters), setup = fn(point),
--          teardown = fn(point) } -> the experiment (finished: see finish())
-- Systems are interleaved (A B A B ...) at each point, after `warmup`
-- unrecorded runs of each.  A point already done in the results directory
-- is skipped; one begun gets only its missing runs.
function Exp:run(spec)
	if type(spec) ~= "table" then error("bad argument #1 to 'run' (table expected)", 2) end
	local systems = spec.systems
	if spec.measure then
		systems = { { nil, spec.measure } }
	elseif type(systems) ~= "table" or #systems == 0 then
		error("bad argument #1 to 'run' (measure = function or systems = { {name, function}, ... } expected)", 2)
	end
	for i, s in ipairs(systems) do
		if type(s[2]) ~= "function" or (spec.systems and type(s[1]) ~= "string") then
			error(("bad argument #1 to 'run' (system #%d must be { name, function })"):format(i), 2)
		end
	end
	if spec.systems and not self.baseline then self.baseline = systems[1][1] end
	local axes = spec.sweep
	if not axes then
		axes = {}
		for _, p in ipairs(self.decl) do
			if p.list and not p.control then axes[#axes + 1] = p.name end
		end
	end
	for _, a in ipairs(axes) do
		if not self.decl.byname[a] then error(("sweep: no parameter '%s'"):format(a), 2) end
	end
	local st = self:open()
	local points = product(axes, self:point_params())
	local counts, closed = st:done()
	local total, done = 0, 0
	for _, pt in ipairs(points) do
		for _, s in ipairs(systems) do
			total = total + self.reps
			local n = closed[store.key(pt)] and self.reps or math.min(counts[store.key(pt, s[1])] or 0, self.reps)
			done = done + n
		end
	end
	local t_start, measured = kx.now(), 0
	if done > 0 then
		kx.log.info("kx.lab: %s: %d of %d runs already in %s; %s", self.name, done, total, self.dir,
			done < total and "running the others" or "nothing left to run")
	end
	for i, pt in ipairs(points) do
		local todo, left = {}, 0
		for _, s in ipairs(systems) do
			local have = counts[store.key(pt, s[1])] or 0
			local n = closed[store.key(pt)] and 0 or math.max(self.reps - have, 0)
			todo[#todo + 1] = { name = s[1], fn = s[2], next_rep = have + 1, left = n }
			left = left + n
		end
		if left > 0 then
			local label = summary.point_label(pt, axes, { params = decl_list(self.decl) })
			if #systems > 1 then label = label .. " (" .. #systems .. " systems)" end
			local function show()
				local rate = measured > 0 and (kx.now() - t_start) / measured or nil
				kx.progress(("%s  point %d/%d %s  ETA %s"):format(self.name, i, #points, label,
					rate and eta_text(rate * (total - done)) or "?"), done, total)
			end
			show()
			if spec.setup then spec.setup(pt) end
			for _, s in ipairs(todo) do
				for _ = 1, s.left > 0 and self.warmup or 0 do
					local v, err = s.fn(pt, 0)
					if v == nil and err then kx.log.warn("kx.lab: warm-up run of %s failed: %s", label, tostring(err)) end
				end
			end
			-- rounds of one run of each system (A B A B ...); the budget is
			-- looked at when a round ends, so that systems keep equal counts
			local t_point, pending = kx.now(), left
			while pending > 0 do
				local last
				for _, s in ipairs(todo) do if s.left > 0 then last = s end end
				for _, s in ipairs(todo) do
					if s.left > 0 then
						local t0 = kx.now()
						local v, err = s.fn(pt, s.next_rep)
						local wall = kx.now() - t0
						if v == false then v = nil end
						pending = pending - 1
						local spent = self.budget and s == last and pending > 0 and kx.now() - t_point >= self.budget
						self:record{ point = pt, system = s.name, rep = s.next_rep, wall_s = wall,
							values = v, error = v == nil and (err or "no value") or nil,
							stopped = spent and "budget" or nil }
						s.next_rep, s.left = s.next_rep + 1, s.left - 1
						done, measured = done + 1, measured + 1
						if spent then
							for _, o in ipairs(todo) do o.left = 0 end
							done, pending = done + pending, 0
						end
						show()
					end
				end
			end
			if spec.teardown then spec.teardown(pt) end
		end
	end
	return self:finish()
end

-- Closes the session: env.json's end and load, results.csv, the summary
-- table on stdout and (with a directory and --report) report.html.
function Exp:finish(opts)
	local st = self:open()
	local env = self.env
	env.ended = kx.time()
	env.loadavg_after = store.loadavg()
	local last = env.sessions[#env.sessions]
	last.ended, last.loadavg_after = env.ended, env.loadavg_after
	st:write_env(env)
	if self.dir then
		local ok, err = store.write_csv(self.dir, st.rows, (function()
			local o = {} for _, p in ipairs(env.params) do o[#o + 1] = p.name end return o end)())
		if not ok then kx.log.warn("kx.lab: %s", err) end
	end
	self.summary = summary.summarize(st.rows, env, { baseline = self.baseline })
	local quiet = self.quiet or (opts and opts.quiet)
	if not quiet and #self.summary.metrics > 0 then io.write(summary.text(self.summary)) end
	if self.dir and self.params.report then
		local path, err = lab.report(self.dir)
		if not path then
			kx.log.warn("kx.lab: no report: %s", err)
		elseif quiet then
			kx.log.info("kx.lab: results in %s/, report %s", self.dir, path)
		else
			io.write(("results: %s/  report: %s\n"):format(self.dir, path))
		end
	end
	st:close()
	self.store = nil
	return self
end

-- Prints "what  ours unit   peer_name  peer unit   ratio Rx" (medians when
-- lists of samples are given) and records the samples under point.figure.
function Exp:beside(what, ours, peer, opts)
	opts = opts or {}
	local unit = opts.unit or ""
	local function list(v) return type(v) == "table" and v or { v } end
	local metric = opts.metric or "value"
	for _, pair in ipairs{ { opts.ours or "kxrun", ours }, { opts.peer or "peer", peer } } do
		for _, v in ipairs(list(pair[2])) do
			self:record{ point = { figure = what }, system = pair[1], values = { [metric] = v }, units = { [metric] = unit } }
		end
	end
	local a, b = stats.median(list(ours)), stats.median(list(peer))
	local line = ("%-44s %10.3f %s   %-22s %10.3f %s   ratio %.1fx"):format(what, a, unit, opts.peer or "peer", b, unit, b / a)
	io.write(line, "\n")
	return a, b
end

-- A recorder of virtual against real time for a kx.vtime experiment:
-- rec:advance(n) / rec:run_until(vt) do what the experiment's do, and write
-- a row to DIR/vtime.jsonl ({label, round, rounds, virtual_ns, dt_virtual_ns,
-- real_s, dt_real_s}) around each call.
function Exp:vtime(vexp, label)
	local path = self.dir and (self:open() and self.dir .. "/vtime.jsonl")
	local rec = { vexp = vexp, label = label or "vtime", t_start = kx.now(), rows = {} }
	local function around(method, ...)
		local v0, t0, r0 = vexp:now(), kx.now(), vexp.rounds
		local now = method(vexp, ...)
		local t1 = kx.now()
		local row = { label = rec.label, round = vexp.rounds, rounds = vexp.rounds - r0,
			virtual_ns = vexp:now(), dt_virtual_ns = vexp:now() - v0,
			real_s = t1 - rec.t_start, dt_real_s = t1 - t0, t = kx.time() }
		rec.rows[#rec.rows + 1] = row
		if path then
			local f = assert(io.open(path, "a"))
			f:setvbuf("no")
			f:write(kx.json.encode(row) .. "\n")
			f:close()
		end
		return now
	end
	rec.advance = function(_, n) return around(vexp.advance, n) end
	rec.run_until = function(_, vt) return around(vexp.run_until, vt) end
	return rec
end

return lab
