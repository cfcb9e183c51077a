-- The core module `kx`, run by busted with kxrun as the interpreter.
describe("kx tasks", function()
	it("run concurrently and return their results through wait", function()
		local log = {}
		local a = kx.go(function(x)
			log[#log + 1] = "a in"; kx.sleep(0.05); log[#log + 1] = "a out"
			return x, x * 2
		end, 21)
		local b = kx.go(function()
			log[#log + 1] = "b in"; kx.sleep(0.05); log[#log + 1] = "b out"
			return "b"
		end)
		local ok, x, y = a:wait()
		assert.is_true(ok)
		assert.are.equal(21, x)
		assert.are.equal(42, y)
		assert.are.same({ true, "b" }, { b:wait() })
		assert.are.same({ "a in", "b in", "a out", "b out" }, log)
	end)

	it("report a failure to the task waiting on it", function()
		local t = kx.go(function() error("boom") end)
		local ok, err, tb = t:wait()
		assert.is_nil(ok)
		assert.matches("boom$", err)   -- as raised: no traceback appended
		assert.matches("^stack traceback:\n", tb)
		assert.matches("host_spec.lua", tb)
		assert.are.equal("failed", t:status())
		assert.are.same({ nil, err, tb }, { t:wait() })   -- and once more, after the end
	end)

	it("hand a table error value over as raised", function()
		local e = { code = 7 }
		local t = kx.go(function() error(e) end)
		local ok, err, tb = t:wait()
		assert.is_nil(ok)
		assert.are.equal(e, err)
		assert.matches("stack traceback", tb)
		assert.are.equal(e, select(2, t:wait()))
	end)

	it("sleep until cancelled when the duration is math.huge or 1e300", function()
		local a = kx.go(function() kx.sleep(math.huge) end)
		local b = kx.go(function() kx.sleep(1e300) end)
		kx.sleep(0.1)
		assert.are.equal("waiting", a:status())
		assert.are.equal("waiting", b:status())
		a:cancel(); b:cancel()
		assert.are.same({ nil, "cancelled" }, { a:wait() })
		local c <close> = kx.go(function() kx.sleep(math.huge) end)
		assert.are.same({ nil, "timeout" }, { c:wait(0.01) })
		local ok, err = pcall(function() kx.sleep(0 / 0) end)
		assert.is_false(ok)
		assert.matches("bad argument #1 to 'sleep' %(duration is not a number%)", err)
	end)

	it("report an error raised in a <close> handler of a cancelled task", function()
		local code, out, err = kx.exec{ kx.exe, "-e", [[
			local t = kx.go(function()
				local guard <close> = setmetatable({}, { __close = function() error("close failed") end })
				kx.sleep(10)
			end)
			kx.sleep(0.01)
			t:cancel()
			print(t:status())
		]] }
		assert.are.equal(0, code)
		assert.are.equal("cancelled\n", out)
		assert.matches("error in a <close> handler while cancelling a task: %(command line%):2: close failed", err)
	end)

	it("time out a wait, and can be cancelled", function()
		local t = kx.go(function() kx.sleep(10) end)
		local ok, err = t:wait(0.05)
		assert.is_nil(ok)
		assert.are.equal("timeout", err)
		t:cancel()
		assert.are.equal("cancelled", t:status())
		assert.are.same({ nil, "cancelled" }, { t:wait() })
	end)

	it("run <close> handlers of a cancelled task", function()
		local closed = false
		local t = kx.go(function()
			local guard <close> = setmetatable({}, { __close = function() closed = true end })
			kx.sleep(10)
		end)
		kx.sleep(0.01)
		t:cancel()
		assert.is_true(closed)
	end)

	it("can block inside a nested coroutine", function()
		local gen = coroutine.wrap(function()
			for i = 1, 3 do kx.sleep(0.001) coroutine.yield(i) end
		end)
		assert.are.same({ 1, 2, 3 }, { gen(), gen(), gen() })
	end)

	it("refuse to block where no task can be suspended", function()
		local ok, err = pcall(function()
			table.sort({ 3, 2, 1 }, function(a, b) kx.sleep(0) return a < b end)
		end)
		assert.is_false(ok)
		assert.matches("'sleep' blocks and cannot be called here", err)
	end)

	it("name the function and the argument in argument errors", function()
		local ok, err = pcall(function() kx.sleep("x") end)
		assert.is_false(ok)
		assert.matches("bad argument #1 to 'sleep' %(number expected, got string%)", err)
		ok, err = pcall(function() kx.spawn(nil) end)
		assert.is_false(ok)
		assert.matches("bad argument #1 to 'spawn' %(table expected, got nil%)", err)
		ok, err = pcall(function() kx.go(5) end)
		assert.matches("bad argument #1 to 'go'", err)
	end)
end)

describe("kx processes", function()
	it("spawn, wait and report exit codes and signals", function()
		local p = assert(kx.spawn{ "sh", "-c", "exit 7" })
		assert.is_true(p.pid > 0)
		assert.are.same({ code = 7 }, p:wait())
		local q = assert(kx.spawn{ "sleep", "10" })
		assert.are.same({ nil, "timeout" }, { q:wait(0.05) })
		q:kill("KILL")
		assert.are.same({ signal = 9 }, q:wait())
	end)

	it("return nil and a message for a missing program", function()
		local p, err = kx.spawn{ "/nonexistent/program" }
		assert.is_nil(p)
		assert.matches("no such file", err)
		local code, e2 = kx.exec{ "no-such-program-kx" }
		assert.is_nil(code)
		assert.matches("no%-such%-program%-kx", e2)
	end)

	it("capture output with exec, feed input, read lines from pipes", function()
		local code, out, err = kx.exec{ "sh", "-c", "echo out; echo err >&2; exit 3" }
		assert.are.equal(3, code)
		assert.are.equal("out\n", out)
		assert.are.equal("err\n", err)
		assert.are.same({ 0, "abc", "" }, { kx.exec{ "cat", input = "abc" } })
		local p = kx.spawn{ "printf", "a\\nb\\nc", stdout = "pipe" }
		local lines = {}
		for l in p.stdout:lines() do lines[#lines + 1] = l end
		assert.are.same({ "a", "b", "c" }, lines)
	end)

	it("apply env, cwd and file redirections", function()
		local dir = assert(kx.tmpdir("spec"))
		local p = kx.spawn{ "sh", "-c", "echo $KX_TEST_VAR; pwd", env = { KX_TEST_VAR = "v1" },
			cwd = dir, stdout = dir .. "/out.txt" }
		assert.are.same({ code = 0 }, p:wait())
		local f = assert(io.open(dir .. "/out.txt"))
		assert.are.equal("v1\n" .. dir .. "\n", f:read("a"))
		f:close()
		os.execute("rm -rf " .. dir)
	end)

	it("reap two hundred children without leaving zombies", function()
		local ps = {}
		for i = 1, 200 do ps[i] = assert(kx.spawn{ "true" }) end
		for i = 1, 200 do assert.are.same({ code = 0 }, ps[i]:wait()) end
		local me = io.open("/proc/self/stat"):read("a"):match("^(%d+)")
		local _, out = kx.exec{ "ps", "-o", "stat=", "--ppid", me }
		assert.is_nil(out:find("Z"), "zombies: " .. out)
	end)
end)

describe("kx timers and signals", function()
	it("fire every period until stopped", function()
		local n = 0
		local timer = kx.every(0.01, function() n = n + 1 end)
		kx.sleep(0.2)
		timer:stop()
		local seen = n
		kx.sleep(0.05)
		assert.is_true(seen >= 2, "ticks: " .. seen)
		assert.is_true(n <= seen + 1, "a tick already started may finish, no more")
	end)

	it("run a handler as a task on a signal", function()
		local got
		local h = kx.signal("USR1", function(name) got = name end)
		kx.exec{ "kill", "-USR1", io.open("/proc/self/stat"):read("a"):match("^(%d+)") }
		for _ = 1, 100 do
			if got then break end
			kx.sleep(0.01)
		end
		h:stop()
		assert.are.equal("USR1", got)
	end)
end)

describe("kx.event", function()
	it("wakes every waiting task on notify, and times out", function()
		local ev = kx.event()
		local got = {}
		local a = kx.go(function() local r = ev:wait(); got[#got + 1] = r end)
		local b = kx.go(function() local r = ev:wait(); got[#got + 1] = r end)
		kx.sleep(0.01)
		assert.are.equal(2, ev:notify())
		a:wait(); b:wait()
		assert.are.same({ true, true }, got)
		assert.are.same({ nil, "timeout" }, { ev:wait(0.01) })
		assert.are.equal(0, ev:notify())
	end)
end)

describe("kx.json", function()
	it("keeps integers exact and round-trips values", function()
		local v = { a = 1700000000123456, b = 0.1, c = { 1, 2, 3 }, d = "x\"y", e = true }
		local back = kx.json.decode(kx.json.encode(v))
		assert.are.same(v, back)
		assert.are.equal("integer", math.type(back.a))
		assert.are.equal('{"a":1,"b":[1,2]}', kx.json.encode({ b = { 1, 2 }, a = 1 }))
	end)

	it("knows null, empty arrays and reports malformed input", function()
		local v = kx.json.decode('{"x": null, "y": []}')
		assert.are.equal(kx.json.null, v.x)
		assert.are.equal('{"x":null,"y":[]}', kx.json.encode(v))
		local bad, err = kx.json.decode("{oops")
		assert.is_nil(bad)
		assert.matches("line 1 column", err)
		assert.has_error(function() kx.json.encode({ f = print }) end)
	end)

	local function nest(n, make)
		local t = {}
		for _ = 2, n do t = make(t) end
		return t
	end

	it("reports a cycle with its path instead of crashing", function()
		local t = {}
		t.t = t
		local ok, err = pcall(kx.json.encode, t)
		assert.is_false(ok)
		assert.matches("json.encode: cycle at key t ", err)
		local u = { a = { b = { 1, 2, {} } } }
		u.a.b[3].back = u.a
		ok, err = pcall(kx.json.encode, u)
		assert.matches("json.encode: cycle at key a.b%[3%].back ", err)
		-- a table met twice but not inside itself is no cycle
		local shared = { 1 }
		assert.are.equal('{"x":[1],"y":[1]}', kx.json.encode({ x = shared, y = shared }))
	end)

	it("encodes deep values up to a documented limit, and names it beyond", function()
		assert.are.equal(2000, kx.json.max_depth)
		local deep60 = nest(60, function(t) return { a = t } end)
		assert.are.equal(59 * #'{"a":}' + #"{}", #kx.json.encode(deep60))
		assert.are.same(deep60, kx.json.decode(kx.json.encode(deep60)))
		assert.are.equal(150 * 2, #kx.json.encode(nest(150, function(t) return { t } end)))
		assert.are.equal(2000, #kx.json.encode(nest(1000, function(t) return { t } end)))
		assert.are.equal(4000, #kx.json.encode(nest(2000, function(t) return { t } end)))
		for _, n in ipairs{ 2001, 5000 } do
			local ok, err = pcall(kx.json.encode, nest(n, function(t) return { t } end))
			assert.is_false(ok)
			assert.matches("nested deeper than 2000 levels", err)
		end
	end)

	it("decodes deep input up to the same limit", function()
		local function arrays(n) return ("["):rep(n) .. ("]"):rep(n) end
		local v = assert(kx.json.decode(arrays(1000)))
		for _ = 1, 999 do v = v[1] end
		assert.are.same({}, v)
		assert.truthy(kx.json.decode(arrays(2000)))
		for _, n in ipairs{ 2001, 2048, 2049, 5000, 100000 } do
			local r, err = kx.json.decode(arrays(n))
			assert.is_nil(r)
			assert.matches("nested deeper than 2000 levels", err)
		end
		local objs = ('{"a":'):rep(3000) .. "1" .. ("}"):rep(3000)
		assert.matches("nested deeper than 2000 levels", select(2, kx.json.decode(objs)))
	end)

	it("keeps NUL bytes in keys and strings", function()
		local s = kx.json.encode({ ["a\0b"] = 1, x = "p\0q" })
		assert.are.equal('{"a\\u0000b":1,"x":"p\\u0000q"}', s)
		assert.are.same({ ["a\0b"] = 1, x = "p\0q" }, kx.json.decode(s))
		-- the stand-in used to decode such keys may be in the input itself
		local tricky = '{"k\\u0000":"\\uf8ff\\uF8FE\u{F8FD}","\u{F8FF}":2}'
		assert.are.same({ ["k\0"] = "\u{F8FF}\u{F8FE}\u{F8FD}", ["\u{F8FF}"] = 2 },
			kx.json.decode(tricky))
		local ok, err = pcall(kx.json.encode, { ["\xff"] = 1 })
		assert.is_false(ok)
		assert.matches("object key is not valid UTF%-8", err)
	end)
end)

describe("error values", function()
	local bad = 'setmetatable({}, {__tostring = function() error("x") end})'

	it("whose __tostring fails end a script with status 1 and a message", function()
		local code, out, err = kx.exec{ kx.exe, "-e", "error(" .. bad .. ")" }
		assert.are.equal(1, code)
		assert.are.equal("", out)
		assert.matches("^kxrun: %(error object is a table value whose __tostring failed: " ..
			"%(command line%):1: x%)\nstack traceback:", err)
		code, out, err = kx.exec{ kx.exe, "-e", "error({})" }
		assert.are.equal(1, code)
		assert.matches("^kxrun: %(error object is a table value%)\n", err)
	end)

	it("whose __tostring fails are reported by the REPL, which goes on", function()
		local code, out, err = kx.exec{ kx.exe, "-i", input = table.concat({
			"bad = " .. bad, "error(bad)", "print(bad)", "bad", "print('alive')", "",
		}, "\n") }
		assert.are.equal(0, code)
		assert.matches("__tostring failed: stdin:1: x", err)
		assert.matches("%(a table value whose __tostring failed: stdin:1: x%)\nalive\n$", out)
	end)
end)

describe("the REPL without a terminal", function()
	it("reports a statement cut by the end of its input, as lua does", function()
		local code, out, err = kx.exec{ kx.exe, "-i", input = "print(1)\nfor i = 1, 2 do\nprint(i)\n" }
		assert.are.equal(0, code)
		assert.are.equal("1\n", out)
		assert.matches("^stdin:2: 'end' expected %(to close 'for' at line 1%) near <eof>\n$", err)
	end)

	it("cancels a line that waits for what can no longer happen", function()
		local code, out, err = kx.exec{ kx.exe, "-i", input = "kx.event():wait()\nprint('next')\n" }
		assert.are.equal(0, code)
		assert.are.equal("next\n", out)
		assert.matches("can no longer happen", err)
	end)
end)

describe("the REPL's helpers", function()
	it("complete globals, fields and methods", function()
		local complete = require("kx._repl").complete
		assert.are.same({ "kx.spawn" }, complete("kx.sp"))
		assert.are.same({ "kx.spawn" }, complete("kx.spa"))
		assert.are.same({ "kx.sleep" }, complete("kx.sle"))
		local kxs = complete("kx.s")
		table.sort(kxs)
		assert.is_true(#kxs >= 3, "kx.s completes to " .. table.concat(kxs, " "))
		for _, v in ipairs(kxs) do assert.matches("^kx%.s", v) end
		assert.are.same({ "print" }, complete("prin"))
		assert.are.same({}, complete("no_such_global_anywhere"))
		local t = kx.go(function() end)
		_G.__kx_task = t
		assert.are.same({ "__kx_task:wait" }, complete("__kx_task:wa"))
		_G.__kx_task = nil
	end)
end)
