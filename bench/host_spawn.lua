-- Spawning: N /bin/true started at once and all reaped, through kx.spawn,
-- against a sh loop of `/bin/true &` + `wait` (goal: faster); the two are
-- run in turn (--reps, after a warm-up) and the medians compared.
-- `--out DIR` keeps every run (results.jsonl, report.html).
local lab = require "kx.lab"
local exp = lab.experiment{
	name = "host_spawn",
	about = "N /bin/true started at once and reaped: kx.spawn against a sh loop of /bin/true & + wait",
	params = { { "n", type = "int", default = tonumber(os.getenv("N")) or 1000, help = "programs per run (or N=)" } },
	metrics = { time = "ms" }, reps = 3, warmup = 1, out = false, quiet = true,
}
local N = exp.params.n
if N < 1 then io.stderr:write("kxrun: host_spawn.lua: --n: must be at least 1\n") os.exit(2) end

local times = { kxrun = {}, sh = {} }
local function kx_spawn(_, rep)
	local t0 = kx.now()
	local ps = {}
	for i = 1, N do ps[i] = assert(kx.spawn{ "/bin/true" }) end
	for i = 1, N do ps[i]:wait() end
	local ms = (kx.now() - t0) * 1000
	if rep > 0 then table.insert(times.kxrun, ms) end
	return ms
end
local function sh_loop(_, rep)
	local t0 = kx.now()
	local code, _, err = kx.exec{ "sh", "-c",
		("i=0; while [ $i -lt %d ]; do /bin/true & i=$((i+1)); done; wait"):format(N) }
	if code ~= 0 then return nil, "sh: " .. tostring(err) end
	local ms = (kx.now() - t0) * 1000
	if rep > 0 then table.insert(times.sh, ms) end
	return ms
end
exp:run{ systems = { { "kxrun", kx_spawn }, { "sh loop", sh_loop } } }
local median = lab.stats.median
local k, s = median(times.kxrun), median(times.sh)
print(("spawn %d x /bin/true: kxrun %d ms, sh loop %d ms, ratio %.2fx (goal < 1)")
	:format(N, math.floor(k + 0.5), math.floor(s + 0.5), k / s))
