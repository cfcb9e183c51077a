-- kx.vtime: dilated processes see the experiment's virtual clock.
local vtime = require "kx.vtime"

local ROOT = os.getenv("ROOT") or "."
local BUILD = os.getenv("BUILD") or "build"
local CLOCK = ROOT .. "/" .. BUILD .. "/tests/vtime_clock"
local STATIC = ROOT .. "/" .. BUILD .. "/tests/vtime_static"
local MS = 1000000

local function tmpfile()
	local _, out = kx.exec{ "mktemp", "/tmp/kxrun-vtime-spec.XXXXXX" }
	return (out:gsub("%s+$", ""))
end

local function lines(path)
	local t = {}
	for l in io.lines(path) do
		local k, v = l:match("^(%S+) (%-?%d+)$")
		t[#t + 1] = { k, math.tointeger(tonumber(v)) }
	end
	return t
end

local function freezer_ok()
	local f = io.open("/sys/fs/cgroup/freezer/cgroup.procs", "a")
	if f then f:close() return true end
	return false
end

describe("kx.vtime", function()
	local exp, out
	before_each(function() out = tmpfile() end)
	after_each(function()
		if exp then exp:stop() end
		exp = nil
		os.remove(out)
	end)

	for _, backend in ipairs{ "signal", "freezer" } do
		it("gives a usleep loop whole steps of virtual time (" .. backend .. ")", function()
			if backend == "freezer" and not freezer_ok() then
				pending("no writable cgroup v1 freezer")
				return
			end
			exp = assert(vtime.experiment{ step = MS, backend = backend, slice = 0.005 })
			assert.equal(backend, exp.backend)
			-- others in the experiment too (a third joins an already frozen set)
			assert(exp:spawn({ "sleep", "100" }))
			assert(exp:spawn({ "sleep", "100" }))
			local p = assert(exp:spawn({ CLOCK }, { stdout = out }))
			assert.is_true(p.pid > 0)
			exp:freeze()
			assert.equal(0, exp:now())
			assert.equal(100 * MS, exp:advance(100))
			assert.equal(100 * MS, exp:now())
			assert.equal(100, exp.rounds)
			assert.is_true(p:alive())
			assert.is_nil(p:status())
			local t = lines(out)
			assert.is_true(#t >= 50, "only " .. #t .. " lines")
			assert.equal("start", t[1][1])
			local last = t[#t][2]
			assert.is_true(last > 0 and last <= exp:now())
			for i = 1, #t do
				-- every read happens inside a round: a round boundary value
				assert.equal(0, t[i][2] % MS)
				-- each usleep(1000) ends one virtual ms later, or a whole
				-- round later when a loaded machine kept it from running
				if i > 1 then
					local d = t[i][2] - t[i - 1][2]
					assert.is_true(d >= MS and d % MS == 0, "usleep took " .. d)
				end
			end
		end)
	end

	for _, how in ipairs{ "nanosleep", "poll", "select", "epoll", "ppoll", "pselect", "epoll_pwait", "thread" } do
		it("lets " .. how .. " time out in virtual time (thread: usleep in a thread)", function()
			-- 5 ms real per round: on a loaded machine a 1 ms slice may pass
			-- without the process being scheduled (see README)
			exp = assert(vtime.experiment{ step = MS, backend = "signal", slice = 0.005 })
			assert(exp:spawn({ CLOCK, "-1", how }, { stdout = out }))
			exp:freeze()
			exp:advance(60)
			local t = lines(out)
			assert.is_true(#t >= 20, "only " .. #t .. " lines")
			for i = 2, #t do
				-- never early; a timeout polled in 1 ms real slices may end a
				-- few rounds late on a loaded machine (README)
				local d = t[i][2] - t[i - 1][2]
				assert.is_true(d >= MS and d <= 4 * MS, how .. " waited " .. d)
				assert.equal(0, t[i][2] % MS)
			end
			assert.is_true(t[#t][2] <= exp:now())
		end)
	end

	it("reads exp:now() at a round boundary", function()
		exp = assert(vtime.experiment{ step = MS, backend = "signal" })
		local p = assert(exp:spawn({ CLOCK }, { stdout = out }))
		exp:freeze()
		exp:advance(20)
		local now = exp:now()
		-- delivered while frozen: the handler runs in the next round, before
		-- the clock moves again, so it sees the boundary value
		kx.exec{ "kill", "-USR1", tostring(p.pid) }
		exp:advance(3)
		local seen
		for _, l in ipairs(lines(out)) do
			if l[1] == "usr1" then seen = l[2] end
		end
		-- a round boundary value, never one from inside a round; on a
		-- loaded machine the handler may run a round later than the first
		assert.is_not_nil(seen)
		assert.equal(0, seen % MS)
		assert.is_true(seen >= now and seen <= exp:now())
	end)

	it("finishes sleep 0.5 at step 10 ms after ~50 rounds, not before", function()
		-- a 20 ms real slice so that the program's start-up fits in round 1
		exp = assert(vtime.experiment{ step = 10 * MS, backend = "signal", slice = 0.02 })
		local p = assert(exp:spawn({ "sleep", "0.5" }))
		exp:freeze()
		local rounds = 0
		while p:alive() and rounds < 80 do
			exp:advance(1)
			rounds = rounds + 1
			if rounds < 49 then assert.is_true(p:alive(), "ended after " .. rounds) end
		end
		-- the child watch reports the exit from the loop: give it a moment
		for _ = 1, 50 do if not p:alive() then break end kx.sleep(0.01) end
		assert.is_false(p:alive())
		assert.is_true(rounds >= 49 and rounds <= 52, rounds .. " rounds")
		assert.same({ code = 0 }, p:status())
		-- its exit was seen in a round whose clock read >= 500 ms
		assert.is_true(p:now() >= 500 * MS and p:now() <= rounds * 10 * MS, p:now())
	end)

	it("dilates the children of a dilated process", function()
		exp = assert(vtime.experiment{ step = 10 * MS, backend = "signal", slice = 0.02 })
		-- sh forks sleep: the child inherits LD_PRELOAD and the process group
		local p = assert(exp:spawn({ "sh", "-c", "sleep 0.2; exit 4" }))
		exp:freeze()
		local rounds = 0
		while p:alive() and rounds < 60 do
			exp:advance(1)
			rounds = rounds + 1
			if rounds < 20 then assert.is_true(p:alive(), "ended after " .. rounds) end
		end
		for _ = 1, 50 do if not p:alive() then break end kx.sleep(0.01) end
		assert.same({ code = 4 }, p:status())
		assert.is_true(rounds >= 20 and rounds <= 26, rounds .. " rounds")
	end)

	it("records an exit mid-run while the others go on", function()
		exp = assert(vtime.experiment{ step = MS, backend = "signal" })
		local a = assert(exp:spawn({ "sh", "-c", "exit 3" }))
		local b = assert(exp:spawn({ CLOCK }, { stdout = out }))
		exp:freeze()
		exp:advance(30)
		for _ = 1, 50 do if not a:alive() then break end kx.sleep(0.01) end
		assert.same({ code = 3 }, a:status())
		assert.is_true(b:alive())
		local n1 = #lines(out)
		exp:advance(20)
		assert.is_true(#lines(out) > n1)
		b = nil
	end)

	it("stop kills every process; twice is harmless", function()
		exp = assert(vtime.experiment{ step = MS, backend = "signal" })
		local p = assert(exp:spawn({ CLOCK }, { stdout = "null" }))
		exp:freeze()
		exp:advance(5)
		exp:stop()
		exp:stop()
		for _ = 1, 100 do if not p:alive() then break end kx.sleep(0.01) end
		assert.same({ signal = 9 }, p:status())
		assert.has_error(function() exp:advance(1) end)
	end)

	it("rejects bad input", function()
		assert.has_error(function() vtime.experiment{ step = 0 } end)
		assert.has_error(function() vtime.experiment{ step = -5 } end)
		local ok, e = pcall(vtime.experiment, { step = 1, backend = "warp" })
		assert.is_false(ok)
		assert.matches("unknown backend 'warp'", e)
		exp = assert(vtime.experiment{ step = MS, backend = "signal" })
		assert.has_error(function() exp:spawn({ "sleep", "1" }, { speed = 0 }) end)
		assert.has_error(function() exp:spawn({ "sleep", "1" }, { speed = -1 }) end)
		local p, err = exp:spawn({ "/nonexistent/prog" })
		assert.is_nil(p)
		assert.matches("No such file", err)
		p, err = exp:spawn({ "no-such-program-kxvt" })
		assert.is_nil(p)
		assert.matches("not found in PATH", err)
		p, err = exp:spawn({ STATIC })
		assert.is_nil(p)
		assert.matches("statically linked", err)
		assert.has_error(function() exp:advance(1) end,
			"advance before freeze: call exp:freeze() first")
	end)
end)
