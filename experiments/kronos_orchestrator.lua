-- kronos_orchestrator.lua: the Kronos orchestrator flow (seed: "Kronos
-- controlled execution") with tracers as separate processes:
--   initializeExp(n) -> n `kxrun vtime tracer` processes -> synchronizeAndFreeze
--   -> progressBy(step, rounds) -> stopExp; then each tracer's output and status.
--
--   kxrun experiments/kronos_orchestrator.lua [ROUNDS=300] [STEP_NS=1000000]
local kronos = require "kx.kronos"

local rounds = math.tointeger(tonumber(arg[1] or 300))
local step = math.tointeger(tonumber(arg[2] or 1000000))
assert(rounds and rounds > 0 and step and step > 0,
	"usage: kronos_orchestrator.lua [ROUNDS>0] [STEP_NS>0]")
local bin = (os.getenv("BUILD") or "build") .. "/experiments/"
local port = tostring(math.random(20000, 60000))

-- The processes to dilate, one tracer each: {command line, relative speed}.
local cmds = {
	{ bin .. "pingpong_server " .. port, 1.0 },
	{ bin .. "pingpong_client " .. port .. " 5 64 20000", 1.0 },
	{ "sh -c 'date +%T.%N; sleep 0.1; date +%T.%N'", 2.0 },
}

-- A socket of our own (the tracers find it through KXRUN_VTIME_SOCK).
local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir)
local sock = dir .. "/vtime.sock"

local rc, err = kronos.initializeExp(#cmds, { step = step, sock = sock })
if rc < 0 then error("Kronos initialization failed: " .. err) end
local tracers = {}
for i, c in ipairs(cmds) do
	tracers[i] = assert(kx.spawn{ kx.exe, "vtime", "tracer", "-c", c[1], "-r", tostring(c[2]),
		"-i", tostring(i), env = { KXRUN_VTIME_SOCK = sock }, stdout = "pipe", stderr = "pipe" })
end
local t0 = kx.now()
while kronos.synchronizeAndFreeze(30) <= 0 do
	print("Kronos >> Synchronize and Freeze failed. Retrying")
end
print(("%d tracers registered and frozen in %.3f s; virtual time %d ns")
	:format(#cmds, kx.now() - t0, kronos.getCurrentVirtualTime()))
t0 = kx.now()
if kronos.progressBy(step, rounds) < 0 then error("progressBy failed") end
print(("progressBy(%d, %d): virtual time %.3f ms after %.3f s real")
	:format(step, rounds, kronos.getCurrentVirtualTime() / 1e6, kx.now() - t0))
for i = 1, #cmds do
	print(("  tracer %d: clock %.3f ms"):format(i, kronos.getCurrentTimeTracer(i) / 1e6))
end
kronos.stopExp()
for i, t in ipairs(tracers) do
	local st = t:wait(10) or {}
	print(("tracer %d (%s) exit %s"):format(i, cmds[i][1], tostring(st.code or st.signal)))
	for line in t.stdout:read("a"):gmatch("[^\n]+") do print("  | " .. line) end
	for line in t.stderr:read("a"):gmatch("[^\n]+") do print("  ! " .. line) end
end
os.execute("rm -rf " .. dir)
