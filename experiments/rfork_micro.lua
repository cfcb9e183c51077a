-- MITOSIS's micro benchmarks in kxrun terms (kx.rfork), plus its
-- fork-function demo.
--
--   kxrun experiments/rfork_micro.lua [--sizes 1M,16M,64M,256M,1G]
--        [--netns] [--children 8] [--entries 1000000] [--json FILE]
--        [--out DIR]
--
-- For each working-set size: the time rfork.prepare takes in a parent
-- holding that much memory (MITOSIS bench_prepare_time), the latency from
-- starting `kxrun rfork resume` to the child's first Lua statement, and the
-- execution time of a child touching 1%, 10% and 100% of the parent's
-- working set (bench_exe_time_parent: every page touched is pulled from the
-- parent on first touch).  Then fork-function: a parent loads a big Lua
-- table once; N children resumed at once each answer one query from it,
-- against a cold start that rebuilds the table to answer the same query.
--
-- --netns: the parent runs in one network namespace and the children in
-- another, joined by a veth pair (needs root and ip(8)); otherwise both use
-- the loopback.  Sizes take K, M, G suffixes; 4G needs ~10 GB free.
-- (--help lists every parameter; --out DIR keeps every figure in
-- results.jsonl and writes report.html; --json FILE writes them as one
-- JSON object, as before.)
local lab = require "kx.lab"

local exp = lab.experiment{
	name = "rfork_micro",
	about = "kx.rfork: prepare, resume and touch times per working set, and the fork-function demo",
	params = {
		{ "sizes", type = "size", list = true, default = "1M,16M,64M,256M,1G", help = "working sets of the parent" },
		{ "netns", type = "bool", default = false, help = "children in another network namespace (veth; root, ip(8))" },
		{ "children", type = "int", default = 8, help = "fork-function: children resumed at once" },
		{ "entries", type = "int", default = 1000000, help = "fork-function: entries of the table" },
		{ "json", type = "string", meta = "FILE", help = "also write the results as one JSON object to FILE" },
	},
	metrics = { prepare = "ms", resume = "ms", touch_1pct = "ms", touch_10pct = "ms", touch_100pct = "ms" },
	out = false, quiet = true,
}
local P = exp.params
local function bad(msg) io.stderr:write("kxrun: rfork_micro.lua: ", msg, "\n") os.exit(2) end
if P.children < 1 then bad("--children: must be at least 1") end
if P.entries < 1 then bad("--entries: must be at least 1") end

local ok, rfork = pcall(require, "kx.rfork")
if not ok then
	io.stderr:write("rfork_micro: kx.rfork is not in this build of kxrun: nothing to measure\n")
	os.exit(2)
end

local function label(bytes)
	for _, u in ipairs{ { "G", 1 << 30 }, { "M", 1 << 20 }, { "K", 1 << 10 } } do
		if bytes >= u[2] and bytes % u[2] == 0 then return ("%d%s"):format(bytes // u[2], u[1]) end
	end
	return tostring(bytes)
end
local sizes = {}
for _, bytes in ipairs(P.sizes) do sizes[#sizes + 1] = { label = label(bytes), bytes = bytes } end
local nchildren, nentries = P.children, P.entries

-- ---- namespaces: re-run this script inside A, children go to B -------------

local NS_B, LISTEN = os.getenv("KX_RFORK_NS_B"), os.getenv("KX_RFORK_LISTEN") or "127.0.0.1"
if P.netns and not NS_B then
	local tag = "kxm" .. math.random(10000, 99999)
	local a, b, sub = tag .. "a", tag .. "b", math.random(20, 220)
	local addr_a = ("10.232.%d.1"):format(sub)
	local function ip(...)
		local code, _, err = kx.exec{ "ip", ... }
		if code ~= 0 then error("ip " .. table.concat({ ... }, " ") .. ": " .. err, 0) end
	end
	local function teardown()
		kx.exec{ "ip", "netns", "del", a }
		kx.exec{ "ip", "netns", "del", b }
	end
	local setup_ok, err = pcall(function()
		ip("netns", "add", a)
		ip("netns", "add", b)
		ip("link", "add", tag .. "va", "type", "veth", "peer", "name", tag .. "vb")
		ip("link", "set", tag .. "va", "netns", a)
		ip("link", "set", tag .. "vb", "netns", b)
		ip("-n", a, "addr", "add", addr_a .. "/24", "dev", tag .. "va")
		ip("-n", b, "addr", "add", ("10.232.%d.2/24"):format(sub), "dev", tag .. "vb")
		for _, x in ipairs{ { a, tag .. "va" }, { b, tag .. "vb" }, { a, "lo" }, { b, "lo" } } do
			ip("-n", x[1], "link", "set", x[2], "up")
		end
	end)
	if not setup_ok then
		teardown()
		io.stderr:write("rfork_micro: --netns: ", err, " (needs root and ip(8))\n")
		os.exit(2)
	end
	local argv = { "ip", "netns", "exec", a, kx.exe, arg[0] }
	for i = 1, #arg do argv[#argv + 1] = arg[i] end
	argv.env = { KX_RFORK_NS_B = b, KX_RFORK_LISTEN = addr_a }
	local p = assert(kx.spawn(argv))
	local st = p:wait()
	teardown()
	os.exit(st.code or 128 + st.signal)
end

-- ---- measuring ---------------------------------------------------------------

local results = { sizes = {}, where = NS_B and ("netns " .. NS_B .. " -> " .. LISTEN) or "loopback" }

-- Starts `kxrun rfork resume` for h (in namespace B with --netns), with the
-- child's instruction on its stdin; returns its JSON line and when it was
-- started (wall clock, comparable with the child's kx.time()).
local function resume(h, instruction)
	local input = os.tmpname()
	local f = assert(io.open(input, "w"))
	f:write(instruction, "\n")
	f:close()
	local argv = {}
	if NS_B then argv = { "ip", "netns", "exec", NS_B } end
	for _, a in ipairs{ kx.exe, "rfork", "resume", h.address, tostring(h.id), tostring(h.key) } do
		argv[#argv + 1] = a
	end
	argv.stdin, argv.stdout, argv.stderr = input, "pipe", "pipe"
	local started = kx.time()
	local p, err = kx.spawn(argv)
	if not p then os.remove(input) error(err, 0) end
	local out, errs = p.stdout:read("a"), p.stderr:read("a")
	local st = p:wait()
	os.remove(input)
	local line = out:match("RESULT (%b{})")
	if st.code ~= 0 or not line then
		error(("resumed child failed (%s): %s%s"):format(kx.json.encode(st), out, errs), 0)
	end
	return kx.json.decode(line), started
end

-- The floor under any resume latency: a fresh kxrun to its first statement.
local function bare_start()
	local started = kx.time()
	local _, out = kx.exec{ kx.exe, "-e", "print(('%.6f'):format(kx.time()))" }
	return (tonumber(out) - started) * 1000
end

-- The parent's memory: strings of at most 256 MB (a Lua string stops at
-- 2 GB), one byte a page written by string.rep.
local function working_set(bytes)
	local ws, page, left = { bytes = bytes }, ("k"):rep(4096), bytes
	while left > 0 do
		local n = math.min(left, 256 * 1024 * 1024)
		ws[#ws + 1] = page:rep(n // 4096)
		left = left - n
	end
	return ws
end

-- A resumed child reads one byte a page of the first `fraction` of it.
local function child_touch(ws)
	local first = kx.time()
	local frac = tonumber(io.stdin:read("l"))
	local t0 = kx.now()
	local left, sum, pages = math.floor(ws.bytes * frac), 0, 0
	for _, chunk in ipairs(ws) do
		if left <= 0 then break end
		local limit = math.min(left, #chunk)
		for i = 1, limit, 4096 do sum = sum + chunk:byte(i) end
		pages = pages + (limit + 4095) // 4096
		left = left - limit
	end
	print("RESULT " .. kx.json.encode{ first = first, exec_ms = (kx.now() - t0) * 1000,
		pages = pages, sum = sum })
	os.exit(0)
end

local function release(h)
	if type(h.close) == "function" then h:close() end
end

for i, size in ipairs(sizes) do
	kx.progress("working sets", i - 1, #sizes)
	local ws = working_set(size.bytes)
	local t0 = kx.now()
	local h, err = rfork.prepare{ listen = LISTEN .. ":0" }
	local prepare_ms = (kx.now() - t0) * 1000
	if not h then error("prepare: " .. tostring(err), 0) end
	if h.child then child_touch(ws) end
	local row = { size = size.label, bytes = size.bytes, prepare_ms = prepare_ms, touch = {} }
	for _, frac in ipairs{ 0.01, 0.1, 1.0 } do
		local r, started = resume(h, tostring(frac))
		row.touch[#row.touch + 1] = { fraction = frac, exec_ms = r.exec_ms, pages = r.pages }
		if frac == 0.01 then row.resume_ms = (r.first - started) * 1000 end
	end
	release(h)
	results.sizes[#results.sizes + 1] = row
	ws = nil
	collectgarbage()
end
kx.progress("working sets", #sizes, #sizes)
results.bare_start_ms = bare_start()

-- ---- fork-function: one big table, many children answering from it ---------

local function build(n)
	local t = {}
	for i = 1, n do t["k" .. i] = i * i end
	return t
end
-- the same, as a fresh kxrun answering one query (the cold-start peer)
local COLD = "local t = {}\nfor i = 1, %d do t['k' .. i] = i * i end\n"
	.. "io.write(('%%.6f %%s'):format(kx.time(), tostring(t[%q])))"

local function answer(t, key) return t[key] end

local t0 = kx.now()
local big = build(nentries)
local load_ms = (kx.now() - t0) * 1000
local h = assert(rfork.prepare{ listen = LISTEN .. ":0" })
if h.child then
	local first = kx.time()
	local key = io.stdin:read("l")
	local t1 = kx.now()
	local v = answer(big, key)
	print("RESULT " .. kx.json.encode{ first = first, key = key, value = v,
		answer_ms = (kx.now() - t1) * 1000 })
	os.exit(0)
end
local tasks = {}
local t_all = kx.now()
for c = 1, nchildren do
	tasks[c] = kx.go(function()
		local key = "k" .. (c * 7919 % nentries + 1)
		local r, started = resume(h, key)
		assert(r.value == answer(big, key), "child " .. c .. " answered " .. tostring(r.value))
		return { latency_ms = (r.first - started) * 1000 + r.answer_ms, answer_ms = r.answer_ms }
	end)
end
local ff = { entries = nentries, load_ms = load_ms, children = {} }
for c = 1, nchildren do
	local okc, r = tasks[c]:wait()
	if not okc then error(r, 0) end
	ff.children[c] = r
end
ff.all_ms = (kx.now() - t_all) * 1000
release(h)
-- the peer: a cold start building the table to answer one query
do
	local started = kx.time()
	local code, out = kx.exec{ kx.exe, "-e", COLD:format(nentries, "k1") }
	local at, value = (out or ""):match("^(%S+) (%S+)$")
	assert(code == 0 and value == tostring(answer(big, "k1")), "cold start failed: " .. tostring(out))
	ff.cold_ms = (tonumber(at) - started) * 1000
end
results.fork_function = ff

-- ---- report --------------------------------------------------------------------

print(("rfork micro benchmarks (%s); a fresh kxrun reaches its first statement in %.1f ms")
	:format(results.where, results.bare_start_ms))
print(("%-8s %12s %12s %14s %14s %14s"):format("size", "prepare ms", "resume ms",
	"touch 1% ms", "touch 10% ms", "touch 100% ms"))
for _, r in ipairs(results.sizes) do
	print(("%-8s %12.2f %12.2f %14.2f %14.2f %14.2f"):format(r.size, r.prepare_ms, r.resume_ms,
		r.touch[1].exec_ms, r.touch[2].exec_ms, r.touch[3].exec_ms))
end
local lat = {}
for c, r in ipairs(ff.children) do lat[c] = r.latency_ms end
table.sort(lat)
print(("fork-function: table of %d entries loaded once in %.1f ms; %d children resumed at once "
	.. "answered in %.1f ms (median %.1f ms, max %.1f ms each); cold start to one answer %.1f ms "
	.. "(ratio cold/resumed median %.1fx)"):format(ff.entries, ff.load_ms, nchildren, ff.all_ms,
	lab.stats.median(lat), lat[#lat], ff.cold_ms, ff.cold_ms / lab.stats.median(lat)))

for _, r in ipairs(results.sizes) do
	exp:record{ point = { size = r.size }, system = "kx.rfork", values = { prepare = r.prepare_ms,
		resume = r.resume_ms, touch_1pct = r.touch[1].exec_ms, touch_10pct = r.touch[2].exec_ms,
		touch_100pct = r.touch[3].exec_ms } }
end
exp:beside(("fork-function, %d entries, %d children"):format(ff.entries, nchildren), lat, ff.cold_ms,
	{ unit = "ms", ours = "resumed child", peer = "cold start" })
exp:finish()

if P.json then
	local wok, werr = kx.write_file(P.json, kx.json.encode(results) .. "\n")
	if not wok then bad("--json: " .. tostring(werr)) end
end
