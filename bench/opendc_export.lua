-- OpenDC export throughput on a generated trace of 1M samples (2000 tasks,
-- 4 processes each, 200 ms ticks), and peak memory, beside the input's size.
-- Peer: Python's json module merely parsing the same proc_metrics.jsonl (the
-- least a Python exporter like Tracekit's does).  Memory is shown for a
-- quarter of the trace too: it stays flat when streaming works.
-- `--reps N` repeats the timed runs, interleaved (figures are medians);
-- `--out DIR` keeps every run (results.jsonl, results.csv, report.html).
local lab = require "kx.lab"

local exp = lab.experiment{
	name = "opendc_export",
	about = "kxrun opendc export of a generated CTS trace: throughput and peak memory, "
		.. "beside Python's json.loads of the same samples",
	params = { { "samples", type = "int", default = 1000000, help = "samples in the generated trace" } },
	metrics = { time = "s", rss = "MiB" },
	out = false, quiet = true, reps = 1, warmup = 0,
}
local N = exp.params.samples
local here = arg[0]:match("^(.*)/[^/]*$") or "."
local T = assert(kx.tmpdir("opendc-bench"))

local function run(argv)
	local code, out, err = kx.exec(argv)
	if code ~= 0 then
		kx.exec{ "rm", "-rf", T }
		error(("%s failed (%s): %s"):format(argv[1], tostring(code), tostring(err or out)), 0)
	end
	return out
end

-- argv under /usr/bin/time: seconds, peak RSS in KiB
local function measure(argv)
	run{ "/usr/bin/time", "-f", "%e %M", "-o", T .. "/time", table.unpack(argv) }
	local secs, rss = assert(kx.read_file(T .. "/time")):match("([%d.]+) (%d+)%s*$")
	return tonumber(secs), tonumber(rss)
end

local function gen(dir, samples)
	run{ "python3", here .. "/../tests/opendc/gen_cts.py", dir, tostring(samples) }
end

gen(T .. "/q", N // 4)
gen(T .. "/full", N)
local samples = tonumber(run{ "wc", "-l", T .. "/full/CTS/proc_metrics.jsonl" }:match("%d+"))
local bytes = tonumber(run{ "du", "-cb", T .. "/full/CTS" }:match("(%d+)%s+total"))

local function export(dir, out)
	return measure{ kx.exe, "opendc", "export", "--input", dir, "--output", out }
end
local PARSE = [[
import json, sys, time
t = time.perf_counter()
for l in open(sys.argv[1]): json.loads(l)
print(time.perf_counter() - t)]]

local fig = {}
local function keep(name, v)
	fig[name] = fig[name] or {}
	table.insert(fig[name], v)
	return v
end
exp:run{ systems = {
	{ "kxrun opendc export", function()
		local secs, rss = export(T .. "/full", T .. "/out")
		local _, rss_q = export(T .. "/q", T .. "/out_q")
		keep("rss_q", rss_q / 1024)
		return { time = keep("secs", secs), rss = keep("rss", rss / 1024) }
	end },
	{ "python3 json.loads", function()
		return { time = keep("py", tonumber(run{ "python3", "-c", PARSE, T .. "/full/CTS/proc_metrics.jsonl" })) }
	end },
	{ "kxrun opendc verify", function()
		local secs, rss = measure{ kx.exe, "opendc", "verify", "--input", T .. "/out" }
		return { time = keep("vsecs", secs), rss = keep("vrss", rss / 1024) }
	end },
} }

local m = {}
for k, v in pairs(fig) do m[k] = lab.stats.median(v) end
m.secs, m.py = math.max(m.secs, 0.005), math.max(m.py, 1e-6)   -- /usr/bin/time counts in 10 ms
local f = assert(io.open(T .. "/out/fragments.parquet"))
local frags = f:seek("end")
f:close()
kx.exec{ "rm", "-rf", T }
print(("input: %d samples, %.1f MiB of CTS files"):format(samples, bytes / 1048576))
print(("kxrun opendc export: %.2f s, %.0f samples/s, peak RSS %.1f MiB (%.1f MiB at 1/4 of the samples)")
	:format(m.secs, samples / m.secs, m.rss, m.rss_q))
print(("python3 json.loads only: %.2f s, %.0f samples/s"):format(m.py, samples / m.py))
print(("ratio (export / parse-only python): %.2fx the throughput"):format(m.py / m.secs))
print(("kxrun opendc verify: %.2f s, peak RSS %.1f MiB (fragments.parquet %.1f MiB)")
	:format(m.vsecs, m.vrss, frags / 1048576))
