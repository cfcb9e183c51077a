-- trace_ffmpeg.lua: short synthetic videos made with ffmpeg's testsrc,
-- transcoded under tracing, parsed and audited; each transcode's CPU as
-- the trace's rows add it up, beside the kernel's own figure (wait4).
--   kxrun experiments/trace_ffmpeg.lua [RUN_DIR] [N] [--out DIR]
-- `kxrun report RUN_DIR` then draws the run (Gantt, CPU and RSS, audit);
-- `--out DIR` keeps the per-transcode figures (results.jsonl, report.html).
local lab = require "kx.lab"
local trace = require "kx.trace"

local exp = lab.experiment{
	name = "trace_ffmpeg",
	about = "ffmpeg transcodes under kx.trace: the rows' CPU against the kernel's (wait4), then the audit",
	params = {
		{ "run_dir", type = "string", positional = true, meta = "RUN_DIR",
			default = "logs/ffmpeg-" .. os.date("%Y%m%d-%H%M%S"), help = "the trace run's directory" },
		{ "n", type = "int", default = 3, positional = true, help = "transcodes, run at once" },
	},
	metrics = { cpu = "ms", wall = "ms" },
	out = false, quiet = true, reps = 1, warmup = 0,
}
local dir, n = exp.params.run_dir, exp.params.n

if kx.exec{ "ffmpeg", "-version" } ~= 0 then
	io.stderr:write("ffmpeg is missing (apt-get install ffmpeg)\n")
	os.exit(1)
end
assert(kx.mkdir(dir .. "/inputs"))
assert(kx.mkdir(dir .. "/outputs"))
for i = 1, n do
	local code, _, err = kx.exec{ "ffmpeg", "-v", "error", "-y", "-f", "lavfi",
		"-i", "testsrc=duration=2:size=320x240:rate=25", ("%s/inputs/in%d.mp4"):format(dir, i) }
	if code ~= 0 then error("ffmpeg could not make an input: " .. tostring(err)) end
	kx.progress("inputs", i, n)
end

local run = assert(trace.start{ dir = dir, interval = 0.05, stage = "edge" })
local tasks = {}
for i = 1, n do
	tasks[i] = kx.go(function()
		return assert(run:exec{ "ffmpeg", "-v", "error", "-y", "-i", ("%s/inputs/in%d.mp4"):format(dir, i),
			"-vf", "scale=160:120", "-c:v", "libx264", "-preset", "veryfast",
			("%s/outputs/out%d.mp4"):format(dir, i), trace_id = "ffmpeg-" .. i })
	end)
end
local recs = {}
for i = 1, n do
	local _, r = tasks[i]:wait()
	recs[i] = r
end
run:stop()
local audit = assert(trace.parse(dir))
-- the time series of each invocation's tree against the kernel's figure
-- for it (wait4): every CPU millisecond counted once
local parent, rows_cpu = {}, {}
for line in io.lines(dir .. "/CTS/procs.jsonl") do
	local p = kx.json.decode(line)
	parent[p.pid] = p.ppid
end
for line in io.lines(dir .. "/CTS/proc_metrics.jsonl") do
	local r = kx.json.decode(line)
	parent[r.pid] = parent[r.pid] or r.ppid
	rows_cpu[r.pid] = (rows_cpu[r.pid] or 0) + r.cpu_ms
end
local function tree_cpu(root)
	local sum = 0
	for pid, cpu in pairs(rows_cpu) do
		local p, hops = pid, 0
		while p and p ~= root and hops < 64 do p, hops = parent[p], hops + 1 end
		if p == root then sum = sum + cpu end
	end
	return sum
end
print(("source: %s"):format(run.source))
print(("%-10s %8s %10s %12s %12s %6s"):format("trace_id", "pid", "wall ms", "cpu ms", "rows cpu ms", "exit"))
for i, r in ipairs(recs) do
	local wall, rows = r.ts_end - r.ts_start, tree_cpu(r.pid)
	print(("%-10s %8d %10d %12.1f %12.1f %6s"):format(r.trace_id, r.pid, wall, r.cpu_ms,
		rows, tostring(r.exit_code or ("sig" .. r.signal))))
	-- the transcodes are the repetitions: the summary's ratio is rows / wait4
	exp:record{ system = "wait4", rep = i, values = { cpu = r.cpu_ms, wall = wall } }
	exp:record{ system = "kx.trace rows", rep = i, values = { cpu = rows } }
end
io.write("\n", trace.report(audit, dir))
exp:finish()
