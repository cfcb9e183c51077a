-- vtime round cost: rounds per second and the real time a round costs for
-- 1, 8, 32 and 128 idle dilated processes (`sleep`, blocked in a virtual
-- sleep) at step 100 us; the freezer and signal backends side by side (the
-- peer figure), each run ~1 s.  The processes have nothing to run, so all of
-- a round's real time is overhead: stopping, resuming, blocked checks,
-- clock updates.  Rounds are run in advance() calls of growing size (up to
-- ~0.2 s each), so the freezer's per-call cgroup thaw and freeze (~5 ms
-- each here) is spread as a long experiment spreads it.
--   kxrun bench/vtime_rounds.lua [SECONDS_PER_RUN=1]
local vtime = require "kx.vtime"
local STEP = 100000
local per_run = tonumber(arg[1] or 1)

local function measure(backend, n)
	local exp, err = vtime.experiment{ step = STEP, backend = backend }
	if not exp then return nil, err end
	for _ = 1, n do
		local p, perr = exp:spawn({ "sleep", "100000" })
		if not p then exp:stop() return nil, perr end
	end
	exp:freeze()
	-- warm-up: every process has started (exec, dynamic linking: ~1 ms of
	-- CPU each, 100 us a round) and sits in its sleep once ten rounds pass
	-- without a process using up its share
	for _ = 1, 500 do
		local b = exp:stats().budget_stops
		exp:advance(10)
		if exp:stats().budget_stops == b then break end
	end
	local r0, t0 = exp.rounds, kx.now()
	local chunk = 20
	while kx.now() - t0 < per_run and exp.rounds - r0 < 200000 do
		local c0 = kx.now()
		exp:advance(chunk)
		if kx.now() - c0 < 0.1 then chunk = chunk * 2 end
	end
	local rounds, wall = exp.rounds - r0, kx.now() - t0
	exp:stop()
	local us = wall / rounds * 1e6
	return { rps = rounds / wall, us = us, overhead = us }
end

print(("round cost, step %d us, idle processes; goal: overhead <= 30 us + 3 us/process")
	:format(STEP // 1000))
print(("%5s | %27s | %27s | %8s | %7s"):format("", "freezer", "signal", "freezer/", "goal"))
print(("%5s | %8s %9s %8s | %8s %9s %8s | %8s | %7s"):format("procs", "rounds/s",
	"us/round", "ovh us", "rounds/s", "us/round", "ovh us", "signal", "ovh us"))
local function col(r, err)
	if not r then return ("%-27s"):format("n/a: " .. tostring(err):sub(1, 22)) end
	return ("%8.0f %9.1f %8.1f"):format(r.rps, r.us, r.overhead)
end
for _, n in ipairs{ 1, 8, 32, 128 } do
	local f, ferr = measure("freezer", n)
	local s, serr = measure("signal", n)
	print(("%5d | %s | %s | %8s | %7.0f"):format(n, col(f, ferr), col(s, serr),
		(f and s) and ("%.2f"):format(f.us / s.us) or "-", 30 + 3 * n))
end
