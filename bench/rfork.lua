-- kx.rfork: prepare time against the working set (64 MB, 1 GB, 4 GB; goal:
-- 4 GB in < 50 ms) and resume latency to the child's first Lua statement
-- for a 1 GB parent over the loopback (goal: < 10 ms).  Peers measured in
-- the same run: a cold start rebuilding the same state from scratch (a
-- fresh kxrun to its first statement after building it), and CRIU
-- dump + restore of a kxrun holding it (Debian criu; where CRIU cannot
-- start on this kernel the bench says so and why, with no figure).
-- RFORK_BENCH_SIZES=64M,1G,4G overrides the sizes; a size that does not
-- fit in 2.5 times the available memory is skipped, saying so.
local ok, rfork = pcall(require, "kx.rfork")
if not ok then
	print("rfork: SKIPPED: kx.rfork is not in this build (the rfork core has not landed)")
	return
end

local REPS = 3
local MB = 1024 * 1024

local function parse_size(s)
	local n, unit = s:match("^(%d+)([MG])$")
	assert(n, "RFORK_BENCH_SIZES: sizes like 64M or 4G")
	return math.tointeger(n) * (unit == "G" and 1024 or 1) * MB
end

local function mem_available()
	for line in io.lines("/proc/meminfo") do
		local kb = line:match("^MemAvailable:%s+(%d+)")
		if kb then return tonumber(kb) * 1024 end
	end
	return math.huge
end

local function median(t)
	table.sort(t)
	return t[(#t + 1) // 2]
end

-- A working set of `bytes` as strings of at most 256 MB (a Lua string
-- stops at 2 GB); the same source runs here and in the peers' processes.
local WORKING_SET = [[
local ws, page, left = {}, ("b"):rep(4096), %d
while left > 0 do
	local n = math.min(left, 256 * 1024 * 1024)
	ws[#ws + 1] = page:rep(n // 4096)
	left = left - n
end
]]
local function working_set(bytes)
	return assert(load(WORKING_SET:format(bytes) .. "return ws", "=working set"))()
end

-- The child of every prepare below: says when its first statement ran.
local function child_report()
	print(("FIRST %.6f"):format(kx.time()))
	os.exit(0)
end

local function resume_latency(h)
	local started = kx.time()
	local code, out, err = kx.exec{ kx.exe, "rfork", "resume", h.address, tostring(h.id),
		tostring(h.key) }
	local first = tonumber((out or ""):match("FIRST (%S+)"))
	assert(code == 0 and first, "resume failed: " .. tostring(out) .. tostring(err))
	return (first - started) * 1000
end

local function release(h)
	if type(h.close) == "function" then h:close() end
end

local sizes = {}
for s in (os.getenv("RFORK_BENCH_SIZES") or "64M,1G,4G"):gmatch("[^,]+") do
	sizes[#sizes + 1] = { label = s, bytes = parse_size(s) }
end

local latency_size
for _, size in ipairs(sizes) do
	if size.bytes * 2.5 > mem_available() then
		print(("rfork prepare %s: skipped, %.1f GB available is under 2.5x the working set")
			:format(size.label, mem_available() / 1024 / MB))
	else
		local ws = working_set(size.bytes)
		local times, lat = {}, {}
		for _ = 1, REPS do
			local t0 = kx.now()
			local h = assert(rfork.prepare{ listen = "127.0.0.1:0" })
			if h.child then child_report() end
			times[#times + 1] = (kx.now() - t0) * 1000
			if not latency_size and size.bytes >= 1024 * MB then
				lat[#lat + 1] = resume_latency(h)
			end
			release(h)
		end
		local copy_ms
		do   -- what copying the working set once costs, for scale
			local t0 = kx.now()
			for _, chunk in ipairs(ws) do
				local copy = chunk:sub(2)   -- long strings are copied, never shared
				assert(#copy == #chunk - 1)
			end
			copy_ms = (kx.now() - t0) * 1000
		end
		print(("rfork prepare %s: %.2f ms (median of %d); one copy of its memory %.1f ms; "
			.. "ratio %.3fx%s"):format(size.label, median(times), REPS, copy_ms,
			median(times) / copy_ms, size.bytes == 4096 * MB and " (goal: < 50 ms)" or ""))
		if #lat > 0 and not latency_size then
			latency_size = { label = size.label, bytes = size.bytes, ms = median(lat) }
		end
		ws = nil
		collectgarbage()
	end
end

if not latency_size then
	print("rfork resume: skipped, no working set of 1 GB or more among the sizes measured")
	return
end

-- ---- peers ------------------------------------------------------------------

-- cold start: a fresh kxrun rebuilding the state, to its first statement after
local cold = {}
for _ = 1, REPS do
	local started = kx.time()
	local _, out = kx.exec{ kx.exe, "-e", WORKING_SET:format(latency_size.bytes)
		.. "print(('FIRST %.6f'):format(kx.time()))" }
	cold[#cold + 1] = (tonumber(out:match("FIRST (%S+)")) - started) * 1000
end
local cold_ms = median(cold)

-- CRIU: dump and restore of a kxrun holding the same state
local function criu_figure()
	local code, out, err = kx.exec{ "criu", "check" }
	if not code then return nil, "criu is not installed (" .. tostring(out) .. ")" end
	if code ~= 0 then
		-- its own reasons, less the generic "exited, status=1" lines
		local why = {}
		for msg in ((err or "") .. (out or "")):gmatch("Error %b():%s*([^\n]+)") do
			if not msg:match("^exited, status") and #why < 2 then why[#why + 1] = msg end
		end
		return nil, "`criu check` fails on this kernel: " ..
			(#why > 0 and table.concat(why, "; ") or ("exit " .. code))
	end
	local dir = os.tmpname()
	os.remove(dir)
	assert(kx.exec{ "mkdir", "-p", dir } == 0)
	local holder = assert(kx.spawn{ kx.exe, "-e", WORKING_SET:format(latency_size.bytes)
		.. "io.write('READY\\n') io.stdout:flush() kx.sleep(600)",
		stdout = "pipe", stdin = "null", detach = true })
	holder.stdout:read("l")
	local pid = tostring(holder.pid)   -- kx.spawn gives it a session of its own
	local t0 = kx.now()
	local dc, _, derr = kx.exec{ "criu", "dump", "-t", pid, "-D", dir, "--shell-job" }
	local dump_ms = (kx.now() - t0) * 1000
	if dc ~= 0 then
		holder:kill("KILL")
		kx.exec{ "rm", "-rf", dir }
		return nil, "criu dump failed: " .. (derr:match("Error[^\n]*") or derr)
	end
	t0 = kx.now()
	local rc, _, rerr = kx.exec{ "criu", "restore", "-D", dir, "--shell-job", "-d" }
	local restore_ms = (kx.now() - t0) * 1000
	kx.exec{ "kill", "-KILL", pid }
	kx.exec{ "rm", "-rf", dir }
	if rc ~= 0 then return nil, "criu restore failed: " .. (rerr:match("Error[^\n]*") or rerr) end
	return dump_ms + restore_ms
end
local criu_ms, criu_why = criu_figure()

print(("rfork resume (%s parent, loopback): %.2f ms to the child's first statement (goal: < 10 ms); "
	.. "cold start rebuilding the state %.1f ms, ratio %.2fx"):format(latency_size.label,
	latency_size.ms, cold_ms, cold_ms / latency_size.ms))
if criu_ms then
	print(("rfork resume vs CRIU dump+restore (%s): %.2f ms vs %.1f ms, ratio %.2fx")
		:format(latency_size.label, latency_size.ms, criu_ms, criu_ms / latency_size.ms))
else
	print("rfork resume vs CRIU dump+restore: no CRIU figure: " .. criu_why)
end
