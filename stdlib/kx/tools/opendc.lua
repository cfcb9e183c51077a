-- kxrun opendc export --input DIR --output OUT
-- kxrun opendc verify --input OUT
-- The OpenDC exporter and verifier of kx.opendc on the command line (the
-- same work as `kxrun trace export|verify`; flags by kx.cli).
local opendc = require "kx.opendc"

return require("kx.cli").tool{
	name = "opendc",
	summary = "OpenDC workload files from CTS traces, and their check (kx.opendc).",
	commands = {
		{
			name = "export",
			flags = {
				{ "input", arg = "DIR", required = true,
				  help = "DIR/CTS/, or DIR/<node>/CTS/ for several nodes" },
				{ "output", arg = "OUT", required = true, help = "where the files go" },
			},
			summary = "write OUT/tasks.parquet, OUT/fragments.parquet, OUT/topology.json and OUT/ids.json (task id -> trace_id), all or nothing",
			run = function(o)
				local s, e = opendc.export(o.input, o.output)
				if not s then return nil, "export: " .. e end
				print(string.format("exported %d tasks, %d fragments from %d nodes " ..
					"(%d samples, %d attributed) to %s",
					s.tasks, s.fragments, s.nodes, s.samples, s.samples_used, o.output))
				return 0
			end,
		},
		{
			name = "verify",
			flags = { { "input", arg = "OUT", required = true, help = "an export's directory" } },
			summary = "read OUT back and check it the way OpenDC loads it; exits 1 naming the first problem",
			run = function(o)
				local v, e = opendc.verify(o.input)
				if not v then return nil, "verify: " .. e end
				print(string.format("ok: %d tasks, %d fragments", v.tasks, v.fragments))
				return 0
			end,
		},
	},
}
