-- vtime fidelity under load: a fixed CPU-bound job (bench/vtime_spin.c) run
-- dilated, alone and beside two competing busy loops; its virtual duration
-- should not change with the load (Kronos's claim, ratio 1.00).  The peer:
-- the same job's plain wall-clock duration, alone and loaded.
--   kxrun bench/vtime_fidelity.lua [ITERATIONS=400000000] [BACKEND=auto]
local vtime = require "kx.vtime"
local SPIN = (os.getenv("BUILD") or "build") .. "/bench/vtime_spin"
assert(io.open(SPIN), SPIN .. " missing: run make")
local iters = math.tointeger(tonumber(arg[1] or "")) or 400000000
assert(iters > 0, "ITERATIONS must be > 0")
iters = tostring(iters)
local backend = (arg[2] or "") ~= "" and arg[2] or "auto"

local function parse(out)
	local e, c = tostring(out):match("elapsed_ns (%d+) cpu_ns (%d+)")
	return tonumber(e), tonumber(c)
end

-- The job, dilated at step 1 ms: its own (virtual) elapsed ns.
local function dilated()
	local exp = assert(vtime.experiment{ step = 1000000, backend = backend })
	local out = os.tmpname()
	local p = assert(exp:spawn({ SPIN, iters }, { stdout = out }))
	exp:freeze()
	while p:alive() and exp.rounds < 20000 do exp:advance(10) end
	exp:stop()
	local f = assert(io.open(out))
	local e, cpu = parse(f:read("a"))
	f:close()
	os.remove(out)
	return assert(e, "the dilated job printed nothing"), exp.backend, cpu
end

local function plain()
	local code, out = kx.exec{ SPIN, iters }
	assert(code == 0, "plain job failed")
	return (parse(out))
end

local function with_load(fn)
	local hogs = {}
	for i = 1, 2 do hogs[i] = assert(kx.spawn{ SPIN, "0", stdout = "null" }) end
	kx.sleep(0.05)
	local ok, a, b = pcall(fn)
	for _, h in ipairs(hogs) do h:kill("KILL") h:wait(5) end
	assert(ok, a)
	return a, b
end

-- Five runs of each, interleaved (alone, loaded, alone, ...) so that drift
-- in the machine's own load hits both alike; medians are printed.
local RUNS = 5
local function median(t)
	table.sort(t)
	return t[(#t + 1) // 2]
end
local va, vl, wa, wl, cpus, used = {}, {}, {}, {}, {}, nil
for i = 1, RUNS do
	local v, c
	v, used, c = dilated()
	va[i], cpus[i] = v, c
	vl[i] = with_load(dilated)
	wa[i] = plain()
	wl[i] = with_load(plain)
end
local v_alone, v_loaded, cpu = median(va), median(vl), median(cpus)
local w_alone, w_loaded = median(wa), median(wl)
local ratios = {}
for i = 1, RUNS do ratios[i] = va[i] / cpus[i] end
print(("fidelity (%s, step 1 ms, %s iterations, medians of %d runs):"):format(used, iters, RUNS))
print(("  dilated: virtual %.1f ms alone, %.1f ms loaded  (loaded/alone %.2f, ideal 1.00)")
	:format(v_alone / 1e6, v_loaded / 1e6, v_loaded / v_alone))
print(("  plain (peer): wall %.1f ms alone, %.1f ms loaded  (loaded/alone %.2f)")
	:format(w_alone / 1e6, w_loaded / 1e6, w_loaded / w_alone))
print(("  dilated alone: virtual %.1f ms for %.1f ms of CPU (virtual/CPU %.3f, ideal 1.000 at speed 1)")
	:format(v_alone / 1e6, cpu / 1e6, median(ratios)))
print(("  load effect, dilated over plain: %.2f (ideal %.2f: none of the plain slowdown)")
	:format((v_loaded / v_alone) / (w_loaded / w_alone), 1 / (w_loaded / w_alone)))
