-- kxrun report: one HTML page for a results directory (kx.lab), a kx.trace
-- run, or kx.vtime rounds recorded by kx.lab.
return require("kx.cli").tool{
	name = "report",
	summary = "Write DIR/report.html (or --output FILE): one self-contained page "
		.. "(no external file, script or font), its plots also saved as DIR/plots/*.svg.",
	args = { "DIR" },
	flags = {
		{ "output", "o", arg = "FILE", help = "write the page here instead of DIR/report.html" },
	},
	epilog = [[
It shows whatever DIR holds:
  results.jsonl, env.json   a kx.lab experiment: per metric a table (median,
                            bootstrap 95% CI, mean, stddev, CoV, min, p5,
                            p95, p99, max, ratios between systems), a line or
                            bar chart, the CDF of the runs and their drift
                            over time; the environment and sessions
  vtime.jsonl               kx.vtime rounds recorded by exp:vtime(): virtual
                            against real time, real time per round
  run.json, raw/, CTS/      a kx.trace run: Gantt chart of the invocations per
                            node, CPU and RSS over time per process, the audit
Exit status: 0; 1 when DIR holds none of these or a file cannot be written;
2 on bad usage.]],
	run = function(opts, args)
		local path, err = require("kx.lab").report(args[1], { output = opts.output })
		if not path then return nil, err end
		print(path)
	end,
}
