-- vtime slowdown: 8 CPU-bound dilated processes (bench/vtime_spin.c) on
-- this machine's cores at step 1 ms: wall / virtual time until all are
-- done.  With every process getting its step of CPU each round, the ideal
-- is processes / cores (4.0 on 2 cores).  The peer: the same 8 jobs run
-- plainly, their wall time over one job's wall time alone.
--   kxrun bench/vtime_slowdown.lua [ITERATIONS=200000000] [BACKEND=auto]
local vtime = require "kx.vtime"
local SPIN = (os.getenv("BUILD") or "build") .. "/bench/vtime_spin"
assert(io.open(SPIN), SPIN .. " missing: run make")
local iters = math.tointeger(tonumber(arg[1] or "")) or 200000000
assert(iters > 0, "ITERATIONS must be > 0")
iters = tostring(iters)
local backend = (arg[2] or "") ~= "" and arg[2] or "auto"
local N = 8
local _, nproc = kx.exec{ "nproc" }
local cores = math.tointeger(tonumber(nproc)) or 2

local exp = assert(vtime.experiment{ step = 1000000, backend = backend })
local procs = {}
for i = 1, N do procs[i] = assert(exp:spawn({ SPIN, iters }, { stdout = "null" })) end
exp:freeze()
local t0 = kx.now()
local function any_alive()
	for _, p in ipairs(procs) do if p:alive() then return true end end
	return false
end
while any_alive() and exp.rounds < 50000 do exp:advance(5) end
local wall = kx.now() - t0
local virtual = 0
for _, p in ipairs(procs) do virtual = math.max(virtual, p:now()) end
local used = exp.backend
exp:stop()

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
print(("slowdown (%s, step 1 ms, %d processes x %s iterations, %d cores):")
	:format(used, N, iters, cores))
print(("  dilated: wall %.3f s / virtual %.3f s = %.2f  (ideal %.1f, ratio to ideal %.2f)")
	:format(wall, virtual / 1e9, wall / (virtual / 1e9), ideal, wall / (virtual / 1e9) / ideal))
print(("  plain (peer): %d jobs %.3f s / one job %.3f s = %.2f")
	:format(N, all, one, all / one))
