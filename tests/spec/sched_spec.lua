-- kx.sched: the embedded backend with real processes.
local need = dofile((os.getenv("ROOT") or ".") .. "/tests/need.lua")
local sched = require "kx.sched"
local runner = require "kx.sched.runner"

local function tmpdir()
	return assert(kx.tmpdir("sched-spec"))
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

	it("gives concurrent exclusive tasks cores of their own (read back from the kernel)", function()
		if not need("cgroup-cpu-binding") then return end
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

	it("starts a task in its cgroup after the cgroup's zygote was killed (through the launcher)", function()
		if not need("cgroup-cpu-binding") then return end
		local dir = tmpdir()
		local s = assert(sched.connect())
		-- capacity 1: one cgroup in the pool, so both tasks get the same one
		kx.go(function() s:worker{ node = "z1", capacity = 1, binding = "shared" } end)
		kx.go(function() s:central{} end)
		local kind, v2 = runner.cgroups()
		local function cgroup_of(file)
			for line in read(file):gmatch("[^\n]+") do
				local ctl, path = line:match("^%d+:([^:]*):(/kxrun%-sched%-.*)$")
				if path and (kind == "v2" or ctl:find("cpu", 1, true)) then return path end
			end
		end
		s:submit{ "sh", "-c", "cat /proc/self/cgroup > " .. dir .. "/cg1" }
		local recs = assert(s:drain())
		assert.are.equal(0, recs[1].exit_code)
		local cg = assert(cgroup_of(dir .. "/cg1"), "the task ran in a task cgroup")
		local path = (kind == "v1" and "/sys/fs/cgroup/cpu" or v2) .. cg
		-- its zygote is the one process left there; killed (precondition:
		-- it is gone and the cgroup is empty)
		local zygote = tonumber(read(path .. "/cgroup.procs"):match("^(%d+)\n$"))
		assert.is_number(zygote, "one zygote in " .. path)
		assert.is_true(require("kx.sched.launch").kill(zygote, 9))
		for _ = 1, 200 do
			if read(path .. "/cgroup.procs") == "" then break end
			kx.sleep(0.01)
		end
		assert.are.equal("", read(path .. "/cgroup.procs"), "the zygote is gone")
		s:submit{ "sh", "-c", "cat /proc/self/cgroup > " .. dir .. "/cg2" }
		recs = assert(s:drain())
		s:close()
		assert.are.equal(0, recs[2].exit_code)
		assert.are.equal(cg, cgroup_of(dir .. "/cg2"), "the second task ran in the same cgroup")
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

	it("gives clear errors for misuse: closed handle, argv that is not strings, bad numbers, bad URLs", function()
		local s = assert(sched.connect())
		local ok, err = pcall(s.submit, s, { {} })
		assert.is_false(ok)
		assert.matches("bad argument #1 to 'submit' %(argv%[1%] is a table, string expected%)", err)
		assert.matches("cpuset must be a list", select(2, pcall(s.submit, s, { "true", cpuset = "abc" })))
		assert.matches("allocation_ratio must be a positive number, got %-?nan",
			select(2, pcall(s.worker, s, { allocation_ratio = 0 / 0 })))
		assert.matches("heartbeat %(7 s%) must be shorter than the lease %(6 s%)",
			select(2, pcall(s.worker, s, { heartbeat = 7, lease = 6 })))
		assert.matches("heartbeat %(2 s%) must be shorter than the lease %(1 s%)",
			select(2, pcall(s.worker, s, { heartbeat = 2, lease = 1 })))
		s:close()
		assert.matches("'submit' on a closed scheduler", select(2, pcall(s.submit, s, { "true" })))
		assert.matches("'drain' on a closed scheduler", select(2, pcall(s.drain, s)))
		assert.matches("bad port 'abc' in redis://:pw@127.0.0.1:abc/0",
			select(2, pcall(sched.connect, "redis://:pw@127.0.0.1:abc/0")))
		assert.matches("bad port '99999'", select(2, pcall(sched.connect, "redis://127.0.0.1:99999/0")))
		local R = require "kx.sched.redis"
		assert.are.equal("p1:", R.parse_url("redis://h:1/0?prefix=p1:").prefix)
		assert.are.equal("p1:", R.parse_url("redis://h:1/0?prefix=p1").prefix)
		local o = R.parse_url("redis://10.0.0.5:6379/0?password=123456")
		assert.are.same({ "10.0.0.5", 6379, 0, "123456" }, { o.host, o.port, o.db, o.password })
		o = R.parse_url("redis://:Wsr123@127.0.0.1:6380/2")
		assert.are.same({ "127.0.0.1", 6380, 2, "Wsr123" }, { o.host, o.port, o.db, o.password })
	end)

	it("records how a task ended: signal 9, a missing program's reason, a cpuset off the node", function()
		local s = assert(sched.connect())
		kx.go(function() s:worker{ node = "n1", capacity = 2, binding = "shared" } end)
		kx.go(function() s:central{} end)
		s:submit{ "sh", "-c", "kill -9 $$" }
		s:submit{ "no-such-program-kx" }
		s:submit{ "true", cpuset = "999" }
		local recs = s:drain()
		s:close()
		assert.are.equal(9, recs[1].signal)
		assert.is_nil(recs[1].exit_code)
		assert.are.equal(127, recs[2].exit_code)
		assert.matches("no%-such%-program%-kx: No such file or directory", recs[2].error)
		assert.are.equal(-1, recs[3].exit_code)
		assert.matches("cpuset 999: core 999 is not one of this node's cores", recs[3].error)
	end)

	it("names the task, its size and the largest node when the head can never start", function()
		local s = assert(sched.connect())
		kx.go(function() s:worker{ node = "n1", capacity = 2, binding = "shared" } end)
		kx.go(function() s:central{} end)
		s:submit{ "true", cpu_units = 1 }
		local big = s:submit{ "true", cpu_units = 4, profile = "hevc1080p" }
		local recs, err = s:drain()
		s:close()
		assert.is_nil(recs)
		assert.matches("task " .. big .. ": hevc1080p needs 4 units, the largest node has 2 %(n1%)", err)
	end)

	it("clamps an exclusive task larger than the node's cores, and says so in its record", function()
		if not need("cgroup-cpu-binding") then return end
		local cores = #runner.online_cores()
		local s = assert(sched.connect())
		kx.go(function() s:worker{ node = "n1", capacity = cores + 2, binding = "exclusive" } end)
		kx.go(function() s:central{} end)
		s:submit{ "true", cpu_units = cores + 2 }
		local recs = s:drain()
		s:close()
		assert.are.equal(0, recs[1].exit_code)
		assert.are.equal(runner.format_cpuset(runner.online_cores()), recs[1].cpuset)
		assert.matches(("clamped: %d units on a node with %d cores"):format(cores + 2, cores), recs[1].clamped)
	end)

	it("keeps a node to its capacity when tasks are put straight on its queue", function()
		local s = assert(sched.connect())
		kx.go(function() s:worker{ node = "n1", capacity = 1, binding = "shared" } end)
		kx.sleep(0.05)
		for _ = 1, 3 do s:submit{ "sleep", "0.1", node = "n1" } end
		local recs = s:drain()
		s:close()
		assert.are.equal(3, #recs)
		for i, a in ipairs(recs) do
			for j = i + 1, #recs do
				local b = recs[j]
				assert.is_false(a.ts_start < b.ts_end and b.ts_start < a.ts_end, "two tasks at once on a 1-unit node")
			end
		end
	end)

	it("uses Tracekit's exact ffmpeg command line for each profile", function()
		local argv = sched.profiles.light1c.argv("in.mp4", "out.mp4")
		assert.are.same({ "ffmpeg", "-i", "in.mp4", "-vf", "scale=854:480", "-c:v", "libx264", "-preset", "veryfast",
			"-crf", "28", "-threads:v", "1", "-filter_threads", "1", "-c:a", "copy", "out.mp4" }, argv)
		assert.are.same({ "ffmpeg", "-i", "i", "-vf", "scale=1920:1080", "-c:v", "libx265", "-preset", "medium",
			"-crf", "28", "-threads:v", "4", "-filter_threads", "4", "-c:a", "copy", "o" },
			sched.profiles.hevc1080p.argv("i", "o"))
		assert.are.equal(4, sched.profiles.hevc1080p.cpu_units)
		assert.are.equal("scale=1920:1080", sched.profiles.fast1080p.argv("i", "o")[5])
		assert.are.equal("scale=854:480", sched.profiles.medium480p.argv("i", "o")[5])
	end)

	it("dispatches as Tracekit's dispatcher: one task per input with --total 0, pulses spaced, FIFO under a limit", function()
		local dir = tmpdir()
		os.execute("mkdir -p " .. dir .. "/in && touch " .. dir .. "/in/a.mp4 " .. dir .. "/in/b.mp4 " .. dir .. "/in/c.mp4")
		local s = assert(sched.connect())
		-- no worker: tasks stay pending, which is what is looked at
		local ids = assert(s:dispatch{ inputs = dir .. "/in", outputs = dir .. "/out", mix = { light1c = 1 },
			total = 0, mode = "all" })
		assert.are.equal(3, #ids)
		local t0 = kx.now()
		assert(s:dispatch{ inputs = dir .. "/in", outputs = dir .. "/out", total = 3, mix = { light1c = 1 },
			mode = "pulse", pulse_size = 2, pulse_spacing = 0.2, pulse_interval = 0.3 })
		-- 2 tasks 0.2 s apart, 0.3 s, then the third
		assert.is_true(kx.now() - t0 >= 0.5, "pulse timing " .. (kx.now() - t0))
		local lines = {}
		local fifo = kx.go(function()
			return s:dispatch{ inputs = dir .. "/in", outputs = dir .. "/out", total = 4, mix = { light1c = 1 },
				mode = "fifo", pending_max = 7, batch_size = 2, dribble_interval = 0.05,
				log = function(l) lines[#lines + 1] = l end }
		end)
		kx.sleep(0.3)
		local n = s:status().pending
		s:close()
		fifo:cancel()
		-- 6 were pending: FIFO adds only one (pending_max 7) and waits
		assert.are.equal(7, n)
		assert.matches("%[pending%] enqueued batch=1, total=1, qlen=7", lines[1])
		os.execute("rm -rf " .. dir)
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
