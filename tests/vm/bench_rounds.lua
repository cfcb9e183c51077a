-- Round cost of kx.vtime's backends in one guest of the VM bed (make
-- bench-vm): step 100 us, N members idle (`sleep`, in a virtual sleep) or
-- busy (bench/vtime_spin spinning), kmod beside signal and freezer.  Idle:
-- a round's real time is all overhead.  Busy: the overhead is what a round
-- takes beyond the CPU its members were charged, spread over the vCPUs.
--   kxrun tests/vm/bench_rounds.lua [SECONDS_PER_MEASURE=0.5] [COUNTS=1,8,32,128,512]
local vtime = require "kx.vtime"
local STEP = 100000
local PER = tonumber(arg[1] or "") or 0.5
local COUNTS = {}
for n in (arg[2] or "1,8,32,128,512"):gmatch("%d+") do COUNTS[#COUNTS + 1] = tonumber(n) end
local SPIN = (os.getenv("BUILD") or "build") .. "/bench/vtime_spin"
local _, nproc = kx.exec{ "nproc" }
local CORES = math.tointeger(tonumber(nproc)) or 2

local function charged(procs)
	local c = 0
	for _, p in ipairs(procs) do c = c + p:cpu() end
	return c
end

local function measure(backend, n, busy)
	local exp, err = vtime.experiment{ step = STEP, backend = backend }
	if not exp then return nil, err end
	local procs = {}
	for i = 1, n do
		local p, perr = exp:spawn(busy and { SPIN, "0" } or { "sleep", "100000" },
			{ stdout = "null" })
		if not p then exp:stop() return nil, perr end
		procs[i] = p
	end
	exp:freeze()
	-- warm-up: every process has started (under TCG 20-130 ms of CPU each)
	-- and, idle, sits in its sleep: ten rounds pass without a budget stop
	for _ = 1, 5000 do
		local b = exp:stats().budget_stops
		exp:advance(10)
		if busy and exp.rounds >= 200 or not busy and exp:stats().budget_stops == b then break end
	end
	local r0, t0, c0 = exp.rounds, kx.now(), charged(procs)
	local chunk = 10
	while kx.now() - t0 < PER and exp.rounds - r0 < 200000 do
		local s = kx.now()
		exp:advance(chunk)
		if kx.now() - s < 0.05 then chunk = chunk * 2 end
	end
	local rounds, wall, cpu = exp.rounds - r0, kx.now() - t0, charged(procs) - c0
	exp:stop()
	local us = wall / rounds * 1e6
	return { us = us, overhead = us - cpu / rounds / 1e3 / CORES }
end

local results = {}
for _, busy in ipairs{ false, true } do
	for _, n in ipairs(COUNTS) do
		for _, b in ipairs{ "kmod", "signal", "freezer" } do
			local r, err = measure(b, n, busy)
			results[(busy and "busy" or "idle") .. n .. b] = r or err
			io.stderr:write(("  %s %d %s: %s\n"):format(busy and "busy" or "idle", n, b,
				r and ("%.1f us/round, overhead %.1f"):format(r.us, r.overhead) or tostring(err)))
		end
	end
end

local function cell(v)
	if type(v) ~= "table" then return ("%9s"):format("n/a") end
	return ("%9.1f"):format(v.overhead)
end
local function ratio(a, b)
	if type(a) ~= "table" or type(b) ~= "table" or a.overhead <= 0 then return ("%7s"):format("-") end
	return ("%7.1f"):format(b.overhead / a.overhead)
end
print(("round cost, step %d us, %d vCPUs (QEMU TCG): overhead in us of real time per round")
	:format(STEP // 1000, CORES))
print("(idle: the whole round; busy: beyond the members' CPU / vCPUs)")
for _, mode in ipairs{ "idle", "busy" } do
	print(("%-5s %7s | %9s %9s %9s | %7s %7s"):format(mode, "members", "kmod", "signal",
		"freezer", "sig/kmod", "frz/kmod"))
	for _, n in ipairs(COUNTS) do
		local k, s, f = results[mode .. n .. "kmod"], results[mode .. n .. "signal"],
			results[mode .. n .. "freezer"]
		print(("%-5s %7d | %s %s %s | %7s %7s"):format("", n, cell(k), cell(s), cell(f),
			ratio(k, s), ratio(k, f)))
	end
	-- the cost of one more member: the slope between the smallest and the
	-- largest count where signal ran too (its clock file has 256 slots)
	local line = ("%-5s %7s |"):format("", "+1 memb")
	local lo, hi
	for _, n in ipairs(COUNTS) do
		if type(results[mode .. n .. "signal"]) == "table" and type(results[mode .. n .. "kmod"]) == "table" then
			lo = lo or n
			hi = n
		end
	end
	local slopes = {}
	for _, b in ipairs{ "kmod", "signal", "freezer" } do
		local a, z = lo and results[mode .. lo .. b], hi and results[mode .. hi .. b]
		if type(a) == "table" and type(z) == "table" and hi > lo then
			slopes[b] = (z.overhead - a.overhead) / (hi - lo)
			line = line .. ("%9.2f "):format(slopes[b])
		else
			line = line .. ("%9s "):format("n/a")
		end
	end
	if slopes.kmod and slopes.signal and slopes.kmod > 0 then
		line = line .. ("| %d..%d members: kmod's = 1/%.0f of signal's"):format(lo, hi,
			slopes.signal / slopes.kmod)
	end
	print(line)
end
