-- kx.sched: the embedded backend with real processes.
local need = dofile((os.getenv("ROOT") or ".") .. "/tests/need.lua")
local sched = require "kx.sched"
local runner = require "kx.sched.runner"

local function tmpdir()
	local d = os.tmpname(); os.remove(d); assert(os.execute("mkdir -p " .. d)); return d
end

local function read(p) local f = io.open(p) if not f then return nil end local s = f:read("a") f:close() return s end

describe("kx.sched embedded", function()
	it("runs every submitted task exactly once", function()
		local dir = tmpdir()
		local s = assert(sched.connect())
		kx.go(function() s:worker{ node = "n1", capacity = 2, binding = "shared" } end)
		kx.go(function() s:worker{ node = "n2", capacity = 1, binding = "shared" } end)
		kx.go(function() s:central{ weigher = "instances" } end)
		local ids = {}
		for i = 1, 20 do
			ids[i] = s:submit{ "sh", "-c", "echo x >> " .. dir .. "/t" .. i .. "; sleep 0.02", cpu_units = 1 }
		end
		local recs = s:drain()
		s:close()
		assert.are.equal(20, #recs)
		local last = 0
		for i, r in ipairs(recs) do
			assert.are.equal(ids[i], r.id)
			assert.are.equal(0, r.exit_code)
			assert.are.equal("x\n", read(dir .. "/t" .. i), "task " .. i .. " ran once")
			assert.is_true(r.ts_enqueue > last, "ts_enqueue strictly increasing")
			last = r.ts_enqueue
			assert.is_true(r.ts_enqueue <= r.ts_dispatch and r.ts_dispatch <= r.ts_start + 1 and r.ts_start <= r.ts_end)
		end
		os.execute("rm -rf " .. dir)
	end)

	it("starts tasks in FIFO order and blocks behind a head that does not fit", function()
		local s = assert(sched.connect())
		kx.go(function() s:worker{ node = "n1", capacity = 2, parallel = 1, binding = "shared" } end)
		kx.go(function() s:central{} end)
		s:submit{ "sleep", "0.05", cpu_units = 1 }
		s:submit{ "sleep", "0.05", cpu_units = 2 }
		s:submit{ "true", cpu_units = 1 }
		local big = s:submit{ "true", cpu_units = 3 }   -- larger than the node: blocks for good
		s:submit{ "true", cpu_units = 1 }
		local st
		for _ = 1, 100 do   -- until the three before it ran (a loaded machine is slow)
			st = s:status()
			if st.blocking and st.blocking.id == big and st.pending == 2 then break end
			kx.sleep(0.05)
		end
		assert.are.equal(big, st.blocking.id)
		assert.matches("larger than every node", st.blocking.reason)
		assert.are.equal(2, st.pending)   -- the big head and the one behind it
		s:close()
	end)

	it("gives concurrent exclusive tasks cores of their own (read back from the cgroup)", function()
		if not need("cgroup1-cpuset") then return end
		local dir = tmpdir()
		local s = assert(sched.connect())
		local cores = #runner.online_cores()
		kx.go(function() s:worker{ node = "n1", binding = "exclusive", logs = dir } end)
		kx.go(function() s:central{} end)
		for i = 1, 2 * cores do
			s:submit{ "sh", "-c", "grep Cpus_allowed_list /proc/self/status > " .. dir .. "/c" .. i .. "; sleep 0.1", cpu_units = 1 }
		end
		local recs = s:drain()
		s:close()
		-- tasks that overlapped in time never shared a core
		for i, a in ipairs(recs) do
			local got = read(dir .. "/c" .. a.id):match(":%s*(%S+)")
			assert.are.equal(a.cpuset, got)
			for j = i + 1, #recs do
				local b = recs[j]
				if a.ts_start < b.ts_end and b.ts_start < a.ts_end then
					assert.are_not.equal(a.cpuset, b.cpuset)
				end
			end
		end
		os.execute("rm -rf " .. dir)
	end)

	it("builds the same mix sequence from the same seed", function()
		local a = sched.sequence({ fast1080p = 2, medium480p = 3, hevc1080p = 2, light1c = 3 }, 20, 20250901)
		local b = sched.sequence({ fast1080p = 2, medium480p = 3, hevc1080p = 2, light1c = 3 }, 20, 20250901)
		local c = sched.sequence({ fast1080p = 2, medium480p = 3, hevc1080p = 2, light1c = 3 }, 20, 7)
		assert.are.same(a, b)
		assert.are_not.same(a, c)
		local n = {}
		for _, p in ipairs(a) do n[p] = (n[p] or 0) + 1 end
		assert.are.same({ fast1080p = 4, medium480p = 6, hevc1080p = 4, light1c = 6 }, n)
	end)

	it("refuses unknown profiles, weighers and bindings", function()
		local s = assert(sched.connect())
		assert.has_error(function() s:dispatch{ mix = { nosuch = 1 }, total = 1 } end)
		assert.has_error(function() s:central{ weigher = "fastest" } end)
		assert.has_error(function() s:worker{ binding = "loose" } end)
		assert.has_error(function() s:submit{ "true", cpu_units = 0 } end)
		assert.has_error(function() sched.connect("http://x") end)
		s:close()
	end)

	it("runs a worker's tasks through a trace run", function()
		local trace = require "kx.trace"
		local dir = tmpdir()
		local run = assert(trace.start{ dir = dir .. "/run", interval = 0.05, quiet = true })
		local s = assert(sched.connect())
		kx.go(function() s:worker{ node = "n1", capacity = 2, binding = "shared", trace = run } end)
		kx.go(function() s:central{} end)
		s:submit{ "sh", "-c", "sleep 0.05", trace_id = "job-a" }
		s:submit{ "sh", "-c", "exit 3", trace_id = "job-b" }
		local recs = s:drain()
		s:close()
		run:stop()
		assert.are.equal(3, recs[2].exit_code)
		local inv = read(dir .. "/run/raw/invocations.jsonl")
		assert.matches('"trace_id":"job%-a"', inv)
		assert.matches('"trace_id":"job%-b"', inv)
		assert.is_true(trace.parse(dir .. "/run").ok)
		os.execute("rm -rf " .. dir)
	end)
end)
