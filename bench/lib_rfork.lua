-- The processes bench/rfork.lua and experiments/rfork_micro.lua measure
-- (bench/run.sh does not run lib_ files):
--
--   kxrun bench/lib_rfork.lua parent SIZE [nolearn]
--       builds SIZE bytes of Lua strings (256 MiB at most each), prepares on
--       the loopback (LISTEN: another address), prints "ADDRESS ID KEY
--       HOLDERPID" and waits for its stdin to close
--   kxrun bench/lib_rfork.lua table N [nolearn]
--       the same with a table of N entries ("k1" .. "kN" -> i * i), the
--       fork-function demo's parent
--   kxrun bench/lib_rfork.lua prepare SIZE REPS
--       prints the times of REPS prepares (and closes) of SIZE and of one
--       copy of that memory: {"prepare_ms":[...],"copy_ms":ms}
--   kxrun bench/lib_rfork.lua spawn N C INPUT ADDRESS ID KEY [BALLAST]
--       N children resumed by rfork.spawn from this process, C at once
--       (stdin INPUT, a file or "null"; stdout /dev/null), after building
--       BALLAST bytes of 4 KiB Lua strings in this caller (small blocks, so
--       not in huge pages: what a fork copies most; none by default); prints
--       rfork_spawn's line: {"wall_ms":[...],"total_ms":ms,"failed":n}
--
-- A resumed child reads one order on its stdin (none: "hello"):
--   hello       prints "hello" and exits
--   touch F     reads one byte a page of the first F (0..1) of the strings:
--               {"first":T,"exec_ms":ms,"pages":n}
--   lookup KEY  answers from the table: {"first":T,"value":v,"done":T2}
--               (T, T2: kx.time() at its first statement and after answering)
local rfork = require "kx.rfork"
local mode, what, opt = arg[1], arg[2], arg[3]

local function strings(bytes)
	local ws, page, left = { bytes = bytes }, ("k"):rep(4096), bytes
	while left > 0 do
		local n = math.min(left, 256 * 1024 * 1024)
		ws[#ws + 1] = page:rep(n // 4096)
		left = left - n
	end
	return ws
end

local function size(text)
	return assert(require("kx.lab").size(text or ""))
end

if mode == "prepare" then
	local ws = strings(size(what))
	local t = {}
	for _ = 1, tonumber(opt) do
		local t0 = kx.now()
		local h = assert(rfork.prepare{ listen = "127.0.0.1:0" })
		if h.child then os.exit(0) end
		t[#t + 1] = (kx.now() - t0) * 1000
		h:close()
	end
	-- for scale: what copying that memory once costs (long strings are
	-- copied, never shared)
	local t0 = kx.now()
	for _, chunk in ipairs(ws) do assert(#chunk:sub(2) == #chunk - 1) end
	print(kx.json.encode{ prepare_ms = t, copy_ms = (kx.now() - t0) * 1000 })
	return
end

if mode == "spawn" then
	local n, c, inpath, address, id, key, ballast = tonumber(what), tonumber(opt),
		arg[4], arg[5], arg[6], arg[7], arg[8]
	local keep = { bytes = ballast and size(ballast) or 0 }
	local page = ("b"):rep(4096)
	for i = 1, keep.bytes // 4096 do keep[i] = page .. i end
	local wall, failed, next_run, tasks = {}, 0, 1, {}
	local t0 = kx.now()
	for i = 1, c do
		tasks[i] = kx.go(function()
			while next_run <= n do
				next_run = next_run + 1
				local t1 = kx.now()
				local p = rfork.spawn{ address = address, id = id, key = key,
					stdin = inpath == "null" and "null" or inpath, stdout = "null" }
				local st = p and p:wait()
				if not (st and st.code == 0) then failed = failed + 1 end
				wall[#wall + 1] = (kx.now() - t1) * 1000
			end
		end)
	end
	for _, t in ipairs(tasks) do assert(t:wait()) end
	print(kx.json.encode{ wall_ms = wall, total_ms = (kx.now() - t0) * 1000, failed = failed,
		ballast = keep.bytes })
	return
end

local ws, big
if mode == "parent" then
	ws = strings(size(what))
elseif mode == "table" then
	big = {}
	for i = 1, tonumber(what) do big["k" .. i] = i * i end
else
	error("usage: lib_rfork.lua parent SIZE | table N | prepare SIZE REPS | spawn N C INPUT "
		.. "ADDRESS ID KEY [BALLAST]", 0)
end
local listen = (os.getenv("LISTEN") or "127.0.0.1") .. ":0"
local h = assert(rfork.prepare{ listen = listen, learn = opt ~= "nolearn" })
if h.child then
	local first = kx.time()
	local order = io.read("l") or "hello"
	local verb, rest = order:match("^(%S+)%s*(.*)$")
	if verb == "touch" then
		local t0 = kx.now()
		local left, sum, pages = math.floor(ws.bytes * tonumber(rest)), 0, 0
		for _, chunk in ipairs(ws) do
			if left <= 0 then break end
			local limit = math.min(left, #chunk)
			for i = 1, limit, 4096 do sum = sum + chunk:byte(i) end
			pages = pages + (limit + 4095) // 4096
			left = left - limit
		end
		print(kx.json.encode{ first = first, exec_ms = (kx.now() - t0) * 1000, pages = pages,
			sum = sum })
	elseif verb == "lookup" then
		local v = big[rest]
		print(kx.json.encode{ first = first, value = v, done = kx.time() })
	else
		print("hello")
	end
	io.stdout:flush()
	os.exit(0)
end
print(h.address, h.id, h.key, h.pid)
io.stdout:flush()
io.read("a")
h:close()
