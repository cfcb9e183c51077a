-- kx.kronos: Kronos's orchestrator names over kx.vtime.
local kronos = require "kx.kronos"

local ROOT = os.getenv("ROOT") or "."
local BUILD = os.getenv("BUILD") or "build"
local CLOCK = ROOT .. "/" .. BUILD .. "/tests/vtime_clock"

describe("kx.kronos", function()
	after_each(function() kronos.stopExp() end)

	it("runs the orchestrator flow and reports per tracer and pid", function()
		assert(kronos.initializeExp(2, { backend = "signal" }))
		local a = assert(kronos.startTracer{ cmd = CLOCK, id = 1, stdout = "null" })
		-- not all tracers started yet
		local ok, err = kronos.synchronizeAndFreeze()
		assert.is_nil(ok)
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
		kronos.progressBy(5000000, 2)
		assert.equal(35000000, kronos.getCurrentVirtualTime())
		assert.is_true(kronos.stopExp())
		assert.is_true(kronos.stopExp())
		assert.equal(0, kronos.getCurrentVirtualTime())
	end)

	it("refuses bad arguments", function()
		assert.has_error(function() kronos.progressBy(1000, 1) end)
		assert.has_error(function() kronos.initializeExp(-1) end)
		assert(kronos.initializeExp(0, { backend = "signal" }))
		assert.has_error(function() kronos.initializeExp(1) end)
		assert.has_error(function() kronos.progressBy(0, 1) end)
	end)
end)
