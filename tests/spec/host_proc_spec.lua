-- kx.spawn and kx.exec under what users do: pipes nobody reads, big
-- outputs, cancelled tasks, Ctrl-C on a REPL line, bad options.
local function rss_kb()
	local f = assert(io.open("/proc/self/status"))
	local kb = tonumber(f:read("a"):match("VmRSS:%s*(%d+)"))
	f:close()
	return kb
end

-- (a process reaped between the open and the read reads as nothing: gone)
local function alive(pid)
	local f = io.open("/proc/" .. pid .. "/stat")
	if not f then return false end
	local stat = f:read("a")
	f:close()
	local state = stat and stat:match("^%d+ %b() (%a)")
	return state ~= nil and state ~= "Z" and state ~= "X" and state ~= "x"
end

-- Polls cond every 20 ms up to limit seconds (load-proof: waits for the
-- condition, never for a fixed time).
local function eventually(limit, cond)
	local t0 = kx.now()
	while kx.now() - t0 < limit do
		if cond() then return true end
		kx.sleep(0.02)
	end
	return cond()
end

local function tmpname()
	local p = os.tmpname()
	os.remove(p)
	return p
end

local function read_pid(path)
	local f = io.open(path)
	local pid = f and tonumber(f:read("a"))
	if f then f:close() end
	return pid
end

describe("a pipe nobody reads", function()
	it("stops being read past its bound, so the child blocks and kxrun does not grow", function()
		local before = rss_kb()
		local p = assert(kx.spawn{ "sh", "-c", "head -c 67108864 /dev/zero; echo done >&2",
			stdout = "pipe", stderr = "pipe" })
		local done = kx.go(function() return p.stderr:read("a") end)
		-- 64 MiB through a pipe takes well under the 2 s here; a blocked
		-- writer never gets to "done"
		assert.is_nil((done:wait(2)))
		assert.is_true(rss_kb() - before < 32 * 1024, "kxrun grew by " ..
			(rss_kb() - before) .. " kB with nobody reading")
		-- the script reads: everything comes, in order
		local out = p.stdout:read("a")
		assert.equal(67108864, #out)
		local ok, msg = done:wait()
		assert.is_true(ok)
		assert.equal("done\n", msg)
		assert.same({ code = 0 }, p:wait())
	end)

	it("is read on by a waiting line read, whatever the line's length", function()
		local p = assert(kx.spawn{ "sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo end",
			stdout = "pipe" })
		assert.equal(3000000, #p.stdout:read("l"))
		assert.equal("end", p.stdout:read("l"))
		p:wait()
	end)
end)

describe("kx.exec", function()
	it("collects outputs of 100 MB and more", function()
		local code, out = kx.exec{ "head", "-c", "104857600", "/dev/zero" }
		assert.equal(0, code)
		assert.equal(104857600, #out)
	end)

	it("reads stdout and stderr at once and writes the input meanwhile", function()
		local code, out, err = kx.exec{ "sh", "-c",
			"head -c 5000000 /dev/zero >&2; head -c 5000000 /dev/zero" }
		assert.equal(0, code)
		assert.equal(5000000, #out)
		assert.equal(5000000, #err)
		local input = ("0123456789"):rep(1000000)
		code, out = kx.exec{ "cat", input = input }
		assert.equal(0, code)
		assert.equal(input, out)
	end)
end)

describe("cancelling a task", function()
	it("terminates the process group of what it spawned and waits on", function()
		local pid
		local t = kx.go(function()
			local p = assert(kx.spawn{ "sh", "-c", "sleep 556 & wait" })
			pid = p.pid
			p:wait()
		end)
		assert.is_true(eventually(5, function() return pid ~= nil end))
		t:cancel()
		assert.is_true(eventually(5, function() return not alive(pid) end),
			"the child outlived its task")
	end)

	it("terminates kx.exec's child", function()
		local f = tmpname()
		local t = kx.go(function() kx.exec{ "sh", "-c", "echo $$ > " .. f .. "; exec sleep 556" } end)
		assert.is_true(eventually(5, function() return read_pid(f) ~= nil end))
		local pid = read_pid(f)
		os.remove(f)
		assert.is_true(alive(pid))
		t:cancel()
		assert.is_true(eventually(5, function() return not alive(pid) end))
	end)

	it("kills one that ignores SIGTERM after the grace", function()
		local f = tmpname()
		local t = kx.go(function()
			kx.exec{ "sh", "-c", "trap '' TERM; echo $$ > " .. f .. "; while :; do sleep 0.05; done" }
		end)
		assert.is_true(eventually(5, function() return read_pid(f) ~= nil end))
		local pid = read_pid(f)
		os.remove(f)
		t:cancel()
		kx.sleep(0.3)
		assert.is_true(alive(pid), "gone before the grace")
		assert.is_true(eventually(10, function() return not alive(pid) end))
	end)

	it("leaves a detached child, and one whose wait only timed out", function()
		local pid, q
		local t = kx.go(function()
			local p = assert(kx.spawn{ "sleep", "556", detach = true })
			pid = p.pid
			q = assert(kx.spawn{ "sleep", "556" })
			assert.same({ nil, "timeout" }, { q:wait(0.05) })
			p:wait()
		end)
		assert.is_true(eventually(5, function() return q ~= nil and pid ~= nil end))
		kx.sleep(0.1)
		assert.is_true(alive(q.pid), "a timed-out wait killed the child")
		t:cancel()
		kx.sleep(0.3)
		assert.is_true(alive(pid))
		os.execute("kill " .. pid)
		assert.is_true(eventually(5, function() return not alive(pid) end))
		-- q was spawned by t as well: it went with t
		assert.is_true(eventually(5, function() return not alive(q.pid) end))
	end)

	it("does not touch what a finished task spawned", function()
		local p
		kx.go(function() p = assert(kx.spawn{ "sleep", "556" }) end):wait()
		kx.sleep(0.1)
		assert.is_true(alive(p.pid))
		p:kill()
		assert.same({ signal = 15 }, p:wait())
	end)
end)

describe("Ctrl-C on a REPL line", function()
	it("cancels the line and terminates what it was running", function()
		local f = tmpname()
		local r = assert(kx.spawn{ kx.exe, "-i", stdin = "pipe", stdout = "pipe", stderr = "pipe" })
		r.stdin:write('kx.exec{"sh", "-c", "echo $$ > ' .. f .. '; exec sleep 556"}\n')
		assert.is_true(eventually(10, function() return read_pid(f) ~= nil end))
		local pid = read_pid(f)
		os.remove(f)
		r:kill("INT")
		assert.is_true(eventually(5, function() return not alive(pid) end),
			"the line's child outlived Ctrl-C")
		r.stdin:write('print("still " .. "here")\n')
		r.stdin:close()
		assert.same({ code = 0 }, r:wait(10))
		assert.matches("still here", r.stdout:read("a"))
	end)

	it("also when the line is busy in Lua", function()
		local f = tmpname()
		local r = assert(kx.spawn{ kx.exe, "-i", stdin = "pipe", stdout = "pipe", stderr = "pipe" })
		r.stdin:write('kx.spawn{"sh", "-c", "echo $$ > ' .. f .. '; exec sleep 556"} '
			.. 'while true do end\n')
		assert.is_true(eventually(10, function() return read_pid(f) ~= nil end))
		local pid = read_pid(f)
		os.remove(f)
		r:kill("INT")
		assert.is_true(eventually(5, function() return not alive(pid) end),
			"the busy line's child outlived Ctrl-C")
		r.stdin:close()
		assert.same({ code = 0 }, r:wait(10))
		assert.matches("interrupted", r.stderr:read("a"))
	end)
end)

describe("a stream the script closed", function()
	it("raises when used again, as a closed file does", function()
		local p = assert(kx.spawn{ "cat", stdin = "pipe", stdout = "pipe" })
		p.stdin:close()
		assert.has_error(function() p.stdin:write("x") end, "attempt to use a closed stream")
		assert.equal("", p.stdout:read("a"))
		p.stdout:close()
		assert.has_error(function() p.stdout:read("a") end, "attempt to use a closed stream")
		assert.has_error(function() p.stdout:lines() end, "attempt to use a closed stream")
		p.stdout:close()   -- twice is harmless
		assert.same({ code = 0 }, p:wait())
	end)
end)

describe("kx.spawn errors", function()
	it("name the directory of a bad cwd and the program that cannot run", function()
		local p, err = kx.spawn{ "true", cwd = "/nonexistent" }
		assert.is_nil(p)
		assert.matches("cwd '/nonexistent': no such file or directory", err, 1, true)
		p, err = kx.spawn{ "no-such-program-kx" }
		assert.is_nil(p)
		assert.equal("cannot run 'no-such-program-kx': no such file or directory", err)
		p, err = kx.spawn{ "true", stdout = "/nonexistent/out" }
		assert.is_nil(p)
		assert.matches("stdout '/nonexistent/out'", err, 1, true)
	end)

	it("name the method and the user's argument, and the bad option field", function()
		local p = assert(kx.spawn{ "sleep", "5", stdout = "pipe" })
		local function err_of(f)
			local ok, e = pcall(f)
			assert.is_false(ok)
			return e
		end
		assert.matches("bad argument #1 to 'kill' %(no signal named 'x'%)",
			err_of(function() p:kill("x") end))
		assert.matches("bad argument #1 to 'wait' %(number expected, got string%)",
			err_of(function() p:wait("x") end))
		assert.matches("bad argument #1 to 'read' %(invalid format%)",
			err_of(function() p.stdout:read("x") end))
		assert.matches("bad argument #1 to '[%w.]*spawn' %(field 'cwd': string expected, got table%)",
			err_of(function() kx.spawn{ "true", cwd = {} } end))
		assert.matches("bad argument #1 to '[%w.]*spawn' %(field 'env': value of 'A' must be a string or false%)",
			err_of(function() kx.spawn{ "true", env = { A = {} } } end))
		p:kill()
		p:wait()
	end)
end)
