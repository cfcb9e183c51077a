-- kx.kronos: Kronos's orchestrator names over kx.vtime, and tracers that
-- register from separate `kxrun vtime tracer` processes.
local kronos = require "kx.kronos"

local ROOT = os.getenv("ROOT") or "."
local leftovers = dofile(ROOT .. "/tests/vtime/leftovers.lua")
local BUILD = os.getenv("BUILD") or "build"
local CLOCK = ROOT .. "/" .. BUILD .. "/tests/vtime_clock"
local KXRUN = os.getenv("KXRUN") or kx.exe
-- The VM bed runs this spec again on "kmod" (tests/vm/vtime_spec_kmod.sh);
-- where programs start slowly (its TCG guest), the rounds their start-up
-- may take scale with SLOW (vtime_spec.lua says more).
local BACKEND = os.getenv("KXRUN_SPEC_VTIME_BACKEND") or "signal"
local SLOW = tonumber(os.getenv("KXRUN_SPEC_SLOW")) or 1

-- A socket of this run's own, so that parallel runs never meet.
local function tmpsock()
	local d = os.tmpname()
	os.remove(d)
	assert(os.execute("mkdir -p " .. d))
	return d .. "/vtime.sock", d
end

-- Starts `kxrun vtime tracer ARGS...` with stdout and stderr piped.
local function tracer(sock, ...)
	local argv = { KXRUN, "vtime", "tracer", ... }
	argv.env = { KXRUN_VTIME_SOCK = sock }
	argv.stdout, argv.stderr = "pipe", "pipe"
	return assert(kx.spawn(argv))
end

-- Its status, stdout and stderr once it has ended (within timeout_s).
local function finished(t, timeout_s)
	local st = assert(t:wait(timeout_s or 20), "tracer did not end")
	return st, t.stdout:read("a"), t.stderr:read("a")
end

describe("kx.kronos", function()
	local dir
	after_each(function()
		kronos.stopExp()
		if dir then os.execute("rm -rf " .. dir) dir = nil end
		-- every test leaves nothing: no process, cgroup or clock file
		assert.same({}, leftovers())
	end)

	it("runs the orchestrator flow in-process and reports per tracer and pid", function()
		assert(kronos.initializeExp(2, { backend = BACKEND, listen = false }))
		local a = assert(kronos.startTracer{ cmd = CLOCK, id = 1, stdout = "null" })
		-- not all tracers started yet: the wait times out
		local rc, err = kronos.synchronizeAndFreeze(0.05)
		assert.equal(0, rc)
		assert.matches("1 of 2 tracers", err)
		assert(kronos.startTracer{ cmd = { "sleep", "10" }, id = 2 })
		assert(kronos.synchronizeAndFreeze())
		assert.equal(0, kronos.getCurrentVirtualTime())
		kronos.progressBy(1000000, 25)
		assert.equal(25000000, kronos.getCurrentVirtualTime())
		assert.equal(25000000, kronos.getCurrentTimeTracer(1))
		assert.equal(25000000, kronos.getCurrentTimePid(a.pid))
		assert.is_nil(kronos.getCurrentTimeTracer(7))
		-- a different per-round duration: the same virtual total
		assert.same({ 1, 35000000 }, { kronos.progressBy(5000000, 2) })
		assert.equal(35000000, kronos.getCurrentVirtualTime())
		assert.equal(1, kronos.stopExp())
		assert.equal(1, kronos.stopExp())
		assert.equal(0, kronos.getCurrentVirtualTime())
	end)

	it("refuses bad arguments, naming them", function()
		assert.has_error(function() kronos.progressBy(1000, 1) end)
		assert.has_error(function() kronos.initializeExp(-1) end,
			"bad argument #1 to 'initializeExp' (number of tracers must be an integer >= 0 (got -1))")
		assert.has_error(function() kronos.initializeExp(1.5) end)
		assert.equal(1, kronos.initializeExp(0, { backend = BACKEND, listen = false }))
		assert.has_error(function() kronos.initializeExp(1) end)
		assert.has_error(function() kronos.progressBy(0, 1) end,
			"bad argument #1 to 'progressBy' (duration must be an integer > 0 ns (got 0))")
		assert.has_error(function() kronos.progressBy(1000, -1) end,
			"bad argument #2 to 'progressBy' (rounds must be an integer >= 0 (got -1))")
		assert.has_error(function() kronos.synchronizeAndFreeze(-1) end)
	end)

	-- Kronos's own orchestrator (its documentation's example), unchanged
	-- but for the module's name: numeric tests of every return value.
	it("runs an orchestrator written for Kronos unchanged", function()
		local kf = kronos
		local failed = {}
		if kf.initializeExp(1, { backend = BACKEND, listen = false }) < 0 then
			error("Kronos initialization failed")
		end
		-- the tracer comes 0.1 s later, from another task
		kx.go(function() kx.sleep(0.1) assert(kf.startTracer{ cmd = CLOCK, stdout = "null" }) end)
		local tries = 0
		while kf.synchronizeAndFreeze() <= 0 do
			-- Kronos >> Synchronize and Freeze failed. Retrying in 1 sec
			tries = tries + 1
			assert(tries < 3, "never synchronized")
		end
		local num_finished_rounds, step_size = 0, 10
		while num_finished_rounds < 50 do
			if kf.progressBy(1000000, step_size) < 0 then failed[#failed + 1] = num_finished_rounds end
			num_finished_rounds = num_finished_rounds + step_size
		end
		assert.same({}, failed)
		assert.equal(50000000, kf.getCurrentVirtualTime())
		assert.is_true(kf.stopExp() >= 1)
		-- failures are integers too, the message second
		local sock
		sock, dir = tmpsock()
		assert.equal(1, kf.initializeExp(0, { backend = BACKEND, sock = sock }))
		local code, _, err = kx.exec{ KXRUN, "-e", ([[
			local k = require "kx.kronos"
			local rc, err = k.initializeExp(0, { backend = "signal", sock = %q })
			io.stderr:write(rc, " ", tostring(err)) os.exit(rc < 0 and 3 or 0)]]):format(sock) }
		assert.equal(3, code)
		assert.matches("^%-1 initializeExp: .*another experiment", err)
	end)

	it("splits command lines as a shell would, without expansions", function()
		assert.same({ "a", "b c", "d'e", "", "f\\g" },
			kronos.splitCommand([[a "b c" d\'e '' 'f\g']]))
		assert.same({}, kronos.splitCommand("   "))
		assert.is_nil(kronos.splitCommand("a 'b"))
	end)

	it("registers tracer processes, relays their output and exit statuses", function()
		local sock
		sock, dir = tmpsock()
		assert(kronos.initializeExp(3, { backend = BACKEND, sock = sock, slice = 0.005 }))
		local a = tracer(sock, "-c", "sh -c 'echo out-a; echo err-a >&2; exit 3'", "-r", "1", "-i", "1")
		local b = tracer(sock, "-c", CLOCK .. " 5", "-r", "2.0", "-i", "2", "-t", "1")
		local c = tracer(sock, "-c", "sleep 100", "-r", "1", "-i", "3")
		assert(kronos.synchronizeAndFreeze(20))
		local ids = {}
		for _, t in ipairs(kronos.tracers()) do
			ids[#ids + 1] = t.id
			assert.is_number(t.tracer_pid)
			assert.equal(1, #t.pids)
		end
		assert.same({ 1, 2, 3 }, ids)
		assert.equal(0, kronos.getCurrentVirtualTime())
		local total = 200000000 * SLOW
		kronos.progressBy(1000000, 200 * SLOW)
		assert.equal(total, kronos.getCurrentVirtualTime())
		local st, out, err = finished(a)
		assert.same({ code = 3 }, st)
		assert.equal("out-a\n", out)
		assert.equal("err-a\n", err)
		st, out = finished(b)
		assert.same({ code = 0 }, st)
		assert.matches("%d+", out)
		-- the clock of a tracer whose commands ended: when they ended
		assert.is_true(kronos.getCurrentTimeTracer(2) <= total)
		assert.equal(total, kronos.getCurrentTimeTracer(3))
		assert.equal(total, kronos.getCurrentTimePid(c.pid)) -- a tracer's pid
		-- still running: stopExp kills it, its tracer ends with 128+SIGKILL
		assert.is_nil(c:wait(0.1))
		assert.equal(1, kronos.stopExp())
		st = finished(c)
		assert.same({ code = 137 }, st)
	end)

	it("refuses a duplicate id and a missing program, keeps the others", function()
		local sock
		sock, dir = tmpsock()
		assert(kronos.initializeExp(1, { backend = BACKEND, sock = sock }))
		local a = tracer(sock, "-c", "sleep 100", "-r", "1", "-i", "7")
		assert(kronos.synchronizeAndFreeze(20))
		local dup = tracer(sock, "-c", "true", "-r", "1", "-i", "7")
		local st, _, err = finished(dup)
		assert.same({ code = 1 }, st)
		assert.matches("tracer id 7 is already registered", err)
		local missing = tracer(sock, "-c", "/nonexistent/prog -x", "-r", "1", "-i", "8")
		st, _, err = finished(missing)
		assert.same({ code = 1 }, st)
		assert.matches("/nonexistent/prog", err)
		assert.equal(1, #kronos.tracers())
		kronos.stopExp()
		assert.same({ code = 137 }, (finished(a)))
	end)

	it("kills a tracer's commands when the tracer is terminated", function()
		local sock
		sock, dir = tmpsock()
		assert(kronos.initializeExp(1, { backend = BACKEND, sock = sock }))
		local a = tracer(sock, "-c", "sleep 100", "-r", "1")
		assert(kronos.synchronizeAndFreeze(20))
		local pid = kronos.tracers()[1].pids[1]
		a:kill("TERM")
		assert.same({ code = 143 }, (finished(a)))
		local gone = false
		for _ = 1, 200 do
			kx.sleep(0.02)
			local f = io.open("/proc/" .. pid .. "/stat")
			local state = f and (f:read("a") or ""):match("%) (%a)")   -- nothing: reaped meanwhile
			if f then f:close() end
			if not state or state == "Z" or state == "X" or state == "x" then gone = true break end
		end
		assert.is_true(gone)
	end)

	it("refuses a second experiment on a live socket, replaces a stale one", function()
		local sock
		sock, dir = tmpsock()
		assert(kronos.initializeExp(0, { backend = "signal", sock = sock }))
		-- another kxrun trying the same socket is refused, naming us
		local code, _, err = kx.exec{ KXRUN, "-e", ([[
			local k = require "kx.kronos"
			local rc, err = k.initializeExp(0, { backend = "signal", sock = %q })
			io.stderr:write(tostring(err)) os.exit(rc >= 1 and 0 or 3)]]):format(sock) }
		assert.equal(3, code)
		assert.matches("another experiment %(kxrun pid %d+%)", err)
		kronos.stopExp()
		-- a socket file left by a controller killed with SIGKILL is replaced
		local stale = sock .. ".stale"
		local ctl = assert(kx.spawn{ KXRUN, "-e", ([[
			local r = require "kx.vtime.registry"
			r.listen(%q, function() end)
			kx.sleep(100)]]):format(stale) })
		for _ = 1, 250 do
			if os.execute("test -S " .. stale) then break end
			kx.sleep(0.02)
		end
		ctl:kill("KILL")
		ctl:wait(5)
		assert.truthy(os.execute("test -S " .. stale))
		assert(kronos.initializeExp(0, { backend = "signal", sock = stale }))
	end)
end)
