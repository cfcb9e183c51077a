-- kx.rfork: a child resumed from a prepared parent sees the parent's Lua
-- state as it was at prepare (the parent runs in its own kxrun process,
-- the child is `kxrun rfork resume`, both on loopback).
local rfork = require "kx.rfork"

local ROOT = os.getenv("ROOT") or "."
local KXRUN = os.getenv("KXRUN") or (ROOT .. "/kxrun")

local need = dofile((os.getenv("ROOT") or ".") .. "/tests/need.lua")
local function uffd_ok() return need("userfaultfd") end

local function datafile()
	local _, out = kx.exec{ "mktemp", "/tmp/kxrun-rfork-spec.XXXXXX" }
	local path = out:gsub("%s+$", "")
	local f = assert(io.open(path, "w"))
	f:write("abcdefghijklmnopqrstuvwxyz")
	f:close()
	return path
end

local specs = dofile(ROOT .. "/tests/rfork/specs.lua")
local stop_parent, parse = specs.stop, specs.parse

-- Starts parent.lua; returns the process and its address, id, key and
-- holder's pid.
local function start_parent(path, mode)
	local p, a, holder = specs.start("parent.lua", path, mode)
	return p, a.address, a.id, a.key, holder
end

describe("kx.rfork", function()
	local path
	before_each(function() path = datafile() end)
	after_each(function() os.remove(path) end)

	it("prepare returns a handle with the real port, an id and a key", function()
		local h = assert(rfork.prepare{ listen = "127.0.0.1:0", idle = 5 })
		assert.is_false(h.child)
		assert.matches("^127%.0%.0%.1:%d+$", h.address)
		assert.is_not.equal("127.0.0.1:0", h.address)
		assert.matches("^%x+$", h.id)
		assert.equal(16, #h.id)
		assert.matches("^%x+$", h.key)
		assert.equal(32, #h.key)
		assert.equal(0, h.children)
		assert.matches("kx.rfork.handle", tostring(h))
		h:close()
		h:close()
		assert.is_nil(h.address)
	end)

	it("refuses a bad listen address and malformed ids or keys", function()
		local h, err = rfork.prepare{ listen = "nohostport" }
		assert.is_nil(h)
		assert.matches("HOST:PORT", err)
		local ok, rerr = rfork.resume{ address = "127.0.0.1:1", id = "00", key = "zz" }
		assert.is_nil(ok)
		assert.matches("key must be 32 hex digits", rerr)
		-- the right length is not enough: hex digits only (no sign, space, 0x)
		ok, rerr = rfork.resume{ address = "127.0.0.1:1", id = ("0"):rep(16),
			key = ("0"):rep(31) .. "g" }
		assert.is_nil(ok)
		assert.matches("key must be 32 hex digits", rerr)
		for _, id in ipairs{ "0x" .. ("0"):rep(14), " 1" .. ("0"):rep(14), "+1" .. ("0"):rep(14) } do
			ok, rerr = rfork.resume{ address = "127.0.0.1:1", id = id, key = ("0"):rep(32) }
			assert.is_nil(ok)
			assert.matches("id must be 16 hex digits", rerr)
		end
	end)

	it("resumes a child that sees the prepare-time state, not later changes", function()
		if not uffd_ok() then return end
		local p, address, id, key = start_parent(path)
		local code, out, err = kx.exec{ KXRUN, "rfork", "resume", address, id, key }
		assert.equal(0, code, err)
		local t = parse(out)
		specs.check_state(t)
		-- a parent prepared for TCP: "auto" (the default) takes TCP and says why
		assert.equal("tcp\tthe parent prepared for TCP only", t.transport)
		assert.matches("children\t1", stop_parent(p))
	end)

	it("serves several children at once", function()
		if not uffd_ok() then return end
		local p, address, id, key = start_parent(path)
		local done, results = 0, {}
		for i = 1, 3 do
			kx.go(function()
				results[i] = { kx.exec{ KXRUN, "rfork", "resume", address, id, key } }
				done = done + 1
			end)
		end
		while done < 3 do kx.sleep(0.05) end
		local seen = {}
		for i = 1, 3 do
			assert.equal(0, results[i][1], results[i][3])
			local t = parse(results[i][2])
			assert.equal("7", t.n)
			assert.equal("defg", t.file)
			seen[t.child] = true
		end
		assert.same({ ["1"] = true, ["2"] = true, ["3"] = true }, seen)
		assert.matches("children\t3", stop_parent(p))
	end)

	it("sends a child what earlier children were served, so it asks for less", function()
		if not uffd_ok() then return end
		local p, address, id, key = start_parent(path)
		-- KXRUN_RFORK_STATS: the pager's line, "N pages fetched in R requests"
		-- outside the batch, "(... ranges, L learned)" in it
		local function child()
			local code, out, err = kx.exec{ "env", "KXRUN_RFORK_STATS=1", KXRUN, "rfork",
				"resume", address, id, key }
			assert.equal(0, code, err)
			assert.equal("7", parse(out).n)
			local requests = tonumber(err:match("pages fetched in (%d+) requests"))
			local learned = tonumber(err:match("ranges, (%d+) learned%)"))
			assert.truthy(requests and learned, err)
			return requests, learned
		end
		local r1, l1 = child()
		assert.equal(0, l1)   -- the first child has the static guess only
		assert.is_true(r1 > 0)
		local r2, l2
		for _ = 1, 100 do   -- the first child's log reaches the holder as it closes
			r2, l2 = child()
			if l2 > 0 then break end
		end
		assert.is_true(l2 > 0)
		assert.is_true(r2 < r1, ("first child %d requests, later one %d"):format(r1, r2))
		-- no prefetch at all: every page on a fault, and still right
		local code, out, err = kx.exec{ "env", "KXRUN_RFORK_PREFETCH=0", KXRUN, "rfork",
			"resume", address, id, key }
		assert.equal(0, code, err)
		assert.equal("defg", parse(out).file)
		stop_parent(p)
	end)

	it("keeps Lua's big blocks in huge pages, and children read them", function()
		if not uffd_ok() or not need("thp") then return end
		-- a 64 MiB string; a table whose array part grows past 2 MiB (moved by
		-- mremap) and then is freed; THPeligible of the string's mapping says
		-- whether it may be in huge pages (madvise mode: only when advised)
		local script = [[
local rfork = require "kx.rfork"
local s = ("ab"):rep(32 << 20) .. "end"
local t = {}
for i = 1, 600000 do t[i] = i end
local sum = 0
for i = 1, #t do sum = sum + t[i] end
t = nil
collectgarbage()
local eligible = "none"
local size
for line in io.lines("/proc/self/smaps") do
	local a, b = line:match("^(%x+)%-(%x+) ")
	if a then size = tonumber(b, 16) - tonumber(a, 16) end
	local e = line:match("^THPeligible:%s+(%d)")
	if e and size >= (64 << 20) then eligible = e end
end
local h = assert(rfork.prepare{ listen = "127.0.0.1:0" })
if h.child then print(#s, s:sub(-5), sum) os.exit(0) end
print(h.address, h.id, h.key, eligible)
io.stdout:flush()
io.read("a")
h:close()
]]
		local file = datafile()
		finally(function() os.remove(file) end)
		assert(kx.write_file(file, script))
		local mode = io.open("/sys/kernel/mm/transparent_hugepage/enabled"):read("l")
		for _, huge in ipairs{ "1", "0" } do
			local p = assert(kx.spawn{ "env", "KXRUN_RFORK_HUGEPAGES=" .. huge, KXRUN, file,
				stdin = "pipe", stdout = "pipe" })
			local address, id, key, eligible = p.stdout:read("l"):match("^(%S+)\t(%x+)\t(%x+)\t(%S+)$")
			if huge == "1" or mode:match("%[always%]") then
				assert.equal("1", eligible)
			else
				assert.equal("0", eligible)
			end
			local code, out, err = kx.exec{ KXRUN, "rfork", "resume", address, id, key }
			assert.equal(0, code, err)
			assert.equal(("%d\tabend\t%d\n"):format(64 * 1024 * 1024 + 3, 600000 * 600001 // 2), out)
			p.stdin:close()
			p:wait()
		end
	end)

	it("takes transport = tcp | rdma | auto and says which it used", function()
		local ok, perr = pcall(rfork.prepare, { transport = "pigeon" })
		assert.is_false(ok)
		assert.truthy(perr:find([[(field 'transport': must be "tcp", "rdma" or "auto", not "pigeon")]], 1, true), perr)
		assert.has_error(function() rfork.resume{ address = "x:1", id = "0", key = "0",
			transport = "udp" } end)
		local h = assert(rfork.prepare{ listen = "127.0.0.1:0", transport = "tcp" })
		assert.equal("tcp", h.transport)
		assert.is_nil(h.rdma)
		h:close()
		-- RDMA needs a device whose port reaches the listening address; this
		-- is decided by what the machine has, as libibverbs would see it
		local devices = kx.exec{ "sh", "-c", "ls /sys/class/infiniband 2>/dev/null | grep -q ." } == 0
		local r, err = rfork.prepare{ listen = "127.0.0.1:0", transport = "rdma", idle = 5 }
		if devices then
			if r then
				assert.equal("rdma", r.transport)
				r:close()
			end
		else
			assert.is_nil(r)
			assert.matches("^rfork.prepare: transport rdma: ", err)
			assert.matches("RDMA", err)
		end
		local a = assert(rfork.prepare{ listen = "127.0.0.1:0", transport = "auto", idle = 5 })
		if not devices then
			assert.equal("tcp", a.transport)
			assert.is_nil(a.rdma)
			assert.matches("RDMA", a.transport_info)
		end
		a:close()
	end)

	it("refuses --transport rdma against a parent prepared for TCP, before resuming", function()
		if not uffd_ok() then return end
		local p, address, id, key = start_parent(path)
		local code, out, err = kx.exec{ KXRUN, "rfork", "resume", "--transport", "rdma",
			address, id, key }
		assert.equal(1, code)
		assert.equal("", out)
		assert.matches("transport rdma: the parent prepared for TCP only", err)
		-- and --transport tcp resumes it
		code, out, err = kx.exec{ KXRUN, "rfork", "resume", "-t", "tcp", address, id, key }
		assert.equal(0, code, err)
		assert.equal("tcp\t-", parse(out).transport)
		stop_parent(p)
	end)

	it("refuses a wrong key", function()
		local p, address, id = start_parent(path)
		local code, out, err = kx.exec{ KXRUN, "rfork", "resume", address, id,
			("0"):rep(32) }
		assert.equal(1, code)
		assert.equal("", out)
		assert.matches("wrong key", err)
		assert.matches("children\t0", stop_parent(p))
	end)

	it("fails cleanly when the parent is gone before the resume", function()
		local p, address, id, key = start_parent(path, "exit")
		p:wait()
		kx.sleep(0.2)   -- the holder dies with its parent
		local code, _, err = kx.exec{ KXRUN, "rfork", "resume", address, id, key }
		assert.equal(1, code)
		assert.matches("cannot connect", err)
	end)

	it("has the holder go when idle", function()
		local h = assert(rfork.prepare{ listen = "127.0.0.1:0", idle = 1 })
		local address, id, key = h.address, h.id, h.key
		kx.sleep(3)
		local code, _, err = kx.exec{ KXRUN, "rfork", "resume", address, id, key }
		assert.equal(1, code)
		assert.matches("cannot connect", err)
		h:close()
	end)

	it("kills a child whose holder stops answering, within the request timeout", function()
		if not uffd_ok() then return end
		local p, address, id, key, holder = start_parent(path, "wait")
		local c = assert(kx.spawn{ "env", "KXRUN_RFORK_TIMEOUT_MS=1000", KXRUN, "rfork",
			"resume", address, id, key, stdin = "pipe", stdout = "pipe", stderr = "pipe" })
		kx.sleep(1)        -- resumed, waiting on its stdin
		assert.equal(0, (kx.exec{ "kill", "-STOP", holder }))
		local t0 = kx.now()
		c.stdin:write("go\n")
		c.stdin:close()
		local err = c.stderr:read("a")
		local st = c:wait()
		kx.exec{ "kill", "-CONT", holder }
		assert.equal(9, st.signal)
		assert.matches("no answer from the holder in time", err)
		assert.is_true(kx.now() - t0 < 30)
		stop_parent(p)
	end)

	it("kills a child that touches pages after the parent went away", function()
		if not uffd_ok() then return end
		local p, address, id, key = start_parent(path, "wait")
		local c = assert(kx.spawn{ KXRUN, "rfork", "resume", address, id, key,
			stdin = "pipe", stdout = "pipe", stderr = "pipe" })
		kx.sleep(1)        -- resumed, waiting on its stdin
		p:kill("KILL")
		p:wait()
		kx.sleep(0.3)      -- the holder follows its parent
		c.stdin:write("go\n")
		c.stdin:close()
		local err = c.stderr:read("a")
		local st = c:wait()
		assert.equal(9, st.signal)
		assert.matches("cannot be reached", err)
	end)
end)
