-- kx.vtime's CPU accounting: a CPU-bound job's virtual duration is what
-- the same job costs run plainly, whatever the step, the host's load and
-- the lockstep (bindings/vtime/README.md, "The controller's own cost").
--
-- The yardstick.  The plain CPU time of a fixed job is not steady on a
-- shared VM (the same loop takes up to twice the CPU time for seconds at a
-- time: the host's other tenants), so bench/vtime_spin also adds up the
-- time it ran its own instructions (run_ticks, read from the CPU's cycle
-- counter, which the clock library does not see).  A run's virtual time
-- over its run_ticks does not depend on how fast the host ran it; divided
-- by the same for plain runs (CPU time over run_ticks) it is 1 when virtual
-- time charges the job what a plain run costs.  Before the controller's
-- costs were taken out it was 1.2-1.5 at step 100 us.
local vtime = require "kx.vtime"

local ROOT = os.getenv("ROOT") or "."
local BUILD = os.getenv("BUILD") or "build"
local SPIN = ROOT .. "/" .. BUILD .. "/bench/vtime_spin"
local ITERATIONS = "100000000"
local US, MS = 1000, 1000000

local need = dofile(ROOT .. "/tests/need.lua")
local leftovers = dofile(ROOT .. "/tests/vtime/leftovers.lua")

local function parse(s)
	local e, c, r = s:match("elapsed_ns (%d+) cpu_ns (%d+) .*run_ticks (%d+)")
	assert(r, "vtime_spin printed: " .. s)
	return tonumber(e), tonumber(c), tonumber(r)
end

local function median(t)
	table.sort(t)
	return t[(#t + 1) // 2]
end

-- CPU ns per run tick of a plain run
local function plain_once()
	local code, out = kx.exec{ SPIN, ITERATIONS }
	assert.equal(0, code)
	local _, c, r = parse(out)
	return c / r
end

-- ... the median of three
local function plain()
	return median{ plain_once(), plain_once(), plain_once() }
end

-- The job dilated once (opts: step, speed, resume_cost, lockstep: a
-- sleeping process beside it, so that its rounds are not batched): virtual
-- ns per run tick, the run's stats and run_ticks.
local function dilated_once(opts)
	local out = os.tmpname()
	local exp = assert(vtime.experiment{ step = opts.step, backend = "signal",
		resume_cost = opts.resume_cost })
	if opts.lockstep then assert(exp:spawn({ "sleep", "1000" })) end
	local p = assert(exp:spawn({ SPIN, ITERATIONS }, { stdout = out, speed = opts.speed }))
	exp:freeze()
	while p:alive() and exp.rounds < 1000000 do exp:advance(opts.chunk or 100) end
	local st = exp:stats()
	exp:stop()
	local f = assert(io.open(out))
	local v, _, r = parse(f:read("a"))
	f:close()
	os.remove(out)
	return v / r, st, r
end

-- The same, the median of three runs (one in ten is off by 5-10 % here:
-- another tenant's burst).
local function dilated(opts)
	local runs = {}
	for i = 1, 3 do runs[i] = { dilated_once(opts) } end
	table.sort(runs, function(a, b) return a[1] < b[1] end)
	return table.unpack(runs[2])
end

-- The median over three pairs of runs, A then B, of B's over A's (pairs:
-- the host's state drifts over seconds).
local function paired(a, b)
	local r = {}
	for i = 1, 3 do
		local x = a()
		r[i] = b() / x
	end
	return median(r)
end

-- The resume cost this machine measured (the first experiment of a boot
-- measures it in the background: wait for it).
local function calibrated()
	for _ = 1, 200 do
		local c = vtime.calibration()
		if c.source ~= "measuring" then return c.resume_cost_ns end
		kx.sleep(0.05)
	end
	error("the resume cost was not measured within 10 s")
end

-- fn() -> ok, what it measured: up to three attempts, the first ok one
-- passes.  Another tenant's burst on this shared machine moves a single
-- measurement by 5-50 % (a 100 us lockstep run came out at 1.56 once); a
-- defect is off in every attempt (before the fixes: 1.26-1.75, each time).
local function settled(fn)
	local seen = {}
	for i = 1, 3 do
		local ok, what = fn()
		if ok then return end
		seen[i] = what
	end
	error("off in three attempts: " .. table.concat(seen, "; "), 2)
end

describe("kx.vtime CPU accounting", function()
	after_each(function() assert.same({}, leftovers()) end)

	it("charges a CPU-bound job what it costs run plainly, at steps from 100 us to 10 ms", function()
		if not need("cycle-counter", "cpu-time") then return end
		calibrated()
		-- in lockstep at 100 us, a stop and a resume every other round (a
		-- counter period is 200 us at least): a resume cost that the load
		-- moves by a few us is a few % (the ASAN controller, beside other
		-- tests: up to 6-8 %); before the stops' paths were taken out, 26 %.
		-- Each dilated run against a plain one just before it: what
		-- interrupts cost a plain run moves too (1-6 %), over seconds.
		for _, case in ipairs{
			{ step = 100 * US, lockstep = true, margin = 0.09 }, { step = 100 * US },
			{ step = MS, lockstep = true }, { step = 10 * MS },
		} do
			settled(function()
				local r = paired(plain_once, function() return (dilated_once(case)) end)
				local what = ("step %d us%s"):format(case.step // US, case.lockstep and ", lockstep" or "")
				return math.abs(r - 1) < (case.margin or 0.05),
					("%s: %.3f of a plain run's CPU"):format(what, r)
			end)
		end
	end)

	it("takes each stop's path and the resume cost out of virtual time", function()
		if not need("cycle-counter", "cpu-time") then return end
		settled(function()
			local base = plain()
			local r0, st0 = dilated{ step = 100 * US, lockstep = true, resume_cost = 0 }
			local cost = 40 * US
			local r1, st1, run1 = dilated{ step = 100 * US, lockstep = true, resume_cost = cost }
			-- the stops' paths (20-80 us each here) were counted and not
			-- charged: with no resume cost taken out either, 1.04-1.10 (1.26
			-- when they were charged)
			if st0.stop_cpu_ns <= st0.budget_stops * 5 * US then
				return false, ("%d ns of stop paths over %d stops"):format(st0.stop_cpu_ns,
					st0.budget_stops)
			end
			if r0 / base >= 1.15 then return false, ("resume_cost = 0: %.3f"):format(r0 / base) end
			-- resume_cost = 40 us: 40 us less charged per share
			local want = st1.shares * cost / run1 / base
			local got = (r0 - r1) / base
			return math.abs(got - want) < 0.05,
				("resume_cost took %.3f of the job out, %d shares x 40 us: %.3f"):format(got,
					st1.shares, want)
		end)
	end)

	it("charges the same loaded by two busy loops as alone", function()
		if not need("cycle-counter", "cpu-time") then return end
		settled(function()
			local r = paired(function() return (dilated_once{ step = MS }) end, function()
				local busy = {}
				for i = 1, 2 do busy[i] = assert(kx.spawn{ "sh", "-c", "while :; do :; done" }) end
				local ok, loaded = pcall(dilated_once, { step = MS })
				for _, b in ipairs(busy) do b:kill("KILL") b:wait(5) end
				assert(ok, loaded)
				return loaded
			end)
			return math.abs(r - 1) < 0.03, ("loaded / alone: %.4f"):format(r)
		end)
	end)

	it("halves a CPU-bound job's virtual duration at speed 2", function()
		if not need("cycle-counter", "cpu-time") then return end
		settled(function()
			local r = paired(function() return (dilated_once{ step = MS }) end,
				function() return (dilated_once{ step = MS, speed = 2 }) end)
			return math.abs(r - 0.5) < 0.02, ("speed 2 / speed 1: %.4f"):format(r)
		end)
	end)

	-- A process alone in its experiment, one task, runs a batch of rounds in
	-- one share (once it has used 20 ms of CPU: programs start their
	-- threads first); the clock still moves by whole rounds, to the
	-- advance's end.
	it("runs a lone process's rounds in one share, and not beside another", function()
		if not need("cycle-counter", "cpu-time") then return end
		for _, lockstep in ipairs{ false, true } do
			local exp = assert(vtime.experiment{ step = 100 * US, backend = "signal" })
			if lockstep then assert(exp:spawn({ "sleep", "1000" })) end
			local p = assert(exp:spawn({ SPIN, "0" }, { stdout = "null" }))
			exp:freeze()
			exp:advance(300)
			local s0 = exp:stats()
			for _, n in ipairs{ 1, 7, 250, 33, 1000 } do
				local before = exp.rounds
				assert.equal((before + n) * 100 * US, exp:advance(n))
				assert.equal(before + n, exp.rounds)
				assert.equal(exp:now(), p:now())
			end
			local st = exp:stats()
			local rounds, batched, shares = st.rounds - s0.rounds, st.batched_rounds - s0.batched_rounds,
				st.shares - s0.shares
			if lockstep then
				assert.equal(0, st.batched_rounds)
			else
				assert.is_true(batched >= rounds - 10 and shares < rounds / 20,
					("%d of %d rounds batched, %d shares"):format(batched, rounds, shares))
			end
			exp:stop()
		end
	end)
end)
