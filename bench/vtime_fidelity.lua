-- vtime fidelity: a fixed CPU-bound job (bench/vtime_spin.c) run dilated at
-- speed 1 should last, in virtual time, what it lasts in CPU time when run
-- plainly — whatever the step and the host's load, and the same every run.
--   kxrun bench/vtime_fidelity.lua [ITERATIONS=400000000] [BACKEND=auto] [RUNS=10] [PARTS=12]
--
-- 1. Overhead: at steps 100 us, 1 ms and 10 ms, RUNS runs each, interleaved
--    with plain runs of the same job: median virtual duration over the
--    median plain CPU time (the yardstick: the job's own CPU time when
--    nothing stops and resumes it; not its CPU time under control, which
--    the same stops inflate), and the run-to-run CoV of the virtual time.
--    Goal: within 3 % of 1.000, CoV <= 1 %.
-- 2. Load: at step 1 ms, the virtual duration alone and beside two busy
--    loops (goal: loaded/alone within 2 %), beside the plain job's wall
--    time alone and loaded (the peer: what load does to real time).
local vtime = require "kx.vtime"
local SPIN = (os.getenv("BUILD") or "build") .. "/bench/vtime_spin"
assert(io.open(SPIN), SPIN .. " missing: run make")
local iters = math.tointeger(tonumber(arg[1] or "")) or 400000000
assert(iters > 0, "ITERATIONS must be > 0")
iters = tostring(iters)
local backend = (arg[2] or "") ~= "" and arg[2] or "auto"
local RUNS = math.tointeger(tonumber(arg[3] or "")) or 10
local PARTS = arg[4] or "12" -- which parts to run ("1": overhead only)

local function parse(out)
	local e, c, u, s = tostring(out):match(
		"elapsed_ns (%d+) cpu_ns (%d+) utime_ns (%d+) stime_ns (%d+)")
	return tonumber(e), tonumber(c), tonumber(u), tonumber(s)
end

-- The job, dilated: its own (virtual) elapsed ns, and its CPU ns.
-- resume_cost = 0: the stops' and resumes' own CPU charged too (as before
-- it was measured and taken out), for comparison.
local function dilated(step, resume_cost)
	local exp = assert(vtime.experiment{ step = step, backend = backend,
		resume_cost = resume_cost })
	local out = os.tmpname()
	local p = assert(exp:spawn({ SPIN, iters }, { stdout = out }))
	exp:freeze()
	while p:alive() and exp.rounds < 200000 do exp:advance(10) end
	exp:stop()
	local f = assert(io.open(out))
	local e, cpu = parse(f:read("a"))
	f:close()
	os.remove(out)
	return assert(e, "the dilated job printed nothing"), cpu, exp.backend
end

-- The job run plainly: its wall-clock and CPU ns.
local function plain()
	local code, out = kx.exec{ SPIN, iters }
	assert(code == 0, "plain job failed")
	return parse(out)
end

local function with_load(fn, ...)
	local hogs = {}
	for i = 1, 2 do hogs[i] = assert(kx.spawn{ SPIN, "0", stdout = "null" }) end
	kx.sleep(0.05)
	local ok, a, b = pcall(fn, ...)
	for _, h in ipairs(hogs) do h:kill("KILL") h:wait(5) end
	assert(ok, a)
	return a, b
end

local function median(t)
	local c = table.move(t, 1, #t, 1, {})
	table.sort(c)
	return c[(#c + 1) // 2]
end

local function cov(t)
	local m = 0
	for _, v in ipairs(t) do m = m + v end
	m = m / #t
	local v2 = 0
	for _, v in ipairs(t) do v2 = v2 + (v - m) ^ 2 end
	return math.sqrt(v2 / (#t - 1)) / m
end

local up = io.popen("uptime"):read("l")
print(("fidelity, %s iterations, %d runs per figure (%s)"):format(iters, RUNS, up:match("load.*")))
local used
if PARTS:find("1", 1, true) then
local probe = assert(vtime.experiment{ step = 1000000, backend = backend })
local cost = probe:stats().resume_cost_ns
probe:stop()
print(("1. overhead at speed 1: virtual duration / plain CPU time (goal 1.000 +- 3 %%, CoV <= 1 %%);\n"
	.. "   measured resume cost %s taken out, and not (resume_cost = 0)")
	:format(cost and ("%.1f us"):format(cost / 1e3) or "(none: a kxrun before it)"))
print(("  %8s | %11s %7s %7s | %11s %7s %7s | %11s %11s"):format("step", "virtual ms", "ratio",
	"CoV", "not taken", "ratio", "CoV", "plain CPU", "CPU under"))
for _, step in ipairs{ 100000, 1000000, 10000000 } do
	local v, v0, c, pc = {}, {}, {}, {}
	for i = 1, RUNS do
		v[i], c[i], used = dilated(step)
		v0[i] = dilated(step, 0)
		local _
		_, pc[i] = plain()
	end
	local mv, mv0, mpc = median(v), median(v0), median(pc)
	print(("  %6d us | %11.1f %7.3f %6.2f%% | %11.1f %7.3f %6.2f%% | %11.1f %11.1f"):format(
		step // 1000, mv / 1e6, mv / mpc, 100 * cov(v), mv0 / 1e6, mv0 / mpc, 100 * cov(v0),
		mpc / 1e6, median(c) / 1e6))
end
print(("  (%s; plain CPU: the job alone, CoV %.2f%% at the last step; CPU under: its CPU time"
	.. " under control)"):format(used, 100 * cov((function()
		local t = {} for i = 1, RUNS do local _, c = plain() t[i] = c end return t end)())))

end

if PARTS:find("2", 1, true) then
print("2. load, step 1 ms: two busy loops beside the job")
local va, vl, wa, wl = {}, {}, {}, {}
for i = 1, RUNS do
	va[i] = dilated(1000000)
	vl[i] = with_load(dilated, 1000000)
	wa[i] = plain()
	wl[i] = with_load(plain)
end
local v_alone, v_loaded, w_alone, w_loaded = median(va), median(vl), median(wa), median(wl)
print(("  dilated: virtual %.1f ms alone, %.1f ms loaded  (loaded/alone %.3f, goal 1.000 +- 2 %%)")
	:format(v_alone / 1e6, v_loaded / 1e6, v_loaded / v_alone))
print(("  plain (peer): wall %.1f ms alone, %.1f ms loaded  (loaded/alone %.2f)")
	:format(w_alone / 1e6, w_loaded / 1e6, w_loaded / w_alone))
end
