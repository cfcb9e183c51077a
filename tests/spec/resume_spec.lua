-- kxrun's side of kx.rfork (bindings/rfork/host*.c), without the rfork
-- core: kx._resume_test.fork() makes a child in the state a resumed child
-- is in right after the switch (raw fork: no atfork handlers; every
-- descriptor above 2 closed), then runs rf_host_reset in it.  Each case
-- runs a small kxrun script; the child and the parent report lines
-- "TAG {json}" on stdout.  kx._resume_test is a test-only module
-- ($BUILD/tests/lua/kx/_resume_test.so), not in the kxrun binary.
local BUILD = os.getenv("BUILD") or "build"
if BUILD:sub(1, 1) ~= "/" then BUILD = os.getenv("PWD") .. "/" .. BUILD end
local CPATH = BUILD .. "/tests/lua/?.so;;"

local PRELUDE = [[
local T = require "kx._resume_test"
local function report(tag, t)
	io.stdout:write(tag, " ", kx.json.encode(t), "\n")
	io.stdout:flush()
end
]]

local function run(script, opts)
	opts = opts or {}
	local path = os.tmpname()
	local f = assert(io.open(path, "w"))
	f:write(opts.repl and "" or PRELUDE, script)
	f:close()
	-- a REPL reads the lines from its standard input
	local argv = opts.repl and { kx.exe, "-i" } or { kx.exe, path }
	argv.stdout, argv.stderr = "pipe", "pipe"
	argv.stdin = opts.repl and path or "null"
	argv.env = { LUA_CPATH_5_4 = CPATH }
	local p = assert(kx.spawn(argv))
	local st = p:wait(opts.timeout or 30)
	if not st then
		p:kill("KILL")
		st = p:wait()
		st.timed_out = true
	end
	local out, err = p.stdout:read("a"), p.stderr:read("a")
	os.remove(path)
	local rep = {}
	for tag, js in out:gmatch("(%u+) (%b{})\n") do rep[tag] = kx.json.decode(js) end
	return st, rep, out, err
end

local function expect_exit(st, code, err)
	assert.is_nil(st.timed_out, "timed out; stderr: " .. tostring(err))
	assert.are.equal(code, st.code, "exit status; stderr: " .. tostring(err))
end

describe("a resumed child (simulated)", function()
	it("sleeps, fires timers and exits with its own status", function()
		local st, rep, _, err = run [[
			local pid = T.fork()
			if pid == 0 then
				local t0 = kx.now()
				kx.sleep(0.05)
				local n = 0
				local tm = kx.every(0.01, function() n = n + 1 end)
				kx.sleep(0.2)
				tm:stop()
				report("CHILD", { slept = kx.now() - t0, ticks = n,
					pid = T.getpid() })
				os.exit(7)
			end
			report("PARENT", { wait = T.wait(pid), pid = pid })
		]]
		expect_exit(st, 0, err)
		assert.is_table(rep.CHILD, err)
		assert.is_true(rep.CHILD.slept >= 0.2)
		assert.is_true(rep.CHILD.ticks >= 2)
		assert.are.equal(rep.PARENT.pid, rep.CHILD.pid)
		assert.are.same({ code = 7 }, rep.PARENT.wait)
	end)

	it("spawns and reaps processes (kx.spawn, kx.exec, through SIGCHLD)", function()
		local st, rep, _, err = run [[
			local pid = T.fork()
			if pid == 0 then
				local code, out = kx.exec{ "sh", "-c", "echo hi; exit 3" }
				local procs, pids = {}, {}
				for i = 1, 5 do
					procs[i] = kx.spawn{ "sh", "-c", "sleep 0.0" .. i .. "; exit " .. i }
					pids[i] = procs[i].pid
				end
				local codes = {}
				for i = 1, 5 do codes[i] = procs[i]:wait(10).code end
				local zombies = 0
				for i = 1, 5 do
					if io.open("/proc/" .. pids[i] .. "/stat") then zombies = zombies + 1 end
				end
				report("CHILD", { code = code, out = out, codes = codes, zombies = zombies })
				os.exit(0)
			end
			report("PARENT", T.wait(pid))
		]]
		expect_exit(st, 0, err)
		assert.is_table(rep.CHILD, err)
		assert.are.equal(3, rep.CHILD.code)
		assert.are.equal("hi\n", rep.CHILD.out)
		assert.are.same({ 1, 2, 3, 4, 5 }, rep.CHILD.codes)
		assert.are.equal(0, rep.CHILD.zombies)
		assert.are.same({ code = 0 }, rep.PARENT)
	end)

	it("cancels the tasks that waited on the parent's handles, and every other task", function()
		local st, rep, _, err = run [[
			local p = kx.spawn{ "sleep", "30", stdout = "pipe" }
			local reader = kx.go(function() return p.stdout:read("a") end)
			local waiter = kx.go(function() return p:wait() end)
			local sleeper = kx.go(function() kx.sleep(30) end)
			local ev = kx.event()
			local evwaiter = kx.go(function() return ev:wait() end)
			local ready = kx.go(function() return "never ran" end)
			local ticks = 0
			local tm = kx.every(0.01, function() ticks = ticks + 1 end)
			kx.sleep(0.05)
			local pid = T.fork()
			if pid == 0 then
				local before = ticks
				local r = {
					reader = reader:status(), waiter = waiter:status(),
					sleeper = sleeper:status(), evwaiter = evwaiter:status(),
					reader_wait = select(2, reader:wait()),
				}
				r.wait = select(2, p:wait())
				r.read = select(2, p.stdout:read("a"))
				r.kill = select(2, p:kill())
				kx.sleep(0.1)
				r.parent_timer_ticks = ticks - before
				tm:stop()
				p.stdout:close()
				r.ready = ready:status()
				report("CHILD", r)
				os.exit(0)
			end
			local w = T.wait(pid)
			report("PARENT", { wait = w, reader = reader:status() })
			p:kill()
			tm:stop()
			sleeper:cancel()
			evwaiter:cancel()
		]]
		expect_exit(st, 0, err)
		local c = assert(rep.CHILD, err)
		assert.are.equal("cancelled", c.reader)
		assert.are.equal("cancelled", c.waiter)
		assert.are.equal("cancelled", c.sleeper)
		assert.are.equal("cancelled", c.evwaiter)
		assert.is_true(c.ready == "done" or c.ready == "cancelled")
		assert.are.equal("cancelled", c.reader_wait)
		assert.matches("started by the parent", c.wait)
		assert.matches("parent", c.read)
		assert.matches("started by the parent", c.kill)
		assert.are.equal(0, c.parent_timer_ticks)
		assert.are.same({ code = 0 }, rep.PARENT.wait)
		-- the parent's own tasks are untouched
		assert.are.equal("waiting", rep.PARENT.reader)
	end)

	it("runs uv_queue_work on workers of its own (the threadpool path)", function()
		local st, rep, _, err = run [[
			local function probe()
				local ok, wtid, ltid = T.queue_work()
				return { ok = ok, other_thread = wtid ~= ltid }
			end
			local pid = T.fork()
			if pid == 0 then
				local tasks, r = {}, { one = probe(), many = 0 }
				for i = 1, 12 do tasks[i] = kx.go(T.queue_work) end
				for i = 1, 12 do
					local _, ok = tasks[i]:wait(10)
					if ok then r.many = r.many + 1 end
				end
				if package.preload["kx.opendc"] then
					local ok, msg = require("kx.opendc").verify("/nonexistent/x.parquet")
					r.opendc = { ok = ok or false, msg = msg }
				end
				report("CHILD", r)
				os.exit(0)
			end
			report("PARENT", { wait = T.wait(pid), probe = probe() })
		]]
		expect_exit(st, 0, err)
		local c = assert(rep.CHILD, err)
		assert.are.same({ ok = true, other_thread = true }, c.one)
		assert.are.equal(12, c.many)
		if c.opendc then
			assert.is_false(c.opendc.ok)
			assert.is_string(c.opendc.msg)
		end
		assert.are.same({ ok = true, other_thread = true }, rep.PARENT.probe)
	end)

	it("handles signals of its own; the parent's handlers stay behind", function()
		local st, rep, _, err = run [[
			local parent_got = false
			local h = kx.signal("USR1", function() parent_got = true end)
			local pid = T.fork()
			if pid == 0 then
				local got = kx.event()
				local usr2 = false
				kx.signal("USR2", function() usr2 = true; got:notify() end)
				kx.exec{ "kill", "-USR2", tostring(T.getpid()) }
				if not usr2 then got:wait(10) end
				h:stop()
				report("CHILD", { usr2 = usr2, parent_got = parent_got })
				os.exit(0)
			end
			report("PARENT", T.wait(pid))
		]]
		expect_exit(st, 0, err)
		assert.are.same({ usr2 = true, parent_got = false }, rep.CHILD)
		assert.are.same({ code = 0 }, rep.PARENT)
	end)

	for _, sig in ipairs{ { "INT", 130 }, { "TERM", 143 } } do
		it("on SIG" .. sig[1] .. " terminates its own children and exits " .. sig[2], function()
			local st, rep, _, err = run(([[
				local file = os.tmpname()
				local pid = T.fork()
				if pid == 0 then
					local p = kx.spawn{ "sleep", "30" }
					local f = io.open(file .. ".tmp", "w")
					f:write(p.pid) f:close()
					os.rename(file .. ".tmp", file)
					kx.sleep(30)
					os.exit(0)
				end
				local spid
				for _ = 1, 2000 do
					local f = io.open(file)
					spid = f and f:read("n")
					if f then f:close() end
					if spid then break end
					kx.sleep(0.01)
				end
				kx.exec{ "kill", "-%s", tostring(pid) }
				local w = T.wait(pid)
				local alive = true
				for _ = 1, 1000 do
					if kx.exec{ "kill", "-0", tostring(spid) } ~= 0 then alive = false break end
					kx.sleep(0.01)
				end
				os.remove(file)
				report("PARENT", { wait = w, sleep_alive = alive, spid = spid })
			]]):format(sig[1]))
			expect_exit(st, 0, err)
			assert.is_number(rep.PARENT.spid, err)
			assert.are.same({ code = sig[2] }, rep.PARENT.wait)
			assert.is_false(rep.PARENT.sleep_alive)
		end)
	end

	it("becomes the calling task's process: its end is the exit status", function()
		local st, rep, out, err = run [[
			local t = kx.go(function(fail)
				local pid = T.fork()
				if pid == 0 then
					kx.sleep(0.01)
					print("CHILD-RAN " .. tostring(fail))
					if fail then error("child failure") end
					return
				end
				return T.wait(pid)
			end, false)
			local u = kx.go(function()
				local pid = T.fork()
				if pid == 0 then
					kx.sleep(0.01)
					error("child failure")
				end
				return T.wait(pid)
			end)
			local _, a = t:wait()
			local _, b = u:wait()
			report("PARENT", { ok = a, failed = b })
		]]
		expect_exit(st, 0, err)
		assert.matches("CHILD%-RAN false", out)
		assert.are.same({ code = 0 }, rep.PARENT.ok)
		assert.are.same({ code = 1 }, rep.PARENT.failed)
		assert.matches("child failure", err)
	end)

	it("keeps descriptors at the parent's numbers, of the same kinds", function()
		local st, rep, _, err = run [[
			-- each descriptor's kind, and its access mode, O_APPEND,
			-- O_NONBLOCK and close-on-exec (fdinfo's octal flags)
			local function fds()
				local t = T.fds()   -- no process started: its pipes are not listed
				for n, kind in pairs(t) do
					local info = io.open("/proc/self/fdinfo/" .. n)
					local flags = info and info:read("a"):match("flags:%s*(%d+)")
					if info then info:close() end
					flags = tonumber(flags or "0", 8) & (3 | 0x400 | 0x800 | 0x80000)
					t[n] = { kind = kind, flags = flags }
				end
				return t
			end
			local data = os.tmpname()
			local f = io.open(data, "w") f:write(("x"):rep(1000), "TAIL") f:close()
			f = io.open(data)
			f:setvbuf("no")
			f:read(1000)
			local before = fds()
			local pid = T.fork()
			if pid == 0 then
				report("CHILD", { fds = fds(), rest = f:read("a") })
				os.exit(0)
			end
			report("PARENT", { wait = T.wait(pid), fds = before })
			os.remove(data)
		]]
		expect_exit(st, 0, err)
		local c = assert(rep.CHILD, err)
		assert.are.equal("TAIL", c.rest)
		local kinds = 0
		for n, p in pairs(rep.PARENT.fds) do
			local kind = p.kind
			if tonumber(n) > 2 then
				local want = kind
				if kind == "anon_inode:" or kind == "anon_inode:[pidfd]" then want = nil end
				if kind:match("^/dev/pts") then want = "/dev/null" end
				assert.is_not_nil(c.fds[n], "descriptor " .. n .. " missing in the child")
				if want then
					assert.are.equal(want, c.fds[n].kind, "descriptor " .. n)
					if kind:match("^pipe") or kind:match("^anon_inode") then
						assert.are.equal(p.flags, c.fds[n].flags, "flags of descriptor " .. n)
					end
					kinds = kinds + 1
				end
			end
		end
		-- libuv's lock pipe, the loop's epoll, signal pipe and eventfd at least
		assert.is_true(kinds >= 4)
	end)

	it("can be resumed from again (a child of a child)", function()
		local st, rep, _, err = run [[
			local pid = T.fork()
			if pid == 0 then
				local gpid = T.fork()
				if gpid == 0 then
					kx.sleep(0.02)
					local code = kx.exec{ "true" }
					local ok = T.queue_work()
					report("GRANDCHILD", { code = code, work = ok })
					os.exit(5)
				end
				local w = T.wait(gpid)
				report("CHILD", { wait = w, work = T.queue_work() })
				os.exit(6)
			end
			report("PARENT", T.wait(pid))
		]]
		expect_exit(st, 0, err)
		assert.are.same({ code = 0, work = true }, rep.GRANDCHILD)
		assert.are.same({ wait = { code = 5 }, work = true }, rep.CHILD)
		assert.are.same({ code = 6 }, rep.PARENT)
	end)

	it("resumed from a REPL line, runs that line to its end and reads no input", function()
		local st, _, out, err = run([[
T = require "kx._resume_test"
pid = T.fork() if pid == 0 then kx.sleep(0.01) print("CHILD-REPL") os.exit(4) end
print("PARENT-WAIT", T.wait(pid).code)
pid = T.fork() if pid == 0 then kx.sleep(0.01) print("CHILD-LINE-END") end
print("PARENT-WAIT2", T.wait(pid).code)
]], { repl = true })
		expect_exit(st, 0, err)
		assert.matches("CHILD%-REPL", out)
		assert.matches("PARENT%-WAIT\t4", out)
		assert.matches("CHILD%-LINE%-END", out)
		assert.matches("PARENT%-WAIT2\t0", out)
		local _, n = out:gsub("PARENT%-WAIT2", "")
		assert.are.equal(1, n)
	end)
end)
