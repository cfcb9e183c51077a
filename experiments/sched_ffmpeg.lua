-- sched_ffmpeg.lua: Tracekit's "complete test flow" on one machine.
--   kxrun experiments/sched_ffmpeg.lua              a real redis-server on loopback (password set)
--   kxrun experiments/sched_ffmpeg.lua --embedded   the embedded backend, no Redis
-- Two workers as two node ids (shared binding, 1.25x overprovisioning), the
-- central with the instances weigher, a 20-task mix in pulses, every task
-- traced; then parse and a summary (makespan, wait per profile).
local sched = require "kx.sched"
local trace = require "kx.trace"
local embedded = arg[1] == "--embedded"
local base = ("logs/sched-%s"):format(os.date("%Y%m%d-%H%M%S"))
os.execute("mkdir -p " .. base)

if not os.execute("ls inputs/ffmpeg/*.mp4 >/dev/null 2>&1") then
	assert(kx.exec{ kx.exe, "sched", "gen-inputs", "--output", "inputs/ffmpeg", "--count", "3",
		"--duration", "2", "--size", "640x360" } == 0, "could not make inputs")
end

local url, server
if not embedded then
	local port = 20000 + (tonumber(io.open("/proc/self/stat"):read("a"):match("^%d+")) % 20000)
	server = assert(kx.spawn{ "redis-server", "--port", tostring(port), "--bind", "127.0.0.1",
		"--requirepass", "kxpw", "--save", "", "--appendonly", "no", stdout = base .. "/redis.log" })
	url = ("redis://:kxpw@127.0.0.1:%d/0"):format(port)
	kx.sleep(0.3)
end
local s = assert(sched.connect(url))
local run = assert(trace.start{ dir = base .. "/trace", interval = 0.2, stage = "cloud", quiet = true })
local ws = {}
for _, node in ipairs{ "cloud1", "cloud2" } do
	ws[#ws + 1] = kx.go(function()
		s:worker{ node = node, allocation_ratio = 1.25, binding = "shared", trace = run, logs = base }
	end)
end
local central = kx.go(function() s:central{ weigher = "instances", order = "min" } end)
assert(s:dispatch{ inputs = "inputs/ffmpeg", outputs = base .. "/outputs",
	mix = { fast1080p = 2, medium480p = 3, hevc1080p = 2, light1c = 3 },
	total = 20, seed = 20250901, mode = "pulse", pulse_size = 10, pulse_interval = 0.1 })
local records = s:drain()
s:close()
for _, w in ipairs(ws) do w:wait() end
central:wait()
run:stop()
local audit = assert(trace.parse(base .. "/trace"))
if server then server:kill() server:wait() end

local by, first, last = {}, math.huge, 0
for _, r in ipairs(records) do
	local b = by[r.profile] or { n = 0, wait = 0, run = 0, nodes = {} }
	by[r.profile] = b
	b.n, b.wait, b.run = b.n + 1, b.wait + (r.ts_start - r.ts_enqueue), b.run + (r.ts_end - r.ts_start)
	b.nodes[r.node] = (b.nodes[r.node] or 0) + 1
	first, last = math.min(first, r.ts_enqueue), math.max(last, r.ts_end)
end
print(("%s backend, %d tasks, trace audit %s (%s/trace/CTS)"):format(embedded and "embedded" or "redis",
	#records, audit.ok and "PASS" or "FAIL", base))
print(("%-12s %5s %12s %12s  %s"):format("profile", "tasks", "mean wait ms", "mean run ms", "nodes"))
for _, p in ipairs{ "fast1080p", "medium480p", "hevc1080p", "light1c" } do
	local b = by[p]
	if b then
		local nodes = {}
		for n, k in pairs(b.nodes) do nodes[#nodes + 1] = n .. "=" .. k end
		table.sort(nodes)
		print(("%-12s %5d %12.0f %12.0f  %s"):format(p, b.n, b.wait / b.n, b.run / b.n, table.concat(nodes, " ")))
	end
end
print(("makespan %.2f s"):format((last - first) / 1000))
