-- vtime slowdown: 8 CPU-bound dilated processes (bench/vtime_spin.c) on
-- this machine's cores at step 1 ms: wall / virtual time until all are
-- done.  With every process getting its step of CPU each round, the ideal
-- is processes / cores (4.0 on 2 cores).  The peer: the same 8 jobs run
-- plainly, their wall time over one job's wall time alone.
--   kxrun bench/vtime_slowdown.lua [ITERATIONS=200000000] [BACKEND=auto]
-- (--help lists every parameter; --out DIR keeps the figures in
-- results.jsonl, every advance call, virtual against real time, in
-- vtime.jsonl, and writes report.html.)
local vtime = require "kx.vtime"
local lab = require "kx.lab"

local exp = lab.experiment{
	name = "vtime_slowdown",
	about = "Wall over virtual time of CPU-bound dilated processes, against the same jobs run plainly",
	params = {
		{ "iterations", type = "int", default = 200000000, positional = true, help = "each job's loop count" },
		{ "backend", type = "choice", choices = { "auto", "signal", "freezer", "freezer-v1", "freezer-v2", "kmod" },
			default = "auto", positional = true, help = "how processes are frozen" },
		{ "processes", type = "int", default = 8, help = "dilated jobs" },
		{ "step", type = "duration", default = "1ms", help = "virtual time per round" },
	},
	metrics = { slowdown = "x" },
	out = false, quiet = true,
}
local P = exp.params
-- the build directory (BUILD, else build/ of this script's repository)
local BUILD = os.getenv("BUILD") or "build"
if BUILD:sub(1, 1) ~= "/" then BUILD = (arg[0]:match("^(.*)/bench/[^/]*$") or ".") .. "/" .. BUILD end
local SPIN = BUILD .. "/bench/vtime_spin"
assert(io.open(SPIN), SPIN .. " missing: run make")
local STEP = math.tointeger(math.floor(P.step * 1e9 + 0.5))
if P.iterations < 1 or P.processes < 1 or STEP < 1 then
	io.stderr:write("kxrun: vtime_slowdown: ITERATIONS, --processes and --step must be > 0\n")
	os.exit(2)
end
local iters, N = tostring(P.iterations), P.processes
local _, nproc = kx.exec{ "nproc" }
local cores = math.tointeger(tonumber(nproc)) or 2

local vexp = assert(vtime.experiment{ step = STEP, backend = P.backend })
local procs = {}
for i = 1, N do procs[i] = assert(vexp:spawn({ SPIN, iters }, { stdout = "null" })) end
vexp:freeze()
local rec = exp:vtime(vexp, ("%d jobs"):format(N))
local t0 = kx.now()
local function any_alive()
	for _, p in ipairs(procs) do if p:alive() then return true end end
	return false
end
while any_alive() and vexp.rounds < 50000 do rec:advance(5) end
local wall = kx.now() - t0
local virtual = 0
for _, p in ipairs(procs) do virtual = math.max(virtual, p:now()) end
local used = vexp.backend
vexp:stop()

-- the peer: the same jobs, not dilated
local t1 = kx.now()
kx.exec{ SPIN, iters }
local one = kx.now() - t1
t1 = kx.now()
local plain = {}
for i = 1, N do plain[i] = assert(kx.spawn{ SPIN, iters, stdout = "null" }) end
for _, p in ipairs(plain) do p:wait() end
local all = kx.now() - t1

local ideal = N / cores
local slowdown = wall / (virtual / 1e9)
exp:record{ system = "dilated", values = { slowdown = slowdown, wall = wall, virtual = virtual / 1e9 },
	units = { wall = "s", virtual = "s" } }
exp:record{ system = "plain", values = { slowdown = all / one, wall = all }, units = { wall = "s" } }
print(("slowdown (%s, step %s, %d processes x %s iterations, %d cores):")
	:format(used, STEP >= 1000000 and (STEP // 1000000 .. " ms") or (STEP // 1000 .. " us"), N, iters, cores))
print(("  dilated: wall %.3f s / virtual %.3f s = %.2f  (ideal %.1f, ratio to ideal %.2f)")
	:format(wall, virtual / 1e9, slowdown, ideal, slowdown / ideal))
print(("  plain (peer): %d jobs %.3f s / one job %.3f s = %.2f")
	:format(N, all, one, all / one))
exp:finish()
