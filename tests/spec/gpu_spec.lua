-- kx.gpu from Lua: partitions in a private ledger (PoCL's CPU device).
local gpu = require "kx.gpu"

-- Pending only where the OpenCL ICD loader lists no device (the feature
-- probe, tests/features.sh opencl, not kxrun); where there is one, a
-- failing kx.gpu fails these.
local need = dofile((os.getenv("ROOT") or ".") .. "/tests/need.lua")

local function tmpdir()
	local _, out = kx.exec{ "mktemp", "-d", "/tmp/kxrun-gpu-spec.XXXXXX" }
	return (out:gsub("%s+$", ""))
end

describe("kx.gpu", function()
	local top
	before_each(function()
		top = tmpdir()
		gpu.state_dir(top .. "/gpu")
	end)
	after_each(function()
		gpu.state_dir(false)
		kx.exec{ "rm", "-rf", top }
	end)

	it("lists devices in order with their facts", function()
		if not need("opencl") then return end
		local devs = assert(gpu.devices())
		assert.is_true(#devs >= 1)
		assert.equal(0, devs[1].index)
		assert.is_true(devs[1].memory > 0)
		assert.is_string(devs[1].name)
		assert.matches("^OpenCL %d", devs[1].version)
	end)

	it("creates, lists and releases, with integer bytes", function()
		if not need("opencl") then return end
		local devs = assert(gpu.devices())
		local p = assert(gpu.create{ device = 0, memory = 0.25, duration = 60 })
		assert.equal("partition_0001", p.id)
		assert.equal(devs[1].memory * 250000 // 1000000, p.bytes)
		assert.is_true(p:remaining() > 58 and p:remaining() <= 60)
		local pct, ppm = gpu.available(0)
		assert.equal(75.0, pct)
		assert.equal(750000, ppm)
		local l = gpu.list()
		assert.equal(1, #l)
		assert.equal(p.id, l[1].id)
		assert.equal(0.25, l[1].memory)
		assert.is_true(p:release())
		-- misuse of a released handle raises, as with a closed file
		assert.has_error(function() p:release() end,
			"attempt to use a released partition (partition_0001)")
		assert.has_error(function() p:exec{ "true" } end)
		assert.equal(0, p:remaining())
		assert.equal(0, #gpu.list())
		-- a partition that is gone is a failure of the world: nil, message
		local q = assert(gpu.create{ device = 0, memory = 0.25, duration = 60 })
		assert.is_true(gpu.release(q.id))
		local ok, err = q:release()
		assert.is_nil(ok)
		assert.equal("Partition not found: partition_0002", err)
	end)

	it("releases at the end of a <close> scope", function()
		if not need("opencl") then return end
		do
			local p <close> = assert(gpu.create{ device = 0, memory = "0.5", duration = 60 })
			assert.equal(50.0, gpu.available(0))
		end
		assert.equal(100.0, gpu.available(0))
	end)

	it("returns Chronos's messages for bad requests", function()
		if not need("opencl") then return end
		local p, err = gpu.create{ device = 0, memory = 0.8, duration = 60 }
		assert.truthy(p)
		p, err = gpu.create{ device = 0, memory = 0.3, duration = 60 }
		assert.is_nil(p)
		assert.matches("^Not enough available memory", err)
		p, err = gpu.create{ device = 99, memory = 0.1, duration = 60 }
		assert.is_nil(p)
		assert.matches("^Invalid device index", err)
		p, err = gpu.create{ device = 0, memory = 0, duration = 60 }
		assert.matches("^Invalid memory fraction", err)
		p, err = gpu.create{ device = 0, memory = 1.5, duration = 60 }
		assert.matches("^Invalid memory fraction", err)
		p, err = gpu.create{ device = 0, memory = 0.1, duration = 0 }
		assert.matches("^Invalid duration", err)
		p, err = gpu.create{ device = 0, memory = 0.1, duration = 1e12 }
		assert.matches("^Invalid duration", err)
		local ok
		ok, err = gpu.release("partition_9999")
		assert.is_nil(ok)
		assert.equal("Partition not found: partition_9999", err)
		assert.has_error(function() gpu.create{ device = 0, duration = 5 } end)
	end)

	it("refuses a uid that cannot be one, and a state directory that is not a name", function()
		if not need("opencl") then return end
		-- -1 is "no uid" to the kernel: never a partition for uid4294967295
		assert.error_matches(function() gpu.create{ memory = 0.1, duration = 5, user = -1 } end,
			"field 'user': a user name or a uid from 0 to 4294967294", 1, true)
		assert.has_error(function() gpu.create{ memory = 0.1, duration = 5, user = 2^32 } end)
		assert.has_error(function() gpu.create{ memory = 0.1, duration = 5, user = 1.5 } end)
		local p, err = gpu.create{ memory = 0.1, duration = 5, user = "no-such-user-kx" }
		assert.is_nil(p)
		assert.equal("Unknown user: no-such-user-kx", err)
		assert.equal(0, #gpu.list())
		-- a number is not a directory name (it was taken as ./5)
		local dir = gpu.state_dir()
		assert.error_matches(function() gpu.state_dir(5) end,
			"bad argument #1 to '[%w.]*state_dir' %(string or false expected, got number%)")
		assert.has_error(function() gpu.state_dir(true) end)
		assert.equal(dir, gpu.state_dir())
	end)

	it("runs a program under the partition's limit", function()
		if not need("opencl") then return end
		local devs = assert(gpu.devices())
		-- a share of exactly 3 MiB plus a little: three 1 MiB buffers fit
		local ppm = (3 * 1048576 * 1000000 + devs[1].memory - 1) // devs[1].memory
		local p <close> = assert(gpu.create{ device = 0,
			memory = string.format("0.%06d", ppm), duration = 60 })
		assert.equal(3, p.bytes // 1048576)
		local alloc = (os.getenv("BUILD") or "build") .. "/tests/gpu_alloc"
		-- through a shell: the limit holds for the program it starts too
		local st = assert(p:exec{ "sh", "-c", alloc .. " 1 5 >/dev/null" })
		assert.equal(3, st.code)   -- refused
		assert.is_false(st.expired)
		local ok, err = p:exec{ "/nonexistent/program" }
		assert.is_nil(ok)
		assert.matches("cannot run", err)
	end)

	it("stops a program when the partition expires", function()
		if not need("opencl") then return end
		local p = assert(gpu.create{ device = 0, memory = 0.1, duration = 0.5 })
		local t0 = kx.now()
		local st = assert(p:exec{ "sh", "-c", "trap '' TERM; sleep 20", grace = 0.3 })
		assert.equal(9, st.signal)
		assert.is_true(st.expired)
		assert.is_true(kx.now() - t0 < 10)
		assert.equal(0, #gpu.list())
	end)

	-- A program runs in the partition while another task releases it.
	local function start(p, script)
		local pidfile = top .. "/pid." .. p.id
		local st
		local t = kx.go(function()
			st = p:exec{ "sh", "-c", "echo $$ >" .. pidfile .. "; " .. script, grace = 5 }
		end)
		for _ = 1, 400 do
			local f = io.open(pidfile)
			local pid = f and f:read("n")
			if f then f:close() end
			if pid then return pid, t, function() return st end end
			kx.sleep(0.01)
		end
		error("the program did not start")
	end
	local function alive(pid)
		local f = io.open("/proc/" .. pid .. "/stat")
		if not f then return false end
		local state = (f:read("a") or ""):match("%) (%a)")   -- nothing: reaped meanwhile
		f:close()
		return state ~= nil and state ~= "Z" and state ~= "X" and state ~= "x"
	end

	it("refuses to release while programs run in it, and ends them by force", function()
		if not need("opencl") then return end
		local p = assert(gpu.create{ device = 0, memory = 1.0, duration = 60 })
		local pid, t, status = start(p, "exec sleep 77")
		local ok, err = p:release()
		assert.is_nil(ok)
		assert.matches("^Partition partition_0001 has programs running in it: sleep %(pid " .. pid .. "%)", err)
		assert.is_true(alive(pid))
		-- the device is never promised twice
		local q, qerr = gpu.create{ device = 0, memory = 1.0, duration = 60 }
		assert.is_nil(q)
		assert.matches("^Not enough available memory", qerr)
		assert.is_true(p:release{ force = true, grace = 2 })
		assert.is_false(alive(pid))
		t:wait()
		assert.equal(15, status().signal)   -- SIGTERM, within the grace
		q = assert(gpu.create{ device = 0, memory = 1.0, duration = 60 })
		assert.is_true(q:release())
		assert.has_error(function() gpu.release("partition_0001", { grace = -1 }) end)
	end)

	it("kills what ignores SIGTERM after the grace, and <close> ends its programs", function()
		if not need("opencl") then return end
		local p = assert(gpu.create{ device = 0, memory = 0.5, duration = 60 })
		local pid, t = start(p, "trap '' TERM; sleep 77")
		local t0 = kx.now()
		assert.is_true(gpu.release(p.id, { force = true, grace = 0.3 }))
		assert.is_true(kx.now() - t0 >= 0.3)
		assert.is_false(alive(pid))
		t:wait()
		local pid2, t2
		do
			local q <close> = assert(gpu.create{ device = 0, memory = 0.5, duration = 60 })
			pid2, t2 = start(q, "exec sleep 77")
		end   -- released here, by force, without waiting
		t2:wait()
		assert.is_false(alive(pid2))
		for _ = 1, 200 do
			if #gpu.list() == 0 then break end
			kx.sleep(0.02)
		end
		assert.equal(0, #gpu.list())
		assert.equal(100.0, gpu.available(0))
	end)
end)
