-- kx.kronos: Kronos's orchestrator API over kx.vtime (SPEC section 3).
--
--   local kronos = require "kx.kronos"
--   kronos.initializeExp(1)
--   kronos.startTracer{ cmd = "./server -p 9000", speed = 1.0, id = 1 }
--   kronos.synchronizeAndFreeze()
--   kronos.progressBy(1000000, 100)     -- 100 rounds of 1 ms virtual
--   print(kronos.getCurrentVirtualTime())
--   kronos.stopExp()
--
-- Kronos's tracers register with the kernel module from their own process;
-- here startTracer (an addition) launches a tracer's command inside the
-- experiment.  The separate `kxrun vtime tracer` process that registers with
-- an orchestrator's experiment is not built yet (see bindings/vtime/README).
local vtime = require "kx.vtime"

local M = {}
local exp, expected, tracers, bypid = nil, 0, {}, {}

function M.initializeExp(n, opts)
	assert(not exp, "initializeExp: an experiment is already running (stopExp first)")
	n = math.tointeger(n)
	assert(n and n >= 0, "initializeExp: expected a number of tracers >= 0")
	opts = opts or {}
	local e, err = vtime.experiment{ step = opts.step or 1000000,
		backend = opts.backend or "auto", slice = opts.slice }
	if not e then return nil, err end
	exp, expected, tracers, bypid = e, n, {}, {}
	return true
end

-- Launches cmd (a string, split on blanks, or an argv table) as tracer id.
function M.startTracer(t)
	assert(exp, "startTracer: call initializeExp first")
	local argv = t.cmd
	if type(argv) == "string" then
		argv = {}
		for w in t.cmd:gmatch("%S+") do argv[#argv + 1] = w end
	end
	local id = t.id or (#tracers + 1)
	local p, err = exp:spawn(argv, { speed = t.speed or 1.0, stdout = t.stdout,
		stderr = t.stderr, env = t.env })
	if not p then return nil, err end
	tracers[id] = p
	bypid[p.pid] = p
	return p
end

function M.synchronizeAndFreeze()
	assert(exp, "synchronizeAndFreeze: call initializeExp first")
	local n = 0
	for _ in pairs(tracers) do n = n + 1 end
	if n < expected then
		return nil, ("synchronizeAndFreeze: %d of %d tracers started"):format(n, expected)
	end
	exp:freeze()
	return true
end

-- Kronos: the first argument is virtual ns per round.  The experiment's step
-- was fixed at initializeExp; a different duration re-steps it by running
-- the equivalent number of rounds of the experiment's own step.
function M.progressBy(duration_ns, rounds)
	assert(exp, "progressBy: call initializeExp first")
	duration_ns = math.tointeger(duration_ns)
	rounds = math.tointeger(rounds or 1)
	assert(duration_ns and duration_ns > 0, "progressBy: duration must be > 0 ns")
	assert(rounds and rounds >= 0, "progressBy: rounds must be >= 0")
	return exp:run_until(exp:now() + duration_ns * rounds)
end

function M.getCurrentVirtualTime()
	return exp and exp:now() or 0
end

function M.getCurrentTimePid(pid)
	local p = bypid[pid]
	return p and p:now() or nil
end

function M.getCurrentTimeTracer(id)
	local p = tracers[id]
	return p and p:now() or nil
end

function M.stopExp()
	if exp then exp:stop() end
	exp, expected, tracers, bypid = nil, 0, {}, {}
	return true
end

return M
