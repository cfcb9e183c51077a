-- kronos_orchestrator.lua: the Kronos orchestrator flow (seed: "Kronos
-- controlled execution") with tracers as separate processes:
--   initializeExp(n) -> n `kxrun vtime tracer` processes -> synchronizeAndFreeze
--   -> progressBy(step, ...) until ROUNDS rounds -> stopExp; then each
--   tracer's output and status.
--
--   kxrun experiments/kronos_orchestrator.lua [ROUNDS=300] [STEP_NS=1000000]
-- (--help lists every parameter; --out DIR keeps the tracers' clocks in
-- results.jsonl, each progressBy call, virtual against real time, in
-- vtime.jsonl, and writes report.html.)
local kronos = require "kx.kronos"
local lab = require "kx.lab"

local exp = lab.experiment{
	name = "kronos_orchestrator",
	about = "Kronos's orchestrator flow: tracers register, the experiment progresses, stops",
	params = {
		{ "rounds", type = "int", default = 300, positional = true, help = "rounds to progress by" },
		{ "step", type = "int", default = 1000000, positional = true, meta = "NS", help = "virtual ns per round" },
		{ "calls", type = "int", default = 30, help = "progressBy calls the rounds are split into" },
	},
	metrics = { clock = "ms" },
	out = false, quiet = true,
}
local P = exp.params
if P.rounds < 1 or P.step < 1 or P.calls < 1 then
	io.stderr:write("kxrun: kronos_orchestrator.lua: ROUNDS, STEP_NS and --calls must be > 0\n")
	os.exit(2)
end
local rounds, step = P.rounds, P.step
-- the build directory (BUILD, else build/ of this script's repository)
local BUILD = os.getenv("BUILD") or "build"
if BUILD:sub(1, 1) ~= "/" then BUILD = (arg[0]:match("^(.*)/experiments/[^/]*$") or ".") .. "/" .. BUILD end
local bin = BUILD .. "/experiments/"
local port = tostring(dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/pingpong/port.lua")())

-- The processes to dilate, one tracer each: {command line, relative speed}.
local cmds = {
	{ bin .. "pingpong_server " .. port, 1.0 },
	{ bin .. "pingpong_client " .. port .. " 5 64 20000", 1.0 },
	{ "sh -c 'date +%T.%N; sleep 0.1; date +%T.%N'", 2.0 },
}

-- A socket of our own (the tracers find it through KXRUN_VTIME_SOCK).
local dir = assert(kx.tmpdir("kronos"))
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

-- progressBy in calls of a few rounds each, each recorded (virtual
-- against real time: kx.lab's exp:vtime over the experiment's clock)
local kexp = kronos.experiment()
local calls = setmetatable({
	now = function() return kexp:now() end,
	advance = function(_, n)
		if kronos.progressBy(step, n) < 0 then error("progressBy failed") end
		return kexp:now()
	end,
}, { __index = function(_, k) if k == "rounds" then return kexp.rounds end end })
local rec = exp:vtime(calls, "progressBy")
t0 = kx.now()
local chunk, done = math.max(1, rounds // P.calls), 0
while done < rounds do
	local n = math.min(chunk, rounds - done)
	rec:advance(n)
	done = done + n
end
print(("progressBy(%d, %d): virtual time %.3f ms after %.3f s real")
	:format(step, rounds, kronos.getCurrentVirtualTime() / 1e6, kx.now() - t0))
for i = 1, #cmds do
	local clock = kronos.getCurrentTimeTracer(i) / 1e6
	print(("  tracer %d: clock %.3f ms"):format(i, clock))
	exp:record{ system = ("tracer %d"):format(i), values = { clock = clock } }
end
kronos.stopExp()
for i, t in ipairs(tracers) do
	local st = t:wait(10) or {}
	print(("tracer %d (%s) exit %s"):format(i, cmds[i][1], tostring(st.code or st.signal)))
	for line in t.stdout:read("a"):gmatch("[^\n]+") do print("  | " .. line) end
	for line in t.stderr:read("a"):gmatch("[^\n]+") do print("  ! " .. line) end
end
os.execute("rm -rf " .. dir)
exp:finish()
