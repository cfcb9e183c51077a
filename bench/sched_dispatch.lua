-- kx.sched's Redis central against a model of Tracekit's central loop
-- (bench/lib_tracekit_central.lua), on the same redis-server in the same run.
--   rate:    N no-op tasks placed on 16 simulated nodes, tasks per second
--   latency: at low load (one task every 20 ms, one worker), enqueue -> the
--            worker has the task, median and p99
-- Tracekit's loop places N tasks (env N, 3000), kx.sched 10 N: its run would
-- otherwise be too short to time on a loaded machine.
local sched = require "kx.sched"
local client = require "kx.sched.redis.client"
local tracekit = dofile((arg and arg[0] or "bench/sched_dispatch.lua"):gsub("[^/]*$", "") .. "lib_tracekit_central.lua")

local N = tonumber(os.getenv("N")) or 3000
local NODES, LOW = 16, 50

local dir = os.tmpname(); os.remove(dir); os.execute("mkdir -p " .. dir)
local port, srv
for _ = 1, 10 do
	repeat port = math.random(20000, 60000) until not client.probe("127.0.0.1", port, 1)
	srv = assert(kx.spawn{ "redis-server", "--port", tostring(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir, stdout = "null", stderr = "null" })
	for _ = 1, 100 do
		if client.probe("127.0.0.1", port, 1) then break end
		if srv:wait(0.02) then srv = nil break end
	end
	if srv then break end
end
assert(srv, "redis-server did not start")
local url = ("redis://127.0.0.1:%d/0"):format(port)

local function conn()
	local c = client.new()
	assert(c:open("127.0.0.1", port, 5))
	return function(...)
		local r, err = c:call(...)
		if r == nil then error(err, 2) end
		return r
	end, c
end
local call = conn()

local node_ids = {}
for i = 1, NODES do node_ids[i] = ("node%02d"):format(i) end

local function percentile(xs, p)
	table.sort(xs)
	return xs[math.max(1, math.ceil(#xs * p))]
end

-- ---- rate: kx.sched ----------------------------------------------------
local function ours_rate()
	local N = 10 * N
	call("FLUSHALL")
	local P = "kx:sched:"
	for _, id in ipairs(node_ids) do
		call("SADD", P .. "nodes", id)
		call("HSET", P .. "node:" .. id, "capacity", 1000000, "parallel", 0, "running", 0, "used", 0)
		call("SET", P .. "alive:" .. id, 1)
	end
	local batch = {}
	for i = 1, N do
		batch[#batch + 1] = kx.json.encode{ id = "t" .. i, argv = { "true" }, cpu_units = 1, client = "bench" }
		if #batch == 200 or i == N then call("RPUSH", P .. "pending", table.unpack(batch)) batch = {} end
	end
	local s = assert(sched.connect(url))
	local t0 = kx.now()
	local central = kx.go(function() s:central{ heartbeat = 5 } end)
	while call("LLEN", P .. "pending") > 0 do kx.sleep(0.002) end
	local dt = kx.now() - t0
	s:close()
	central:wait()
	return N / dt
end

-- ---- rate: Tracekit's loop ----------------------------------------------
local function tracekit_rate()
	call("FLUSHALL")
	tracekit.setup(call, node_ids, 1000000)
	local P = tracekit.PREFIX
	local batch = {}
	for i = 1, N do
		batch[#batch + 1] = kx.json.encode{ id = "t" .. i, argv = { "true" }, cpu_units = 1 }
		if #batch == 200 or i == N then call("RPUSH", P .. "q:pending", table.unpack(batch)) batch = {} end
	end
	local popped, t_end = 0, nil
	local function counted(...)
		local r = call(...)
		if (...) == "LPOP" then
			popped = popped + 1
			if popped == N then t_end = kx.now() end
		end
		return r
	end
	local t0 = kx.now()
	tracekit.central(counted, function() return popped == N end)
	return N / (t_end - t0)
end

-- ---- latency: kx.sched --------------------------------------------------
local function ours_latency()
	call("FLUSHALL")
	local s = assert(sched.connect(url))
	local sent, taken = {}, {}
	local w = kx.go(function()
		s.backend:work({ id = "n1", capacity = 4, parallel = 0 }, function(task)
			taken[task.id] = kx.now()
			return { exit_code = 0 }
		end)
	end)
	local c = kx.go(function() s:central{} end)
	kx.sleep(0.2)
	for _ = 1, LOW do
		local t0 = kx.now()
		sent[s:submit{ "true" }] = t0
		kx.sleep(0.02)
	end
	s:drain()
	s:close()
	w:wait(); c:wait()
	local lat = {}
	for id, t0 in pairs(sent) do lat[#lat + 1] = (taken[id] - t0) * 1000 end
	return percentile(lat, 0.5), percentile(lat, 0.99)
end

-- ---- latency: Tracekit's loop -------------------------------------------
local function tracekit_latency()
	call("FLUSHALL")
	tracekit.setup(call, { "n1" }, 4)
	local P = tracekit.PREFIX
	local stop, lat = false, {}
	local central = kx.go(function() tracekit.central(call, function() return stop end) end)
	local wcall, wconn = conn()
	local worker = kx.go(function()
		while #lat < LOW do
			local r = wcall("BLPOP", P .. "q:n1", 1)
			if r then
				local t = kx.json.decode(r[2])
				lat[#lat + 1] = (kx.now() - t.sent) * 1000
				call("INCRBY", P .. "cap:n1", t.cpu_units)
			end
		end
	end)
	kx.sleep(0.2)
	for i = 1, LOW do
		tracekit.enqueue(call, { id = i, argv = { "true" }, cpu_units = 1, sent = kx.now() })
		kx.sleep(0.02)
	end
	worker:wait()
	stop = true
	central:wait()
	wconn:close()
	return percentile(lat, 0.5), percentile(lat, 0.99)
end

local ok, err = pcall(function()
	local ours, theirs = ours_rate(), tracekit_rate()
	print(("dispatch rate, no-op tasks on %d nodes: kx.sched %.0f tasks/s (%d tasks), Tracekit loop %.0f tasks/s (%d tasks), ratio %.1fx (goal 20x)")
		:format(NODES, ours, 10 * N, theirs, N, ours / theirs))
	local om, o99 = ours_latency()
	local tm, t99 = tracekit_latency()
	print(("enqueue -> start at low load (%d tasks, 20 ms apart): kx.sched median %.2f ms p99 %.2f ms; Tracekit loop median %.2f ms p99 %.2f ms; median ratio %.1fx")
		:format(LOW, om, o99, tm, t99, tm / om))
end)
srv:kill("TERM")
srv:wait(5)
os.execute("rm -rf " .. dir)
if not ok then error(err, 0) end
