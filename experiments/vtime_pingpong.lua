-- vtime_pingpong.lua: a TCP ping-pong over loopback between two dilated
-- processes (experiments/pingpong/{server,client}.c), the round-trip times
-- as the client's own clock saw them (virtual time), next to the same
-- exchange run plainly (real time).
--
--   kxrun experiments/vtime_pingpong.lua [COUNT=20] [STEP_NS=100000]
--         [INTERVAL_US=1000] [BACKEND=auto]
-- (--help lists every parameter; --out DIR keeps every round trip in
-- results.jsonl, the rounds, virtual against real time, in vtime.jsonl,
-- and writes report.html.)
local vtime = require "kx.vtime"
local lab = require "kx.lab"

local exp = lab.experiment{
	name = "vtime_pingpong",
	about = "TCP round trips between two dilated processes (virtual time) and run plainly (real time)",
	params = {
		{ "count", type = "int", default = 20, positional = true, help = "pings" },
		{ "step", type = "int", default = 100000, positional = true, meta = "NS", help = "virtual ns per round" },
		{ "interval", type = "int", default = 1000, positional = true, meta = "US", help = "us between pings" },
		{ "backend", type = "choice", choices = { "auto", "signal", "freezer", "freezer-v1", "freezer-v2", "kmod" },
			default = "auto", positional = true, help = "how processes are frozen" },
	},
	metrics = { rtt = "us" },
	out = false, quiet = true,
}
local P = exp.params
local function bad(msg) io.stderr:write(("kxrun: vtime_pingpong.lua: %s\n"):format(msg)) os.exit(2) end
if P.count < 1 then bad("--count: must be at least 1") end
if P.step < 1 then bad("--step: must be at least 1 ns") end
if P.interval < 0 then bad("--interval: must be 0 or more") end
-- the build directory (BUILD, else build/ of this script's repository)
local BUILD = os.getenv("BUILD") or "build"
if BUILD:sub(1, 1) ~= "/" then BUILD = (arg[0]:match("^(.*)/experiments/[^/]*$") or ".") .. "/" .. BUILD end
local bin = BUILD .. "/experiments/"
local SERVER, CLIENT = bin .. "pingpong_server", bin .. "pingpong_client"
local free_port = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/pingpong/port.lua")
assert(io.open(SERVER), SERVER .. " missing: run make")
math.randomseed(os.time() ~ math.floor(kx.now() * 1e6))

local function read_all(path)
	local f = io.open(path)
	if not f then return "" end
	local s = f:read("a")
	f:close()
	return s
end

-- rtt lines -> list of us
local function rtts_of(out)
	local rtts = {}
	for seq, ns in out:gmatch("rtt (%d+) (%d+)") do rtts[tonumber(seq)] = tonumber(ns) / 1e3 end
	return rtts
end

local tmp = os.tmpname()
local args = { tostring(P.count), "64", tostring(P.interval) }

-- 1. dilated: both ends in one experiment, advanced round by round
local vexp = assert(vtime.experiment{ step = P.step, backend = P.backend })
local port = tostring(free_port())
assert(vexp:spawn({ SERVER, port }, { stdout = tmp .. ".srv" }))
local cli = assert(vexp:spawn({ CLIENT, port, table.unpack(args) }, { stdout = tmp .. ".cli" }))
vexp:freeze()
local rec = exp:vtime(vexp, "ping-pong")
local t0 = kx.now()
local max_rounds = 2000 + (P.count * (P.interval * 1000 + 1e6)) // P.step
while cli:alive() and vexp.rounds < max_rounds do rec:advance(10) end
local real_s = kx.now() - t0
local vnow, rounds, cst = vexp:now(), vexp.rounds, cli:status()
local used = vexp.backend
vexp:stop()
local out = read_all(tmp .. ".cli")
local rtts = rtts_of(out)
print(("dilated (%s, step %d ns): %d rounds, virtual %.3f ms, real %.3f s, client %s")
	:format(used, P.step, rounds, vnow / 1e6, real_s,
		cst and (cst.code and "exit " .. cst.code or "signal " .. cst.signal) or "still running"))
for i = 1, P.count do
	if rtts[i] then
		print(("  rtt %3d  %10.1f us virtual"):format(i, rtts[i]))
		exp:record{ system = "dilated (virtual)", values = { rtt = rtts[i] } }
	end
end

-- 2. the peer: the same exchange, not dilated
port = tostring(free_port())
local ps = assert(kx.spawn{ SERVER, port, stdout = "null" })
local code, pout = kx.exec{ CLIENT, port, table.unpack(args) }
ps:wait(5)
local plain = rtts_of(pout)
for i = 1, P.count do
	if plain[i] then exp:record{ system = "plain (real)", values = { rtt = plain[i] } } end
end

local ok = #rtts > 0 and #plain > 0
if ok then
	local d, r = lab.stats.summary(rtts), lab.stats.summary(plain)
	print(("median rtt: dilated %.1f us virtual, plain %.1f us real (ratio %.2f)")
		:format(d.median, r.median, d.median / math.max(r.median, 1e-3)))
	print(("min/max rtt: dilated %.1f/%.1f us virtual, plain %.1f/%.1f us real")
		:format(d.min, d.max, r.min, r.max))
	print(("p95/p99 rtt: dilated %.1f/%.1f us virtual, plain %.1f/%.1f us real; median 95%% CI"
		.. " dilated [%.1f, %.1f], plain [%.1f, %.1f]"):format(d.p95, d.p99, r.p95, r.p99,
		d.ci_lo, d.ci_hi, r.ci_lo, r.ci_hi))
else
	print(("no round trips: dilated client output %q, plain exit %s"):format(out, tostring(code)))
end
os.remove(tmp); os.remove(tmp .. ".srv"); os.remove(tmp .. ".cli")
exp:finish()
os.exit(ok and 0 or 1)
