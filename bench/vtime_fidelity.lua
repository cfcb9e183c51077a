-- vtime fidelity: a fixed CPU-bound job (bench/vtime_spin.c) run dilated at
-- speed 1 should last, in virtual time, what it costs in CPU time run
-- plainly, whatever the step and the host's load, and the same every run.
--   kxrun bench/vtime_fidelity.lua [ITERATIONS=400000000] [BACKEND=auto] [RUNS=10] [PARTS=12]
-- (--help lists every parameter; --out DIR keeps every run in results.jsonl,
-- the rounds of every dilated run, virtual against real time, in
-- vtime.jsonl, and writes report.html.)
--
-- 1. Overhead: at each step (100 us, 1 ms, 10 ms), RUNS runs of each
--    system, interleaved: the job alone in its experiment (its rounds run
--    in batches, one stop for many), in lockstep with a second process
--    (a stop and a resume every round it runs), the same with resume_cost
--    = 0 (what taking the resume's cost out does), and the job run plainly
--    (the yardstick: its CPU time when nothing stops and resumes it).
--    ratio: median virtual duration over the median plain CPU time; its
--    CoV run to run.  Goal: 1.000 +- 3 %, CoV <= 1 %.
--    The plain CPU time of this job varies run to run on a shared VM (the
--    host's other tenants: up to 2x for seconds at a time), so the job also
--    counts the time it ran its own instructions (run_ticks, from the
--    CPU's cycle counter): "normalized" is each run's virtual time per
--    tick over the plain runs' CPU time per tick, which the host's speed
--    does not move, and its CoV.
-- 2. Load: at step 1 ms, the virtual duration alone and beside two busy
--    loops (goal: loaded/alone within 2 %), beside the plain job's wall
--    time alone and loaded (the peer: what load does to real time).
local vtime = require "kx.vtime"
local lab = require "kx.lab"

local exp = lab.experiment{
	name = "vtime_fidelity",
	about = "A CPU-bound job's virtual duration at speed 1 against its plain CPU time, by step and load",
	params = {
		{ "iterations", type = "int", default = 400000000, positional = true, help = "the job's loop count" },
		{ "backend", type = "choice", choices = { "auto", "signal", "freezer", "freezer-v1", "freezer-v2", "kmod" },
			default = "auto", positional = true, help = "how processes are frozen" },
		{ "runs", type = "int", default = 10, positional = true, help = "runs per figure, interleaved" },
		{ "parts", type = "string", default = "12", positional = true, help = "1: overhead by step, 2: load" },
		{ "steps", type = "duration", list = true, default = "100us,1ms,10ms", help = "the steps of part 1" },
	},
	metrics = { duration = "ms", per_tick = "ns/tick" },
	out = false, quiet = true,
}
local P = exp.params
-- the build directory (BUILD, else build/ of this script's repository)
local BUILD = os.getenv("BUILD") or "build"
if BUILD:sub(1, 1) ~= "/" then BUILD = (arg[0]:match("^(.*)/bench/[^/]*$") or ".") .. "/" .. BUILD end
local SPIN = BUILD .. "/bench/vtime_spin"
assert(io.open(SPIN), SPIN .. " missing: run make")
if P.iterations < 1 then io.stderr:write("kxrun: vtime_fidelity: ITERATIONS must be > 0\n") os.exit(2) end
if P.runs < 2 then io.stderr:write("kxrun: vtime_fidelity: RUNS must be >= 2 (a CoV)\n") os.exit(2) end
local ITER = tostring(P.iterations)
local median = lab.stats.median

local function parse(out)
	local e, c, r = tostring(out):match("elapsed_ns (%d+) cpu_ns (%d+) .*run_ticks (%d+)")
	return tonumber(e), tonumber(c), tonumber(r)
end

local function cov(t) return lab.stats.summary(t).cov end
local backend_used

local function step_label(ns)
	return ns >= 1000000 and ("%d ms"):format(ns // 1000000) or ("%d us"):format(ns // 1000)
end

-- The job, dilated: {duration = virtual ms, per_tick = virtual ns per run
-- tick, shares}.  lockstep: a sleeping process beside it, so that its
-- rounds are not batched.  The rounds go to vtime.jsonl (with --out).
local function dilated(step, lockstep, resume_cost, label)
	local vexp = assert(vtime.experiment{ step = step, backend = P.backend, resume_cost = resume_cost })
	local out = os.tmpname()
	if lockstep then assert(vexp:spawn({ "sleep", "1000" })) end
	local p = assert(vexp:spawn({ SPIN, ITER }, { stdout = out }))
	local rec = exp:vtime(vexp, label)
	vexp:freeze()
	while p:alive() and vexp.rounds < 1000000 do rec:advance(10) end
	local st = vexp:stats()
	backend_used = vexp.backend
	vexp:stop()
	local f = assert(io.open(out))
	local e, _, r = parse(f:read("a"))
	f:close()
	os.remove(out)
	assert(e, "the dilated job printed nothing")
	return { duration = e / 1e6, per_tick = e / r, shares = st.shares }
end

-- The job run plainly: its CPU time, CPU ns per run tick, wall time.
local function plain()
	local code, out = kx.exec{ SPIN, ITER }
	assert(code == 0, "plain job failed")
	local e, c, r = parse(out)
	return { duration = c / 1e6, per_tick = c / r, wall = e / 1e6 }
end

local function with_load(fn, ...)
	local hogs = {}
	for i = 1, 2 do hogs[i] = assert(kx.spawn{ SPIN, "0", stdout = "null" }) end
	kx.sleep(0.05)
	local ok, a = pcall(fn, ...)
	for _, h in ipairs(hogs) do h:kill("KILL") h:wait(5) end
	assert(ok, a)
	return a
end

-- the resume cost the experiments take (measured in the background by the
-- first experiment of a boot: waited for)
local cal = vtime.calibration()
for _ = 1, 200 do
	if cal.source ~= "measuring" then break end
	kx.sleep(0.05)
	cal = vtime.calibration()
end

local up = io.popen("uptime"):read("l")
print(("fidelity, %s iterations, %d runs per figure (%s)"):format(ITER, P.runs, up:match("load.*")))
print(("resume cost %.1f us (%s)"):format(cal.resume_cost_ns / 1e3, cal.source))

local function column(runs, key)
	local t = {}
	for i, r in ipairs(runs) do t[i] = r[key] end
	return t
end

if P.parts:find("1", 1, true) then
	print("1. speed 1: the job's virtual duration over its plain CPU time (goal 1.000 +- 3 %, CoV <= 1 %)")
	print("   ratio: of medians; normalized: per tick of the job's own run time, which the host's speed")
	print("   does not move (plain runs: CPU time per tick)")
	print(("  %7s  %-28s %10s %7s %7s %11s %7s %7s"):format("step", "", "virtual ms", "ratio", "CoV",
		"normalized", "CoV", "shares"))
	local systems = {
		{ "alone", false, nil }, { "lockstep", true, nil }, { "lockstep, resume_cost = 0", true, 0 },
	}
	for _, step_s in ipairs(P.steps) do
		local step = math.tointeger(math.floor(step_s * 1e9 + 0.5))
		local runs = { plain = {} }
		for i = 1, P.runs do
			for _, s in ipairs(systems) do
				local r = dilated(step, s[2], s[3], ("%s, %s #%d"):format(s[1], step_label(step), i))
				runs[s[1]] = runs[s[1]] or {}
				runs[s[1]][i] = r
				exp:record{ point = { steps = step_s }, system = s[1],
					values = { duration = r.duration, per_tick = r.per_tick } }
			end
			local r = plain()
			runs.plain[i] = r
			exp:record{ point = { steps = step_s }, system = "plain",
				values = { duration = r.duration, per_tick = r.per_tick } }
		end
		local pc, pt = median(column(runs.plain, "duration")), median(column(runs.plain, "per_tick"))
		for k, s in ipairs(systems) do
			local rs = runs[s[1]]
			local norm = {}
			for i, r in ipairs(rs) do norm[i] = r.per_tick / pt end
			print(("  %7s  %-28s %10.1f %7.3f %6.2f%% %11.4f %6.2f%% %7.0f"):format(
				k == 1 and step_label(step) or "", s[1], median(column(rs, "duration")),
				median(column(rs, "duration")) / pc, 100 * cov(column(rs, "duration")),
				median(norm), 100 * cov(norm), median(column(rs, "shares"))))
		end
		local pn = {}
		for i, r in ipairs(runs.plain) do pn[i] = r.per_tick / pt end
		print(("  %7s  %-28s %10.1f %7s %6.2f%% %11s %6.2f%%"):format("", "plain (CPU time)", pc, "",
			100 * cov(column(runs.plain, "duration")), "", 100 * cov(pn)))
	end
	print(("  (%s)"):format(backend_used))
end

if P.parts:find("2", 1, true) then
	print("2. load, step 1 ms: two busy loops beside the job")
	local va, vl, wa, wl = {}, {}, {}, {}
	for i = 1, P.runs do
		va[i] = dilated(1000000, false, nil, ("alone #%d"):format(i))
		vl[i] = with_load(dilated, 1000000, false, nil, ("loaded #%d"):format(i))
		wa[i] = plain()
		wl[i] = with_load(plain)
		for _, r in ipairs{ { "dilated alone", va[i] }, { "dilated loaded", vl[i] } } do
			exp:record{ point = { steps = 0.001, load = true }, system = r[1],
				values = { duration = r[2].duration, per_tick = r[2].per_tick } }
		end
		for _, r in ipairs{ { "plain alone", wa[i] }, { "plain loaded", wl[i] } } do
			exp:record{ point = { steps = 0.001, load = true }, system = r[1],
				values = { wall = r[2].wall }, units = { wall = "ms" } }
		end
	end
	local v_alone, v_loaded = median(column(va, "duration")), median(column(vl, "duration"))
	local n_alone, n_loaded = median(column(va, "per_tick")), median(column(vl, "per_tick"))
	local w_alone, w_loaded = median(column(wa, "wall")), median(column(wl, "wall"))
	print(("  dilated: virtual %.1f ms alone, %.1f ms loaded  (loaded/alone %.3f, goal 1.000 +- 2 %%;"
		.. " normalized %.3f)"):format(v_alone, v_loaded, v_loaded / v_alone, n_loaded / n_alone))
	print(("  plain (peer): wall %.1f ms alone, %.1f ms loaded  (loaded/alone %.2f)")
		:format(w_alone, w_loaded, w_loaded / w_alone))
end
exp:finish()
