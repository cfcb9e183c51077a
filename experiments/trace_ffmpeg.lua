-- trace_ffmpeg.lua: short synthetic videos made with ffmpeg's testsrc,
-- transcoded under tracing, parsed and audited.
--   kxrun experiments/trace_ffmpeg.lua [RUN_DIR] [N]
local trace = require "kx.trace"
local dir = arg[1] or ("logs/ffmpeg-" .. os.date("%Y%m%d-%H%M%S"))
local n = tonumber(arg[2]) or 3

if kx.exec{ "ffmpeg", "-version" } ~= 0 then
	io.stderr:write("ffmpeg is missing (apt-get install ffmpeg)\n")
	os.exit(1)
end
os.execute("mkdir -p '" .. dir .. "/inputs' '" .. dir .. "/outputs'")
for i = 1, n do
	local code, _, err = kx.exec{ "ffmpeg", "-v", "error", "-y", "-f", "lavfi",
		"-i", ("testsrc=duration=2:size=320x240:rate=25"):format(), ("%s/inputs/in%d.mp4"):format(dir, i) }
	if code ~= 0 then error("ffmpeg could not make an input: " .. err) end
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
print(("%-10s %8s %10s %10s %6s"):format("trace_id", "pid", "wall ms", "cpu ms", "exit"))
for i = 1, n do
	local _, r = tasks[i]:wait()
	print(("%-10s %8d %10d %10.0f %6s"):format(r.trace_id, r.pid, r.ts_end - r.ts_start, r.cpu_ms,
		tostring(r.exit_code or ("sig" .. r.signal))))
end
run:stop()
local audit = assert(trace.parse(dir))
io.write("\n", trace.report(audit, dir))
