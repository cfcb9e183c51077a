-- vtime_pingpong.lua: a TCP ping-pong over loopback between two dilated
-- processes (experiments/pingpong/{server,client}.c), the round-trip times
-- as the client's own clock saw them (virtual time), next to the same
-- exchange run plainly (real time).
--
--   kxrun experiments/vtime_pingpong.lua [COUNT=20] [STEP_NS=100000]
--         [INTERVAL_US=1000] [BACKEND=auto]
local vtime = require "kx.vtime"

local count = math.tointeger(tonumber(arg[1] or 20))
local step = math.tointeger(tonumber(arg[2] or 100000))
local interval = math.tointeger(tonumber(arg[3] or 1000))
local backend = arg[4] or "auto"
assert(count and count > 0 and step and step > 0 and interval and interval >= 0,
	"usage: vtime_pingpong.lua [COUNT>0] [STEP_NS>0] [INTERVAL_US>=0] [BACKEND]")
local bin = (os.getenv("BUILD") or "build") .. "/experiments/"
local SERVER, CLIENT = bin .. "pingpong_server", bin .. "pingpong_client"
assert(io.open(SERVER), SERVER .. " missing: run make")
math.randomseed(os.time() ~ math.floor(kx.now() * 1e6))

local function read_all(path)
	local f = io.open(path)
	if not f then return "" end
	local s = f:read("a")
	f:close()
	return s
end

-- rtt lines -> list of ns, and the summary line's fields
local function parse(out)
	local rtts, summary = {}, nil
	for seq, ns in out:gmatch("rtt (%d+) (%d+)") do rtts[tonumber(seq)] = tonumber(ns) end
	local n, mn, med, mx = out:match("summary (%d+) min (%d+) median (%d+) max (%d+)")
	if n then summary = { min = tonumber(mn), median = tonumber(med), max = tonumber(mx) } end
	return rtts, summary
end

local tmp = os.tmpname()
local args = { tostring(count), "64", tostring(interval) }

-- 1. dilated: both ends in one experiment, advanced round by round
local exp = assert(vtime.experiment{ step = step, backend = backend })
local port = tostring(math.random(20000, 60000))
local srv = assert(exp:spawn({ SERVER, port }, { stdout = tmp .. ".srv" }))
local cli = assert(exp:spawn({ CLIENT, port, table.unpack(args) }, { stdout = tmp .. ".cli" }))
exp:freeze()
local t0 = kx.now()
local max_rounds = 2000 + (count * (interval * 1000 + 1e6)) // step
while cli:alive() and exp.rounds < max_rounds do exp:advance(10) end
local real_s = kx.now() - t0
local vnow, rounds, cst = exp:now(), exp.rounds, cli:status()
exp:stop()
local out = read_all(tmp .. ".cli")
local rtts, vsum = parse(out)
print(("dilated (%s, step %d ns): %d rounds, virtual %.3f ms, real %.3f s, client %s")
	:format(exp.backend, step, rounds, vnow / 1e6, real_s,
		cst and (cst.code and "exit " .. cst.code or "signal " .. cst.signal) or "still running"))
for i = 1, count do
	if rtts[i] then print(("  rtt %3d  %10.1f us virtual"):format(i, rtts[i] / 1e3)) end
end

-- 2. the peer: the same exchange, not dilated
port = tostring(math.random(20000, 60000))
local ps = assert(kx.spawn{ SERVER, port, stdout = "null" })
local code, pout = kx.exec{ CLIENT, port, table.unpack(args) }
ps:wait(5)
local _, rsum = parse(pout)

if vsum and rsum then
	print(("median rtt: dilated %.1f us virtual, plain %.1f us real (ratio %.2f)")
		:format(vsum.median / 1e3, rsum.median / 1e3, vsum.median / math.max(rsum.median, 1)))
	print(("min/max rtt: dilated %.1f/%.1f us virtual, plain %.1f/%.1f us real")
		:format(vsum.min / 1e3, vsum.max / 1e3, rsum.min / 1e3, rsum.max / 1e3))
else
	print(("no summary: dilated client output %q, plain exit %s"):format(out, tostring(code)))
end
os.remove(tmp); os.remove(tmp .. ".srv"); os.remove(tmp .. ".cli")
os.exit((vsum and rsum) and 0 or 1)
