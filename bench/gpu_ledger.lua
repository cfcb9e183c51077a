-- bench/gpu_ledger.lua: what a kx.gpu partition costs, each figure beside
-- its peer measured in the same run.
--   1. create / list / release with 1,000 live partitions (goal < 1 ms)
--      vs. OpenCL start-up (clGetPlatformIDs + clGetDeviceIDs), which
--      Chronos pays on every command: a `kxrun gpu devices` process minus a
--      `kxrun gpu available 0` process (the same start, no OpenCL).
--   2. expiry signal delay: partition end -> SIGTERM seen by the program
--      (goal < 100 ms) vs. a 1 s polling monitor like Chronos's.
--   3. added cost per interposed allocation (goal < 1 us): clCreateBuffer +
--      clReleaseMemObject inside a partition vs. outside; and what starting
--      a program in a partition costs beside kx.exec of the same program.
-- `--out DIR` keeps every sample (results.jsonl, results.csv, report.html).
local gpu = require "kx.gpu"
local lab = require "kx.lab"

local exp = lab.experiment{
	name = "gpu_ledger",
	about = "What a kx.gpu partition costs, beside what Chronos pays (OpenCL start-up, a 1 s monitor)",
	params = {
		{ "partitions", type = "int", default = 1000, help = "live partitions while create/list/release are timed" },
		{ "samples", type = "int", default = 30, help = "timed create/list/release" },
	},
	out = false, quiet = true,
}
local P = exp.params
local median = lab.stats.median

local KX = arg and arg[-1] or "./kxrun"
local BUILD = os.getenv("BUILD") or "build"
local _, top = kx.exec{ "mktemp", "-d", "/tmp/kxrun-gpu-bench.XXXXXX" }
top = top:gsub("%s+$", "")
gpu.state_dir(top .. "/gpu")

-- 1. ledger operations with 1000 live partitions -------------------------
assert(gpu.devices(), "no OpenCL device")
for _ = 1, P.partitions do
	assert(gpu.create{ device = 0, memory = "0.000999", duration = 3600 })
end
local creates, lists, releases = {}, {}, {}
for _ = 1, P.samples do
	local t0 = kx.now()
	local p = assert(gpu.create{ device = 0, memory = "0.000999", duration = 3600 })
	local t1 = kx.now()
	local l = assert(gpu.list())
	local t2 = kx.now()
	assert(p:release())
	local t3 = kx.now()
	assert(#l == P.partitions + 1)
	creates[#creates + 1] = (t1 - t0) * 1e3
	lists[#lists + 1] = (t2 - t1) * 1e3
	releases[#releases + 1] = (t3 - t2) * 1e3
end

-- OpenCL start-up per command, measured as whole processes
local env_dir = "KXRUN_STATE_DIR=" .. top .. "/cmd"
local function cmd_ms(args, n)
	local best = {}
	for _ = 1, n do
		local t0 = kx.now()
		local code = kx.exec{ "env", env_dir, KX, "gpu", table.unpack(args) }
		assert(code == 0, "kxrun gpu " .. args[1] .. " failed")
		best[#best + 1] = (kx.now() - t0) * 1e3
	end
	return median(best)
end
cmd_ms({ "devices" }, 1)  -- learn the devices in that ledger
local with_ocl = cmd_ms({ "devices" }, 7)
local without = cmd_ms({ "available", "0" }, 7)
local ocl_start = math.max(with_ocl - without, 0.001)

print(("kx.gpu ledger, %d live partitions (median of %d; OpenCL: median of 7 processes)")
	:format(P.partitions, P.samples))
local ocl = { unit = "ms", peer = "OpenCL start-up" }
exp:beside("create (ms)", creates, ocl_start, ocl)
exp:beside(("list of %d (ms)"):format(P.partitions + 1), lists, ocl_start, ocl)
exp:beside("release (ms)", releases, ocl_start, ocl)
exp:beside("`kxrun gpu available 0` process (ms)", without, with_ocl, { unit = "ms", peer = "`kxrun gpu devices`" })

-- 2. expiry signal delay ----------------------------------------------------
gpu.state_dir(top .. "/gpu2")
assert(gpu.devices())
-- The program prints the wall time at which SIGTERM arrives; a 1 s poller
-- (Chronos's monitor thread) runs beside it and notes when it first sees the
-- partition gone.
local stamp = top .. "/term_at"
local probe = string.format([[
import signal, sys, time
def on_term(*a):
    open(%q, "w").write("%%.6f\n" %% time.time())
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
while True:
    time.sleep(100)
]], stamp)
local delays, polled = {}, {}
for i = 1, 5 do
	local p = assert(gpu.create{ device = 0, memory = 0.1, duration = 1 + i * 0.137 })
	local expires = p.expires
	local seen
	local poller = kx.every(1, function()
		if not seen and kx.time() >= expires then seen = kx.time() end
	end)
	local st = assert(p:exec{ "python3", "-c", probe, grace = 2 })
	assert(st.expired)
	while not seen do kx.sleep(0.05) end
	poller:stop()
	local f = assert(io.open(stamp))
	local at = tonumber(f:read("l"))
	f:close()
	delays[#delays + 1] = (at - expires) * 1e3
	polled[#polled + 1] = (seen - expires) * 1e3
end
print("expiry (median of 5; the probe notes the time in its SIGTERM handler)")
exp:beside("SIGTERM after expiry (ms)", math.max(median(delays), 0.001), polled,
	{ unit = "ms", peer = "1 s polling monitor" })

-- 2b. starting a program in a partition: the guard (its group's leader, so
-- that it dies with kxrun), the run's record and the preload, against
-- kx.exec of the same program (a plain fork and exec from the same kxrun)
local runs, plain_runs = {}, {}
local rp = assert(gpu.create{ device = 0, memory = 0.1, duration = 600 })
for _ = 1, 21 do
	local t0 = kx.now()
	assert(rp:exec{ "true" }.code == 0)
	local t1 = kx.now()
	assert(kx.exec{ "true" } == 0)
	runs[#runs + 1] = (t1 - t0) * 1e3
	plain_runs[#plain_runs + 1] = (kx.now() - t1) * 1e3
end
assert(rp:release())
print("starting a program (median of 21 runs of true)")
exp:beside("p:exec{ \"true\" } in a partition (ms)", runs, plain_runs,
	{ unit = "ms", peer = "kx.exec{ \"true\" }" })

-- 3. cost per interposed allocation ------------------------------------------
local bench = BUILD .. "/tests/alloc_bench"
local function ns(out) return tonumber(out:match("ns_per_alloc ([%d.]+)")) end
local code, plain = kx.exec{ bench }
assert(code == 0, "alloc_bench failed")
local p = assert(gpu.create{ device = 0, memory = 0.5, duration = 600 })
local out = top .. "/inside"
local st = assert(p:exec{ "sh", "-c", bench .. " > " .. out })
assert(st.code == 0)
local f = assert(io.open(out))
local inside = f:read("a")
f:close()
p:release()
local added = ns(inside) - ns(plain)
print("allocation (4 KiB clCreateBuffer + clReleaseMemObject on PoCL, best of 5 x 20000)")
print(string.format("%-44s %10.1f ns   %-22s %10.1f ns   added %.1f ns per allocation",
	"inside a partition", ns(inside), "outside", ns(plain), added))
exp:record{ point = { figure = "allocation" }, system = "inside a partition", values = { time = ns(inside) }, units = { time = "ns" } }
exp:record{ point = { figure = "allocation" }, system = "outside", values = { time = ns(plain) }, units = { time = "ns" } }

kx.exec{ "rm", "-rf", top }
exp:finish()
