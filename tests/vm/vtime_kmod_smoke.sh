#!/bin/sh
# make test's VM smoke: kxvt.ko loads, kx.vtime picks backend "kmod" (auto
# too, once /dev/kxvt exists), a dynamically and a statically linked
# program run dilated (1 ms usleep loops read 1 virtual ms each), the
# module unloads, and the kernel log stays clean.
# vm-mode: smoke test
# vm-timeout: 120
# vm-files: build/tests/vtime_clock build/tests/vtime_static
. /kx/tests/vm/bed/lib.sh
kxvt_load
cat > "$T/smoke.lua" <<'LUA'
local vtime = require "kx.vtime"
local MS = 1000000
local exp = assert(vtime.experiment{ step = MS })
assert(exp.backend == "kmod", "auto picked " .. exp.backend)
local outs, ps = {}, {}
for i, prog in ipairs{ "build/tests/vtime_clock", "build/tests/vtime_static" } do
	outs[i] = os.tmpname()
	ps[i] = assert(exp:spawn({ prog, "30" }, { stdout = outs[i] }))
end
exp:freeze()
for r = 1, 20 do assert(exp:advance(1) == r * MS) end
-- until both end: start-up under TCG takes 20-130 ms of CPU, more with
-- the host loaded (its vCPUs descheduled count as CPU time, and as debts)
local now = exp:now()
while (ps[1]:alive() or ps[2]:alive()) and exp.rounds < 20000 do now = exp:advance(100) end
assert(not ps[1]:alive() and not ps[2]:alive(), "still running after 20000 rounds")
for i, path in ipairs(outs) do
	local prev, n = nil, 0
	for l in io.lines(path) do
		local v = math.tointeger(tonumber(l:match("(%-?%d+)$")))
		assert(v and v <= now, path .. ": " .. l)
		if prev then assert(v - prev >= MS, ("%s: usleep(1000) took %d"):format(path, v - prev)) end
		prev, n = v, n + 1
	end
	assert(n == 31, path .. ": " .. n .. " lines, not 31")
	os.remove(path)
end
exp:stop()
print("kmod smoke: ok at " .. now)
LUA
$KXRUN "$T/smoke.lua" || fail "a dilated experiment on backend kmod"
kxvt_unload
