-- experiments/gpu_enforce.lua: a program that tries to allocate past its
-- partition's share is refused with OpenCL's own error, also when two
-- processes share the partition; at expiry the program is told (SIGTERM).
--
-- Uses build/tests/gpu_alloc (made by `make`), PoCL's CPU device or any
-- OpenCL device, and a private ledger.
local gpu = require "kx.gpu"

local ALLOC = (os.getenv("BUILD") or "build") .. "/tests/gpu_alloc"
local _, top = kx.exec{ "mktemp", "-d", "/tmp/kxrun-gpu-enforce.XXXXXX" }
top = top:gsub("%s+$", "")
gpu.state_dir(top .. "/gpu")

local devs = assert(gpu.devices())
-- a share of the device just over 8 MiB
local ppm = (8 * 1048576 * 1000000 + devs[1].memory - 1) // devs[1].memory
local memory = string.format("%d.%06d", ppm // 1000000, ppm % 1000000)

do
	local p <close> = assert(gpu.create{ device = 0, memory = memory, duration = 60 })
	print(string.format("%s: %d MiB of %s", p.id, p.bytes >> 20, devs[1].name))

	print("\n1. one program asks for twelve 1 MiB buffers:")
	local st = assert(p:exec{ ALLOC, "1", "12" })
	print("   exit " .. st.code .. " (3 = refused)")

	print("\n2. two programs share it: the first holds 5 MiB for a while ...")
	local first = kx.go(function() return p:exec{ ALLOC, "5", "1", "2" } end)
	kx.sleep(0.7)
	print("   ... the second asks for 1 MiB buffers while it does:")
	st = assert(p:exec{ ALLOC, "1", "8" })
	print("   second: exit " .. st.code)
	assert(first:wait())

	print("\n3. outside any partition the same program is not limited:")
	local code, out = kx.exec{ ALLOC, "1", "12" }
	local granted = select(2, out:gsub("ok %d+", ""))
	print("   " .. granted .. " buffers, exit " .. code)
end

print("\n4. a partition of 1.5 s ends while its program runs:")
local p = assert(gpu.create{ device = 0, memory = 0.01, duration = 1.5 })
local t0 = kx.time()
local st = assert(p:exec{ ALLOC, "1", "1", "60", grace = 1 })
print(string.format("   stopped %.2f s after start, expired=%s, exit %s",
	kx.time() - t0, tostring(st.expired), tostring(st.code or st.signal)))
print(string.format("   partitions left: %d", #gpu.list()))
kx.exec{ "rm", "-rf", top }
