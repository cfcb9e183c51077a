-- kx.opendc from Lua: export and verify a small CTS trace, results and
-- errors as the README says.
local opendc = require "kx.opendc"

local function write(path, text)
	local f = assert(io.open(path, "w"))
	f:write(text)
	f:close()
end

local function tmpdir() return assert(kx.tmpdir("opendc-spec")) end

describe("kx.opendc", function()
	local dir

	before_each(function()
		dir = tmpdir()
		assert(kx.mkdir(dir .. "/run/CTS"))
		write(dir .. "/run/CTS/nodes.json",
			'{"node_id":"n1","cpu_cores":2,"mem_mb":2048,"cpu_freq_mhz":2500}\n')
		write(dir .. "/run/CTS/invocations.jsonl",
			'{"trace_id":"a","pid":10,"ts_enqueue":50,"ts_start":100,"ts_end":500}\n')
		write(dir .. "/run/CTS/proc_metrics.jsonl",
			'{"ts_ms":300,"pid":10,"dt_ms":200,"cpu_ms":100,"rss_kb":1000}\n' ..
			'{"ts_ms":300,"pid":11,"ppid":10,"dt_ms":200,"cpu_ms":200,"rss_kb":1000}\n')
	end)

	after_each(function()
		os.execute("rm -rf " .. dir)
	end)

	it("exports and verifies", function()
		local s, err = opendc.export(dir .. "/run", dir .. "/out")
		assert.is_nil(err)
		assert.same({ nodes = 1, tasks = 1, fragments = 2, samples = 2,
			samples_used = 2, samples_late = 0 },
			{ nodes = s.nodes, tasks = s.tasks, fragments = s.fragments,
			  samples = s.samples, samples_used = s.samples_used,
			  samples_late = s.samples_late })
		assert.equal(dir .. "/out/tasks.parquet", s.files.tasks)
		assert.truthy(s.input_bytes > 0)
		local v = assert(opendc.verify(dir .. "/out"))
		assert.same({ tasks = 1, fragments = 2 }, v)
	end)

	it("runs beside other tasks", function()
		-- 200k samples: an export of a few hundred ms, on the thread pool
		-- while this task waits; the loop goes on meanwhile (in place, it
		-- would block it and no tick could come during the export)
		local root = os.getenv("ROOT") or "."
		assert(os.execute(("python3 %s/tests/opendc/gen_cts.py %s/big 200000"):format(root, dir)))
		local exporting, during = false, 0
		local t = kx.every(0.001, function() if exporting then during = during + 1 end end)
		exporting = true
		local s = assert(opendc.export(dir .. "/big", dir .. "/out"))
		exporting = false
		t:stop()
		assert.equal(2000, s.tasks)
		assert.is_true(during >= 3, ("the loop ran %d times during the export"):format(during))
	end)

	it("returns nil and FILE:LINE for malformed input", function()
		write(dir .. "/run/CTS/proc_metrics.jsonl", '{"ts_ms":1}\n')
		local s, err = opendc.export(dir .. "/run", dir .. "/out")
		assert.is_nil(s)
		assert.truthy(err:find("proc_metrics.jsonl:1:", 1, true))
		local f = io.open(dir .. "/out/tasks.parquet")
		assert.is_nil(f)
	end)

	it("returns nil and the first problem from verify", function()
		local v, err = opendc.verify(dir .. "/nothing")
		assert.is_nil(v)
		assert.truthy(err:find("tasks.parquet", 1, true))
	end)

	it("checks its arguments", function()
		assert.has_error(function() opendc.export() end)
		assert.has_error(function() opendc.export("x") end)
		assert.has_error(function() opendc.verify({}) end)
	end)
end)
