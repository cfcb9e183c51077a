-- kxrun report: one HTML page for a results directory (kx.lab), a kx.trace
-- run, or kx.vtime rounds recorded by kx.lab.
local USAGE = [[
usage: kxrun report [-o FILE] DIR

Writes DIR/report.html (or FILE): one self-contained page (no external
file, script or font) with the plots also saved as DIR/plots/*.svg.  It shows
whatever DIR holds:
  results.jsonl, env.json   a kx.lab experiment: per metric a table (median,
                            bootstrap 95% CI, mean, stddev, CoV, min, p5,
                            p95, p99, max, ratios between systems), a line or
                            bar chart, the CDF of the runs and their drift
                            over time; the environment and sessions
  vtime.jsonl               kx.vtime rounds recorded by exp:vtime(): virtual
                            against real time, real time per round
  run.json, raw/, CTS/      a kx.trace run: Gantt chart of the invocations per
                            node, CPU and RSS over time per process, the audit
Exit status: 0, 1 when DIR holds none of these or a file cannot be written,
2 on bad usage.
]]

return function(argv)
	local dir, out
	local i = 1
	while i <= #argv do
		local a = argv[i]
		if a == "-h" or a == "--help" then io.write(USAGE) return 0
		elseif a == "-o" or a == "--output" then
			out = argv[i + 1]
			if not out then io.stderr:write("kxrun report: ", a, " needs a file name\n") return 2 end
			i = i + 1
		elseif a:match("^%-") then
			io.stderr:write("kxrun report: unknown option '", a, "' (see kxrun report --help)\n")
			return 2
		elseif dir then
			io.stderr:write("kxrun report: one directory at a time ('", dir, "' and '", a, "')\n")
			return 2
		else
			dir = a
		end
		i = i + 1
	end
	if not dir then io.stderr:write(USAGE) return 2 end
	local path, err = require("kx.lab").report(dir, { output = out })
	if not path then
		io.stderr:write("kxrun report: ", err, "\n")
		return 1
	end
	print(path)
	return 0
end
