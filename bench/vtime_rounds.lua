-- vtime round cost: rounds per second and the real time a round costs for
-- 1, 8, 32 and 128 idle dilated processes (`sleep`, blocked in a virtual
-- sleep) at step 100 us; the freezer and signal backends side by side (the
-- peer figure), each run ~1 s.  The processes have nothing to run, so all of
-- a round's real time is overhead: stopping, resuming, blocked checks,
-- clock updates.  Rounds are run in advance() calls of growing size (up to
-- ~0.2 s each), so the freezer's per-call cgroup thaw and freeze (~5 ms
-- each here) is spread as a long experiment spreads it.
--   kxrun bench/vtime_rounds.lua [SECONDS_PER_RUN=1]
-- (--help lists every parameter; --out DIR keeps each run in results.jsonl,
-- every advance call, virtual against real time, in vtime.jsonl, and
-- writes report.html.)
local vtime = require "kx.vtime"
local lab = require "kx.lab"

local exp = lab.experiment{
	name = "vtime_rounds",
	about = "Real time per round of idle dilated processes, freezer against signal",
	params = {
		{ "seconds", type = "duration", default = 1, positional = true, help = "real time of each run" },
		{ "procs", type = "int", list = true, default = "1,8,32,128", help = "idle processes" },
		{ "step", type = "duration", default = "100us", help = "virtual time per round" },
	},
	metrics = { us_per_round = "us", rounds_per_s = "1/s" },
	out = false, quiet = true,
}
local P = exp.params
local STEP = math.tointeger(math.floor(P.step * 1e9 + 0.5))
if STEP < 1 or not (P.seconds > 0) then
	io.stderr:write("kxrun: vtime_rounds: --step and SECONDS must be > 0\n")
	os.exit(2)
end

local function measure(backend, n)
	local vexp, err = vtime.experiment{ step = STEP, backend = backend }
	if not vexp then return nil, err end
	for _ = 1, n do
		local p, perr = vexp:spawn({ "sleep", "100000" })
		if not p then vexp:stop() return nil, perr end
	end
	vexp:freeze()
	-- warm-up: every process has started (exec, dynamic linking: ~1 ms of
	-- CPU each, 100 us a round) and sits in its sleep once ten rounds pass
	-- without a process using up its share
	for _ = 1, 500 do
		local b = vexp:stats().budget_stops
		vexp:advance(10)
		if vexp:stats().budget_stops == b then break end
	end
	local rec = exp:vtime(vexp, ("%s, %d processes"):format(backend, n))
	local r0, t0 = vexp.rounds, kx.now()
	local chunk = 20
	while kx.now() - t0 < P.seconds and vexp.rounds - r0 < 200000 do
		local c0 = kx.now()
		rec:advance(chunk)
		if kx.now() - c0 < 0.1 then chunk = chunk * 2 end
	end
	local rounds, wall = vexp.rounds - r0, kx.now() - t0
	vexp:stop()
	return { rounds_per_s = rounds / wall, us_per_round = wall / rounds * 1e6 }
end

print(("round cost, step %d us, idle processes; goal: overhead <= 30 us + 3 us/process")
	:format(STEP // 1000))
print(("%5s | %27s | %27s | %8s | %7s"):format("", "freezer", "signal", "freezer/", "goal"))
print(("%5s | %8s %9s %8s | %8s %9s %8s | %8s | %7s"):format("procs", "rounds/s",
	"us/round", "ovh us", "rounds/s", "us/round", "ovh us", "signal", "ovh us"))
local function col(r, err)
	if not r then return ("%-27s"):format("n/a: " .. tostring(err):sub(1, 22)) end
	return ("%8.0f %9.1f %8.1f"):format(r.rounds_per_s, r.us_per_round, r.us_per_round)
end
for _, n in ipairs(P.procs) do
	local got = {}
	for _, backend in ipairs{ "freezer", "signal" } do
		local r, err = measure(backend, n)
		got[backend] = { r, err }
		exp:record{ point = { procs = n }, system = backend, values = r, error = not r and err or nil }
	end
	local f, s = got.freezer[1], got.signal[1]
	print(("%5d | %s | %s | %8s | %7.0f"):format(n, col(table.unpack(got.freezer)),
		col(table.unpack(got.signal)), (f and s) and ("%.2f"):format(f.us_per_round / s.us_per_round) or "-",
		30 + 3 * n))
end
exp:finish()
