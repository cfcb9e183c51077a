-- kx.lab: parameters, statistics (against Python's statistics module),
-- sweeps, repeats, resuming, CSV/JSONL, plots and the report.
local lab = require "kx.lab"
local params, stats, store, plot = lab.params, lab.stats, lab.store, lab.plot

local need = dofile((os.getenv("ROOT") or ".") .. "/tests/need.lua")
local PY = "/usr/bin/python3"

local function tmpdir() return assert(kx.tmpdir("lab-spec")) end

local function read(path) return assert(kx.read_file(path)) end

-- Runs a Python program with `input` on stdin; returns its stdout decoded as JSON.
local function python(code, input)
	local rc, out, err = kx.exec{ PY, "-c", code, input = input }
	assert(rc == 0, "python3 failed: " .. tostring(err))
	return assert(kx.json.decode(out))
end

local function close(a, b, what)
	local tol = 1e-9 * math.max(1, math.abs(a), math.abs(b))
	assert(math.abs(a - b) <= tol, ("%s: %.17g, Python says %.17g"):format(what, a, b))
end

describe("kx.lab parameters", function()
	local decl = params.declare{
		{ "size", type = "size", default = "64M", help = "working set" },
		{ "threads", type = "int", default = "1,2,4", list = true, help = "workers" },
		{ "interval", type = "duration", default = "250ms" },
		{ "verbose", type = "bool", default = false },
		{ "backend", type = "choice", choices = { "signal", "freezer" }, default = "signal" },
		{ "ratio", type = "number", default = 0.5 },
		{ "label", type = "string" },
		{ "iters", type = "int", default = 10, positional = true },
	}

	it("parse sizes with K, M, G, T (1024) and KB, MB, GB (1000)", function()
		local size = params.parse_value.size
		assert.are.equal(512, size("512"))
		assert.are.equal(65536, size("64K"))
		assert.are.equal(65536, size("64k"))
		assert.are.equal(1610612736, size("1.5G"))
		assert.are.equal(1 << 40, size("1T"))
		assert.are.equal(4096, size("4KiB"))
		assert.are.equal(2000000, size("2MB"))
		assert.are.equal(100, size("100B"))
		assert.is_nil(size("1X"))
		assert.is_nil(size("G"))
		assert.is_nil(size("-1K"))
		local v, err = size("0.3K")
		assert.is_nil(v)
		assert.matches("whole number of bytes", err)
	end)

	it("parse durations in ns, us, ms, s, min, h (a bare number is seconds)", function()
		local d = params.parse_value.duration
		assert.are.equal(0.25, d("250ms"))
		assert.are.equal(2, d("2s"))
		assert.are.equal(90, d("1.5min"))
		assert.are.equal(3600, d("1h"))
		assert.are.equal(30, d("30"))
		assert.are.equal(5e-6, d("5us"))
		assert.is_nil(d("5m"))
		assert.is_nil(d("fast"))
	end)

	it("take --name=value and --name value, lists, flags, choices and positional values", function()
		local v = assert(params.parse(decl, { "--size=1G", "--threads", "8,16", "--interval", "2s",
			"--verbose", "--backend=freezer", "--ratio", "0.75", "--label", "a,b", "1000" }))
		assert.are.equal(1 << 30, v.size)
		assert.are.same({ 8, 16 }, v.threads)
		assert.are.equal(2, v.interval)
		assert.is_true(v.verbose)
		assert.are.equal("freezer", v.backend)
		assert.are.equal(0.75, v.ratio)
		assert.are.equal("a,b", v.label)
		assert.are.equal(1000, v.iters)
		local d = assert(params.parse(decl, {}))
		assert.are.equal(64 << 20, d.size)
		assert.are.same({ 1, 2, 4 }, d.threads)
		assert.are.equal(0.25, d.interval)
		assert.is_false(d.verbose)
		assert.is_nil(d.label)
		assert.is_false(assert(params.parse(decl, { "--verbose", "--no-verbose" })).verbose)
		assert.is_false(assert(params.parse(decl, { "--verbose=no" })).verbose)
	end)

	it("name the parameter in one line when a value is bad", function()
		local cases = {
			{ { "--size=12Q" }, '^%-%-size: "12Q" is not a size' },
			{ { "--threads", "1,x" }, '^%-%-threads: "x" is not an integer' },
			{ { "--threads", "1,,2" }, "^%-%-threads: .*empty item" },
			{ { "--interval=soon" }, '^%-%-interval: "soon" is not a duration' },
			{ { "--backend", "kmod" }, '^%-%-backend: "kmod" is not one of signal, freezer' },
			{ { "--ratio" }, "^flag '%-%-ratio' needs a value %(see %-%-help%)" },
			{ { "--sizes=1G" }, "^unknown flag '%-%-sizes' %(see %-%-help%)" },
			{ { "1", "2" }, "^unexpected argument '2'" },
			{ { "--verbose=maybe" }, "^flag '%-%-verbose' wants true or false" },
		}
		for _, c in ipairs(cases) do
			local v, err = params.parse(decl, c[1])
			assert.is_nil(v)
			assert.matches(c[2], err)
			assert.is_nil(err:find("\n"), "one line: " .. err)
		end
		assert.are.equal("help", params.parse(decl, { "--size=1G", "--help" }))
	end)

	it("list every parameter with its default in --help", function()
		local text = params.help(decl, "usage: kxrun x.lua", "what it does")
		assert.matches("usage: kxrun x.lua\nwhat it does\n", text, 1, true)
		assert.matches("%-%-size SIZE%s+working set %(default 64M%)", text)
		assert.matches("%-%-threads N,%.%.%.%s+workers %(default 1,2,4%)", text)
		assert.matches("%-%-interval TIME%s+%(default 250ms%)", text)
		assert.matches("%-%-backend signal|freezer", text)
	end)

	it("refuse a bad declaration when it is made", function()
		assert.has_error(function() params.declare{ { "x", type = "color" } } end)
		assert.has_error(function() params.declare{ { "x", type = "size", default = "lots" } } end)
		assert.has_error(function() lab.experiment{ argv = {}, params = { { "reps", type = "int" } } } end)
	end)
end)

describe("kx.lab statistics", function()
	-- data sets with ties, odd and even sizes, skew and outliers
	local sets = {}
	local rng = stats.rng(42)
	for _, n in ipairs{ 2, 3, 7, 10, 51, 200 } do
		local xs = {}
		for i = 1, n do xs[i] = (rng(100000) / 1000) ^ 2 / 100 + (i % 5 == 0 and rng(3) or 0) end
		sets[#sets + 1] = xs
	end
	sets[#sets + 1] = { 5, 5, 5, 5, 1, 9 }

	it("agree with Python's statistics module", function()
		if not need("python3") then return end
		local expect = python([[
import json, statistics, sys
out = []
for xs in json.load(sys.stdin):
    q = statistics.quantiles(xs, n=100, method="inclusive")
    out.append(dict(median=statistics.median(xs), mean=statistics.fmean(xs),
        stdev=statistics.stdev(xs), min=min(xs), max=max(xs),
        p5=q[4], p95=q[94], p99=q[98]))
print(json.dumps(out))
]], kx.json.encode(sets))
		for i, xs in ipairs(sets) do
			local s, e = stats.summary(xs), expect[i]
			for _, k in ipairs{ "median", "mean", "min", "max", "p5", "p95", "p99" } do
				close(s[k], e[k], ("set %d %s"):format(i, k))
			end
			close(s.stddev, e.stdev, ("set %d stddev"):format(i))
			close(s.cov, e.stdev / math.abs(e.mean), ("set %d CoV"):format(i))
			assert.are.equal(#xs, s.n)
		end
	end)

	it("give a bootstrap interval of the median near the order-statistic interval", function()
		if not need("python3") then return end
		-- Python: the distribution-free 95% interval of the median from
		-- binomial order statistics; a percentile bootstrap lands close to it
		local xs = sets[6]
		local expect = python([[
import json, math, sys
xs = sorted(json.load(sys.stdin)); n = len(xs)
cdf = 0.0; j = 0
for k in range(n + 1):
    p = math.comb(n, k) / 2 ** n
    if cdf + p > 0.025: j = k; break
    cdf += p
print(json.dumps(dict(lo=xs[j - 1], hi=xs[n - j], lo_wide=xs[j - 4], hi_wide=xs[n - j + 3])))
]], kx.json.encode(xs))
		local lo, hi = stats.median_ci(xs)
		local s = stats.sorted(xs)
		local m = stats.median(xs)
		assert.is_true(lo <= m and m <= hi)
		-- within three ranks of the exact interval's ends
		assert.is_true(lo >= expect.lo_wide and hi <= expect.hi_wide,
			("bootstrap [%g, %g], order statistics [%g, %g]"):format(lo, hi, expect.lo, expect.hi))
		assert.is_true(lo < s[#s // 2] and hi > s[#s // 2 + 1])
		-- the same data give the same interval (fixed seed)
		assert.are.same({ lo, hi }, { stats.median_ci(xs) })
		assert.are.same({ 7, 7 }, { stats.median_ci{ 7 } })
	end)

	it("give the ratio of medians with an interval around it", function()
		if not need("python3") then return end
		local a, b = {}, {}
		for i = 1, 40 do
			b[i] = 10 + (i % 7) * 0.1
			a[i] = 2 * b[i]
		end
		local r = stats.ratio(a, b)
		local expect = python([[
import json, statistics, sys
a, b = json.load(sys.stdin)
print(json.dumps(statistics.median(a) / statistics.median(b)))
]], kx.json.encode{ a, b })
		close(r.ratio, expect, "ratio")
		assert.is_true(r.lo <= 2 and r.hi >= 2 and r.lo > 1.8 and r.hi < 2.2,
			("ratio interval [%g, %g]"):format(r.lo, r.hi))
		assert.is_nil(stats.ratio({ 1 }, { 0 }))
	end)

	it("print an aligned table", function()
		local t = stats.table({ "system", "median" }, { { "kx", 1.5 }, { "shell loop", 12.25 } })
		local lines = {}
		for l in t:gmatch("[^\n]+") do lines[#lines + 1] = l end
		assert.are.equal(4, #lines)
		assert.are.equal(#lines[1], #lines[3])
		assert.are.equal(#lines[3], #lines[4])
		assert.matches("^shell loop%s+12%.25$", lines[4])
	end)
end)

describe("kx.lab experiments", function()
	local dir
	before_each(function() dir = tmpdir() end)
	after_each(function() kx.exec{ "rm", "-rf", dir } end)

	local function experiment(argv, extra)
		local def = { name = "spec", argv = argv, out = dir .. "/out", metrics = { time = "ms" }, quiet = true,
			params = { { "n", type = "int", default = "1,2,3", list = true }, { "mode", type = "string", default = "x,y", list = true } } }
		for k, v in pairs(extra or {}) do def[k] = v end
		return lab.experiment(def)
	end

	it("sweep the product, warm up, and interleave systems (A B A B)", function()
		local calls = {}
		local exp = experiment({ "--reps", "2", "--warmup", "1", "--no-report" })
		exp:run{ systems = {
			{ "A", function(p, rep) calls[#calls + 1] = ("A%d%s%d"):format(p.n, p.mode, rep) return p.n end },
			{ "B", function(p, rep) calls[#calls + 1] = ("B%d%s%d"):format(p.n, p.mode, rep) return 2 * p.n end },
		} }
		assert.are.same({ "A1x0", "B1x0", "A1x1", "B1x1", "A1x2", "B1x2" }, { table.unpack(calls, 1, 6) })
		assert.are.equal(6 * 6, #calls)
		local rows = store.read(dir .. "/out")
		assert.are.equal(6 * 4, #rows)
		local sum = exp.summary
		assert.are.same({ "n", "mode" }, sum.axes)
		assert.are.same({ "A", "B" }, sum.systems)
		for _, g in ipairs(sum.metrics[1].groups) do
			if g.system == "B" then assert.are.equal(2, g.ratio.ratio) end
		end
	end)

	it("continue a directory where it stopped, running only what is missing", function()
		local exp = experiment({ "--reps", "3", "--warmup", "0", "--no-report" })
		local n = 0
		local ok = pcall(exp.run, exp, { measure = function(p)
			n = n + 1
			if n == 8 then error("interrupted") end
			return p.n
		end })
		assert.is_false(ok)
		assert.are.equal(7, #store.read(dir .. "/out"))
		local again = {}
		exp = experiment({ "--reps", "3", "--warmup", "0", "--no-report" })
		exp:run{ measure = function(p, rep) again[#again + 1] = p.n .. p.mode .. rep return p.n end }
		assert.are.equal(18 - 7, #again)
		assert.are.equal("2x2", again[1])   -- the point begun: its missing runs only
		local seen = {}
		for _, r in ipairs(store.read(dir .. "/out")) do
			local k = store.key(r.point) .. r.rep
			assert.is_nil(seen[k], "run twice: " .. k)
			seen[k] = true
		end
		local count = 0
		for _ in pairs(seen) do count = count + 1 end
		assert.are.equal(18, count)
		-- a third run has nothing to do; a larger --reps adds runs
		local third = 0
		experiment({ "--reps", "3", "--no-report" }):run{ measure = function() third = third + 1 return 1 end }
		assert.are.equal(0, third)
		experiment({ "--reps", "4", "--warmup", "0", "--no-report" }):run{ measure = function() third = third + 1 return 1 end }
		assert.are.equal(6, third)
		local env = kx.json.decode(read(dir .. "/out/env.json"))
		assert.are.equal(4, #env.sessions)
		assert.is_nil(env.sessions[1].ended)   -- interrupted
		assert.is_number(env.sessions[2].ended)
	end)

	it("stop a point when its time budget is spent, and remember it", function()
		local exp = experiment({ "--reps", "50", "--warmup", "0", "--budget", "30ms", "--n", "1", "--mode", "x", "--no-report" })
		local runs = 0
		exp:run{ systems = {
			{ "A", function() runs = runs + 1 kx.sleep(0.01) return 1 end },
			{ "B", function() runs = runs + 1 kx.sleep(0.01) return 1 end },
		} }
		assert.is_true(runs >= 2 and runs < 20, "runs: " .. runs)
		assert.are.equal(0, runs % 2)   -- whole rounds: both systems as often
		local rows = store.read(dir .. "/out")
		assert.are.equal("budget", rows[#rows].stopped)
		local again = 0
		experiment({ "--reps", "50", "--budget", "30ms", "--n", "1", "--mode", "x", "--no-report" })
			:run{ measure = function() again = again + 1 return 1 end }
		assert.are.equal(0, again)
	end)

	it("record failed runs with their message and keep going", function()
		local exp = experiment({ "--reps", "2", "--warmup", "0", "--n", "1", "--mode", "x", "--no-report" })
		local i = 0
		exp:run{ measure = function() i = i + 1 if i == 1 then return nil, "no luck" end return 5 end }
		local rows = store.read(dir .. "/out")
		assert.are.equal("no luck", rows[1].error)
		assert.is_nil(rows[1].values)
		assert.are.equal(5, rows[2].values.time)
		assert.are.equal(1, #exp.summary.failures)
	end)

	it("write env.json with the machine, the load and the git commit", function()
		experiment({ "--reps", "1", "--n", "1", "--mode", "x", "--no-report" }):run{ measure = function() return 1 end }
		local env = kx.json.decode(read(dir .. "/out/env.json"))
		assert.are.equal("spec", env.experiment)
		assert.are.equal(kx.version, env.kxrun_version)
		assert.matches("^%d+%.", env.kernel)
		assert.is_true(env.cpu_count >= 1)
		assert.is_string(env.cpu_model)
		assert.is_true(env.memory_mb > 0)
		assert.are.equal(3, #env.loadavg_before)
		assert.are.equal(3, #env.loadavg_after)
		assert.is_true(env.ended >= env.started)
		-- (the git commit: tests/cli/lab_params.sh, with a script in a repository)
	end)

	it("refuse a directory holding another experiment's results", function()
		experiment({ "--reps", "1", "--n", "1", "--mode", "x", "--no-report" }):run{ measure = function() return 1 end }
		local other = lab.experiment{ name = "other", argv = {}, out = dir .. "/out" }
		local ok, err = pcall(other.run, other, { measure = function() return 1 end })
		assert.is_false(ok)
		assert.matches("holds the results of experiment 'spec'", err)
	end)

	it("write results.csv that reads back as results.jsonl (Python's csv module)", function()
		if not need("python3") then return end
		local exp = lab.experiment{ name = "csv", argv = { "--no-report" }, out = dir .. "/out",
			params = { { "label", type = "string", default = 'a "quoted", odd\nvalue' } } }
		local values = { 0.1, 1 / 3, 1e-300, 123456789012, -2.5e17, 42, 2 ^ 53 + 1.0 }
		for i, v in ipairs(values) do
			exp:record{ system = i % 2 == 0 and "kx,1" or "sh", values = { time = v, other = i } }
		end
		exp:finish{ quiet = true }
		local rows = store.read(dir .. "/out")
		local rc, out = kx.exec{ PY, "-c", [[
import csv, json, sys
print(json.dumps(list(csv.DictReader(open(sys.argv[1], newline="")))))
]], dir .. "/out/results.csv" }
		assert.are.equal(0, rc)
		local records = kx.json.decode(out)
		assert.are.equal(#rows, #records)
		for i, r in ipairs(rows) do
			local c = records[i]
			assert.are.equal(r.point.label, c.label)
			assert.are.equal(r.system, c.system)
			assert.are.equal(r.rep, tonumber(c.rep))
			assert.are.equal(r.values.time, tonumber(c.time))
			assert.are.equal(r.values.other, tonumber(c.other))
			assert.are.equal(r.t, tonumber(c.t))
		end
		-- and kx.lab's own reader agrees with Python's
		local parsed = assert(store.parse_csv(read(dir .. "/out/results.csv")))
		assert.are.equal(#rows + 1, #parsed)
		assert.are.equal('a "quoted", odd\nvalue', parsed[2][2])
		-- whole numbers read as such (100.0 was written "1e+02")
		assert.are.same({ "100", "1500", "-3", "0.1", "1e-300", "0.3333333333333333" },
			{ store.number_text(100.0), store.number_text(1500.0), store.number_text(-3.0),
				store.number_text(0.1), store.number_text(1e-300), store.number_text(1 / 3) })
	end)
end)

describe("kx.lab plots and report", function()
	local dir
	before_each(function() dir = tmpdir() end)
	after_each(function() kx.exec{ "rm", "-rf", dir } end)

	local function well_formed(svg)
		local rc, _, err = kx.exec{ PY, "-c", "import sys, xml.etree.ElementTree as E; E.fromstring(sys.stdin.read())", input = svg }
		assert(rc == 0, "not well-formed XML: " .. tostring(err))
	end

	it("draw each chart kind as well-formed SVG with title, axes and legend", function()
		if not need("python3") then return end
		local svgs = {
			plot.line{ title = "Latency <by size>", x = { label = "size", unit = "B", log = true }, y = { label = "time", unit = "ms" },
				series = { { name = "kx & co", points = { { 1024, 1, 0.9, 1.1 }, { 1 << 20, 4, 3, 5 } } }, { name = "sh", points = { { 1024, 2 }, { 1 << 20, 9 } } } } },
			plot.bar{ title = "Bars", categories = { "a", "b" }, y = { label = "time", unit = "ms" },
				series = { { name = "kx", values = { { 1, 0.5, 1.5 }, { 2 } } }, { name = "sh", values = { { 2 }, { 3 } } } } },
			plot.cdf{ title = "CDF", x = { label = "time", unit = "ms" }, series = { { name = "kx", values = { 3, 1, 2 } }, { name = "sh", values = { 5, 4 } } } },
			plot.timeseries{ title = "Drift", y = { label = "cpu", unit = "%" }, series = { { name = "p1", points = { { 0, 1 }, { 1, 3 } } }, { name = "p2", points = { { 0, 2 } } } } },
			plot.gantt{ title = "Gantt", legend = { { name = "ran", color = "#0072B2" } },
				rows = { { label = "n1", bars = { { wait = 0, start = 0.2, stop = 1, label = "t1" } } }, { label = "n2", bars = { { start = 0.5, stop = 2, failed = true } } } } },
		}
		for _, svg in ipairs(svgs) do
			well_formed(svg)
			assert.matches("^<svg xmlns=\"http://www.w3.org/2000/svg\"", svg)
		end
		assert.matches("Latency &lt;by size&gt;", svgs[1], 1, true)
		assert.matches("size (B)", svgs[1], 1, true)
		assert.matches("time (ms)", svgs[1], 1, true)
		assert.matches(">1M<", svgs[1], 1, true)          -- size ticks
		assert.matches("kx &amp; co", svgs[1], 1, true)   -- legend
		assert.matches("time (s)", svgs[5], 1, true)
	end)

	it("write one self-contained report.html with tables, plots and the environment", function()
		if not need("python3") then return end
		local exp = lab.experiment{ name = "rep", argv = { "--reps", "4", "--warmup", "0" }, out = dir .. "/out", quiet = true,
			params = { { "size", type = "size", default = "4K,64K,1M", list = true } }, metrics = { time = "ms" } }
		exp:run{ systems = {
			{ "kx", function(p) return p.size / 1024 end },
			{ "sh", function(p) return p.size / 512 end },
		} }
		local html = read(dir .. "/out/report.html")
		assert.matches("^<!DOCTYPE html>", html)
		assert.matches("<h1>rep</h1>", html, 1, true)
		assert.matches("ratio to kx", html, 1, true)
		assert.matches("95% CI of median", html, 1, true)
		assert.matches("<svg", html, 1, true)
		assert.matches("Environment", html, 1, true)
		assert.is_nil(html:find("<script", 1, true))
		assert.is_nil(html:find('src="', 1, true))
		assert.is_nil(html:find("http://", 1, true) and html:gsub("http://www.w3.org/2000/svg", ""):find("http://", 1, true))
		for _, f in ipairs{ "time_ms-line.svg", "time_ms-cdf.svg", "time_ms-time.svg" } do
			well_formed(read(dir .. "/out/plots/" .. f))
		end
		assert.matches(">1M<", read(dir .. "/out/plots/time_ms-line.svg"), 1, true)
		assert.is_nil(lab.report(dir .. "/nothing-here"))
	end)
end)
