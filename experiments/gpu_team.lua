-- experiments/gpu_team.lua: the Chronos guide's "team GPU allocation" case.
-- An administrator gives four people fixed shares of device 0 for a working
-- day and keeps 20% free for ad-hoc use; the shares hold across processes
-- and users, and a request past what is left is refused.
--
-- Runs in a private ledger (a temporary directory).  As root, the shares go
-- to real accounts of this machine standing in for alice, bob, carol and
-- dave; otherwise all four are yours.
local gpu = require "kx.gpu"

local _, top = kx.exec{ "mktemp", "-d", "/tmp/kxrun-gpu-team.XXXXXX" }
top = top:gsub("%s+$", "")
gpu.state_dir(top .. "/gpu")

local devs, err = gpu.devices()
if not devs then
	print("no OpenCL device: " .. err)
	kx.exec{ "rm", "-rf", top }
	return
end
print(string.format("device 0: %s, %d MB", devs[1].name, devs[1].memory >> 20))

local is_root = select(2, kx.exec{ "id", "-u" }):match("^0%s") ~= nil
local stand_in = { alice = "daemon", bob = "bin", carol = "sys", dave = "nobody" }
local team = {
	{ "alice", "0.30", "ML training" },
	{ "bob",   "0.20", "inference testing" },
	{ "carol", "0.15", "experimentation" },
	{ "dave",  "0.15", "development" },
}
for _, m in ipairs(team) do
	local who, share, what = m[1], m[2], m[3]
	local p, e = gpu.create{ device = 0, memory = share, duration = 28800,
		user = is_root and stand_in[who] or nil }
	assert(p, e)
	print(string.format("%-6s %s  %-18s %3g%%  %6d MB  owner %s", who, p.id, what,
		tonumber(share) * 100, p.bytes >> 20, p.owner))
end

local pct = gpu.available(0)
print(string.format("kept free for ad-hoc use: %.2f%%", pct))
assert(pct == 20.0)

-- someone asks for a quarter: refused, nothing changes
local p, e = gpu.create{ device = 0, memory = 0.25, duration = 3600 }
assert(not p)
print("a 25% request: " .. e)
-- 20% still fits exactly, and then nothing does; released at the block's end
do
	local adhoc <close> = assert(gpu.create{ device = 0, memory = 0.2, duration = 600 })
	print(string.format("ad-hoc %s takes the last 20%%; available now %.2f%%", adhoc.id,
		gpu.available(0)))
end
print(string.format("ad-hoc partition closed; available again %.2f%%", gpu.available(0)))

print("\nkxrun gpu list (another process reading the same ledger):")
local code, out = kx.exec{ "env", "KXRUN_STATE_DIR=" .. top, arg[-1] or "kxrun", "gpu", "list" }
assert(code == 0)
io.write(out)
kx.exec{ "rm", "-rf", top }
