-- Dispatch rate and latency of kx.sched's central against a model of
-- Tracekit's central loop (LINDEX head, KEYS cap:*, GET each, SET, LPOP,
-- RPUSH, 50 ms sleep when blocked), on the same redis-server in the same run.
--   rate: N no-op tasks placed on 16 simulated nodes, tasks per second
--   latency: one task every 20 ms at low load, enqueue -> taken by a worker
local redis = require "kx.redis"
local sched = require "kx.sched"
local N = tonumber(os.getenv("N")) or 3000
local NODES = 16

local port = 20000 + (tonumber(io.open("/proc/self/stat"):read("a"):match("^%d+")) % 20000)
local srv = assert(kx.spawn{ "redis-server", "--port", tostring(port), "--bind", "127.0.0.1", "--save", "",
	"--appendonly", "no", stdout = "null" })
local c
for _ = 1, 100 do
	c = redis.connect{ port = port }
	if c then break end
	kx.sleep(0.05)
end
assert(c, "redis-server did not start")
local function cmd(...)
	local r, err = c:call(...)
	if r == nil then error(err, 2) end
	return r   -- false for a nil reply
end

-- ---- kx.sched ----
local P = "kx:sched:"
local function setup_ours()
	cmd("FLUSHALL")
	for i = 1, NODES do
		local id = ("node%02d"):format(i)
		cmd("SADD", P .. "nodes", id)
		cmd("HSET", P .. "node:" .. id, "capacity", 1000000, "parallel", 0, "running", 0, "used", 0)
		cmd("SET", P .. "alive:" .. id, "1")
	end
end

local function ours_rate()
	setup_ours()
	local s = assert(sched.connect(("redis://127.0.0.1:%d/0"):format(port)))
	for i = 1, N do s:submit{ "true", cpu_units = 1 } end
	local t0 = kx.now()
	local central = kx.go(function() s:central{} end)
	while cmd("LLEN", P .. "pending") > 0 do kx.sleep(0.001) end
	local dt = kx.now() - t0
	s:close()
	central:wait()
	return N / dt
end

-- ---- the Tracekit model ----
local function setup_model()
	cmd("FLUSHALL")
	for i = 1, NODES do cmd("SET", ("cap:node%02d"):format(i), 1000000) end
end

local function model_central(stop)
	while not stop.now do
		local head = cmd("LINDEX", "q:pending", 0)
		if not head then
			kx.sleep(0.05)
		else
			local task = kx.json.decode(head)
			local keys = cmd("KEYS", "cap:*")
			table.sort(keys)
			local placed = false
			for _, k in ipairs(keys) do
				local cap = tonumber(cmd("GET", k))
				if cap >= task.cpu_units then
					cmd("SET", k, cap - task.cpu_units)
					cmd("LPOP", "q:pending")
					cmd("RPUSH", "q:" .. k:sub(5), head)
					placed = true
					break
				end
			end
			if not placed then kx.sleep(0.05) end
		end
	end
end

local function model_rate()
	setup_model()
	for i = 1, N do cmd("RPUSH", "q:pending", kx.json.encode{ id = i, argv = { "true" }, cpu_units = 1 }) end
	local stop = {}
	local t0 = kx.now()
	local central = kx.go(model_central, stop)
	while cmd("LLEN", "q:pending") > 0 do kx.sleep(0.001) end
	local dt = kx.now() - t0
	stop.now = true
	central:wait()
	return N / dt
end

-- ---- latency: enqueue -> popped by a worker at low load ----
local function percentile(t, p)
	table.sort(t)
	return t[math.max(1, math.ceil(#t * p))]
end

local function latency(kind)
	local M = 50
	local lat = {}
	local w = assert(redis.connect{ port = port })
	local stop = {}
	local central
	if kind == "ours" then
		setup_ours()
		local s = assert(sched.connect(("redis://127.0.0.1:%d/0"):format(port)))
		central = kx.go(function() s:central{} end)
		stop.s = s
		local consumer = kx.go(function()
			while #lat < M do
				local raw = w:call("BLMOVE", P .. "q:node01", P .. "inflight:node01", "LEFT", "RIGHT", 1)
				if raw then lat[#lat + 1] = kx.time() * 1000 - kx.json.decode(raw).ts_enqueue end
			end
		end)
		for _ = 1, M do s:submit{ "true", cpu_units = 1 }; kx.sleep(0.02) end
		consumer:wait(5)
		s:close()
	else
		setup_model()
		central = kx.go(model_central, stop)
		local consumer = kx.go(function()
			while #lat < M do
				local r = w:call("BLPOP", "q:node01", 1)
				if r then lat[#lat + 1] = kx.time() * 1000 - kx.json.decode(r[2]).ts_enqueue end
			end
		end)
		for i = 1, M do
			cmd("RPUSH", "q:pending", kx.json.encode{ id = i, cpu_units = 1, ts_enqueue = kx.time() * 1000 })
			kx.sleep(0.02)
		end
		consumer:wait(5)
		stop.now = true
	end
	central:wait()
	w:close()
	return percentile(lat, 0.5), percentile(lat, 0.99)
end

local ours, model = ours_rate(), model_rate()
print(("dispatch rate, %d no-op tasks on %d nodes: kx.sched %.0f tasks/s, Tracekit-model central %.0f tasks/s, ratio %.1fx (goal 20x)")
	:format(N, NODES, ours, model, ours / model))
local om, op = latency("ours")
local mm, mp = latency("model")
print(("enqueue -> taken by a worker, low load: kx.sched median %.2f ms p99 %.2f ms; Tracekit model median %.2f ms p99 %.2f ms; median ratio %.2fx")
	:format(om, op, mm, mp, om / mm))
c:call("SHUTDOWN", "NOSAVE")
srv:wait(2)
