-- rfork.spawn: children resumed from this kxrun by fork, without exec (the
-- parent runs in its own kxrun process, as in rfork_spec.lua).  They are
-- kx.spawn's processes: pipes, wait, kill, ended with the task that
-- spawned them; errors before the switch come back as nil, message.
local rfork = require "kx.rfork"

local ROOT = os.getenv("ROOT") or "."
local need = dofile(ROOT .. "/tests/need.lua")

local specs = dofile(ROOT .. "/tests/rfork/specs.lua")
local start, stop, parse = specs.start, specs.stop, specs.parse

local function with(t, extra)
	local r = {}
	for k, v in pairs(t) do r[k] = v end
	for k, v in pairs(extra) do r[k] = v end
	return r
end

-- This kxrun's children (its only thread forks them), but for the zygote
-- rfork.spawn starts once and keeps while this process lives.
local SELF = io.open("/proc/self/stat"):read("l"):match("^(%d+)")
local function comm(pid)
	local f = io.open(("/proc/%d/comm"):format(pid))
	local c = f and f:read("l")
	if f then f:close() end
	return c
end
local function kids()
	local f = io.open(("/proc/%s/task/%s/children"):format(SELF, SELF))
	local t = {}
	for pid in f:read("a"):gmatch("%d+") do
		t[#t + 1] = { pid = tonumber(pid), comm = comm(tonumber(pid)) }
	end
	f:close()
	return t
end
local function children()
	local t = {}
	for _, k in ipairs(kids()) do
		if k.comm ~= "kxrun-zygote" then t[#t + 1] = k.pid end
	end
	return t
end
-- The pid of this kxrun's child of that name (a zygote, a template), or nil.
local function child_named(name)
	for _, k in ipairs(kids()) do
		if k.comm == name then return k.pid end
	end
end

-- Until only `keep` is left among this kxrun's children (or 10 s).
local function only_child(keep)
	local kids
	for _ = 1, 200 do
		kids = children()
		if #kids == 1 and kids[1] == keep then return end
		kx.sleep(0.05)
	end
	error("children left: " .. table.concat(kids, " "))
end

local function datafile()
	local _, out = kx.exec{ "mktemp", "/tmp/kxrun-rfork-spawn.XXXXXX" }
	local path = out:gsub("%s+$", "")
	assert(kx.write_file(path, "abcdefghijklmnopqrstuvwxyz"))
	return path
end

describe("rfork.spawn", function()
	it("checks its arguments and must be called from a task", function()
		assert.has_error(function() rfork.spawn{ id = "00", key = "00" } end)
		local ok, err = pcall(rfork.spawn, { address = "127.0.0.1:1", id = ("0"):rep(16),
			key = ("0"):rep(32), env = { X = "1" } })
		assert.is_false(ok)
		assert.matches("env", err)
		ok, err = pcall(rfork.spawn, { address = "127.0.0.1:1", id = ("0"):rep(16),
			key = ("0"):rep(32), transport = "udp" })
		assert.is_false(ok)
		assert.matches("transport", err)
		local c, msg = rfork.spawn{ address = "127.0.0.1:1", id = "00", key = "zz" }
		assert.is_nil(c)
		assert.equal("rfork.spawn: key must be 32 hex digits", msg)
	end)

	it("resumes children that see the prepare-time state, with pipes and statuses", function()
		if not need("userfaultfd") then return end
		local path = datafile()
		finally(function() os.remove(path) end)
		local p, snap = start("parent.lua", path)
		local c = assert(rfork.spawn(with(snap, { stdout = "pipe" })))
		assert.matches("^process %d+ %(running%)$", tostring(c))
		local t = parse(c.stdout:read("a"))
		assert.same({ code = 0 }, c:wait())
		specs.check_state(t)
		assert.equal("tcp\tthe parent prepared for TCP only", t.transport)
		only_child(p.pid)
		assert.matches("children\t1", stop(p))
	end)

	it("forks later children from a template, each with the prepare-time state", function()
		if not need("userfaultfd") then return end
		local path = datafile()
		finally(function() os.remove(path) end)
		-- children that wait for a line first: the first one keeps the
		-- shared pager a template joins running, however slow the host
		local p, snap = start("parent.lua", path, "wait")
		local function run(c)
			c.stdin:write("\n")
			local t = parse(c.stdout:read("a"))
			assert.same({ code = 0 }, c:wait())
			return t
		end
		local keep = assert(rfork.spawn(with(snap, { stdin = "pipe", stdout = "pipe" })))
		local templates = {}
		for i = 2, 6 do
			local t = run(assert(rfork.spawn(with(snap, { stdin = "pipe", stdout = "pipe" }))))
			-- its own index, the file at the parent's offset (its own
			-- description), the state as it was, whatever the last child did
			assert.equal(tostring(i), t.child, "child " .. i)
			t.child = "1"
			specs.check_state(t)
			local tmpl = child_named("kxrun-template")
			if tmpl then templates[tmpl] = true end
		end
		assert.is_not_nil(next(templates), "no template among this process's children")
		specs.check_state(run(keep))
		-- one ends by itself when it has had no order for a while (1 s)
		only_child(p.pid)
		assert.matches("children\t6", stop(p))
		-- the holder is gone: said as before, nothing left
		local none, err = rfork.spawn(snap)
		assert.is_nil(none)
		assert.matches("is the parent's holder still there", err)
	end)

	it("serves on when its template is killed", function()
		if not need("userfaultfd") then return end
		local p, snap = start("ctparent.lua")
		local keep = assert(rfork.spawn(with(snap, { stdin = "pipe", stdout = "pipe" })))
		keep.stdin:write("wait\n")
		assert.equal("waiting", keep.stdout:read("l"))
		local c = assert(rfork.spawn(with(snap, { stdin = "pipe" })))
		c.stdin:write("exit 5\n")
		assert.same({ code = 5 }, c:wait())
		local tmpl = child_named("kxrun-template")
		assert.is_not_nil(tmpl, "no template")
		-- a fork of it has the descriptors a `kxrun rfork resume` child has
		-- (but for pipes, pidfds and /dev/null: the kx.exec that lists them
		-- has some of its own open or not yet closed when it looks)
		local function fds(proc)
			proc.stdin:write("fds\n")
			local t = {}
			for line in proc.stdout:read("a"):gmatch("[^\n]+") do
				if not line:find("pidfd", 1, true) and not line:find("/dev/null", 1, true)
					and not line:find("pipe:", 1, true) then
					t[#t + 1] = (line:gsub(":%[%d+%]", ""))
				end
			end
			assert.same({ code = 0 }, proc:wait())
			table.sort(t)
			return t
		end
		local forked = fds(assert(rfork.spawn(with(snap, { stdin = "pipe", stdout = "pipe" }))))
		local KXRUN = os.getenv("KXRUN") or (ROOT .. "/kxrun")
		local resumed = fds(assert(kx.spawn{ KXRUN, "rfork", "resume", snap.address, snap.id,
			snap.key, stdin = "pipe", stdout = "pipe" }))
		assert.same(resumed, forked)
		assert.equal(0, kx.exec{ "kill", "-KILL", tostring(tmpl) })
		c = assert(rfork.spawn(with(snap, { stdin = "pipe" })))
		c.stdin:write("exit 6\n")
		assert.same({ code = 6 }, c:wait())
		keep.stdin:write("\n")
		assert.same({ code = 0 }, keep:wait())
		only_child(p.pid)
		stop(p)
	end)

	it("gives the child's exit status, stdin, a file for stdout and cwd", function()
		if not need("userfaultfd") then return end
		local path = datafile()
		finally(function() os.remove(path) end)
		local p, snap = start("ctparent.lua")
		local c = assert(rfork.spawn(with(snap, { stdin = "pipe", stdout = path, cwd = "/" })))
		c.stdin:write("show\n")
		assert.same({ code = 0 }, c:wait())
		local t = parse(io.open(path):read("a"))
		assert.equal(tostring(c.pid), t.pid)
		c = assert(rfork.spawn(with(snap, { stdin = "pipe" })))
		c.stdin:write("exit 3\n")
		assert.same({ code = 3 }, c:wait())
		stop(p)
	end)

	it("gives the child the parent's signal dispositions, as a resume process has", function()
		if not need("userfaultfd") then return end
		local p, snap = start("ctparent.lua")
		local c = assert(rfork.spawn(with(snap, { stdin = "pipe", stdout = "pipe" })))
		c.stdin:write("signals\n")
		local spawned = specs.parse(c.stdout:read("a"))
		assert.same({ code = 0 }, c:wait())
		local KXRUN = os.getenv("KXRUN") or (ROOT .. "/kxrun")
		local argv = { KXRUN, "rfork", "resume", snap.address, snap.id, snap.key,
			stdin = "pipe", stdout = "pipe" }
		local r = assert(kx.spawn(argv))
		r.stdin:write("signals\n")
		r.stdin:close()
		local resumed = specs.parse(r.stdout:read("a"))
		assert.same({ code = 0 }, r:wait())
		stop(p)
		assert.same(resumed, spawned)
		-- kxrun's own: SIGPIPE ignored, SIGINT and SIGTERM caught (the
		-- restorer's, and the resumed host's again; tests/cli/
		-- rfork_mechanism.sh checks dispositions nobody sets again)
		local ign, caught = tonumber(spawned.ign, 16), tonumber(spawned.caught, 16)
		assert.is_true(ign & (1 << 12) ~= 0, spawned.ign)
		assert.is_true(caught & (1 << 1) ~= 0 and caught & (1 << 14) ~= 0, spawned.caught)
	end)

	it("gives the child none of the caller's descriptors", function()
		if not need("userfaultfd") then return end
		local path = datafile()
		finally(function() os.remove(path) end)
		local p, snap = start("ctparent.lua")
		-- io.open: no close-on-exec, and a fork does not exec
		local held <close> = assert(io.open(path))
		local c = assert(rfork.spawn(with(snap, { stdin = "pipe", stdout = "pipe" })))
		c.stdin:write("fds\n")
		local out = c.stdout:read("a")
		assert.same({ code = 0 }, c:wait())
		assert.matches("fd\t", out)
		assert.is_nil(out:find(path, 1, true), out)
		stop(p)
	end)

	it("resumes 16 children at once", function()
		if not need("userfaultfd") then return end
		local path = datafile()
		finally(function() os.remove(path) end)
		local p, snap = start("parent.lua", path)
		local done, outs = 0, {}
		for i = 1, 16 do
			kx.go(function()
				local c = assert(rfork.spawn(with(snap, { stdout = "pipe" })))
				local out = c.stdout:read("a")
				outs[i] = { c:wait(), parse(out) }
				done = done + 1
			end)
		end
		for _ = 1, 1200 do
			if done == 16 then break end
			kx.sleep(0.05)
		end
		assert.equal(16, done)
		local seen = {}
		for i = 1, 16 do
			assert.same({ code = 0 }, outs[i][1])
			assert.equal("defg", outs[i][2].file)
			assert.equal("7", outs[i][2].n)
			seen[tonumber(outs[i][2].child)] = true
		end
		for i = 1, 16 do assert.is_true(seen[i], "child " .. i) end
		only_child(p.pid)
		assert.matches("children\t16", stop(p))
	end)

	it("says why when the key is wrong or the holder is gone, and leaves no process", function()
		if not need("userfaultfd") then return end
		local path = datafile()
		finally(function() os.remove(path) end)
		local p, snap, holder = start("parent.lua", path)
		local c, err = rfork.spawn(with(snap, { key = ("0"):rep(32) }))
		assert.is_nil(c)
		assert.matches("^rfork%.spawn: .*wrong key", err)
		only_child(p.pid)
		stop(p)
		for _ = 1, 200 do   -- the holder goes with its parent
			if not io.open("/proc/" .. holder .. "/stat") then break end
			kx.sleep(0.05)
		end
		c, err = rfork.spawn(snap)
		assert.is_nil(c)
		assert.matches("^rfork%.spawn: cannot connect to .*holder", err)
		for _ = 1, 200 do
			if #children() == 0 then break end
			kx.sleep(0.05)
		end
		assert.same({}, children())
	end)

	it("starts its children from a zygote, started again when it is gone", function()
		if not need("userfaultfd") then return end
		local p, snap = start("ctparent.lua")
		local c = assert(rfork.spawn(with(snap, { stdin = "pipe" })))
		c.stdin:write("exit 0\n")
		assert.same({ code = 0 }, c:wait())
		local zygote = child_named("kxrun-zygote")
		assert.is_number(zygote, "no zygote among this process's children")
		assert.equal(0, kx.exec{ "kill", "-KILL", tostring(zygote) })
		for _ = 1, 200 do   -- reaped by this kxrun
			if not io.open("/proc/" .. zygote .. "/stat") then break end
			kx.sleep(0.05)
		end
		c = assert(rfork.spawn(with(snap, { stdin = "pipe" })))
		c.stdin:write("exit 4\n")
		assert.same({ code = 4 }, c:wait())
		-- a cwd that is not there: said before the switch
		local none, err = rfork.spawn(with(snap, { cwd = "/nonexistent-kxrun-dir" }))
		assert.is_nil(none)
		assert.equal("rfork.spawn: cwd '/nonexistent-kxrun-dir': No such file or directory", err)
		none, err = rfork.spawn(with(snap, { stdout = "/nonexistent-kxrun-dir/out" }))
		assert.is_nil(none)
		assert.equal("rfork.spawn: stdout '/nonexistent-kxrun-dir/out': No such file or "
			.. "directory", err)
		only_child(p.pid)
		stop(p)
	end)

	it("kills a child with p:kill() and ends it with the task that spawned it", function()
		if not need("userfaultfd") then return end
		local p, snap = start("ctparent.lua")
		local c = assert(rfork.spawn(with(snap, { stdin = "pipe", stdout = "pipe" })))
		c.stdin:write("sleep\n")
		assert.equal("waiting", c.stdout:read("l"))
		assert.is_true(c:kill(9))
		assert.same({ signal = 9 }, c:wait(10))

		local child
		local task = kx.go(function()
			child = assert(rfork.spawn(with(snap, { stdin = "pipe", stdout = "pipe" })))
			child.stdin:write("sleep\n")
			kx.sleep(120)
		end)
		for _ = 1, 200 do
			if child then break end
			kx.sleep(0.05)
		end
		assert.equal("waiting", child.stdout:read("l"))
		task:cancel()
		local st = assert(child:wait(10), "the child outlived its task")
		assert.is_true(st.signal ~= nil or st.code ~= 0, "ended, not exited 0")
		only_child(p.pid)
		stop(p)
	end)

	it("cancelling the task while the child resumes leaves nothing", function()
		if not need("userfaultfd") then return end
		local p, snap = start("ctparent.lua")
		local child
		for _ = 1, 5 do
			local task = kx.go(function()
				child = rfork.spawn(with(snap, { stdin = "pipe" }))
			end)
			task:cancel()
		end
		assert.is_nil(child)
		only_child(p.pid)
		stop(p)
	end)

	it("resumes into a lean container", function()
		if not need("root", "userfaultfd", "netns") then return end
		local p, snap = start("ctparent.lua")
		local c = assert(rfork.spawn(with(snap, { stdin = "pipe", stdout = "pipe",
			container = { pid = true, net = true, hostname = "spawnbox" } })))
		c.stdin:write("show\n")
		local t = parse(c.stdout:read("a"))
		assert.same({ code = 0 }, c:wait())
		assert.equal("1", t.pid)
		assert.equal("spawnbox", t.host)
		assert.equal("lo", t.ifs)
		only_child(p.pid)
		stop(p)
	end)
end)
