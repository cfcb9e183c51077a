# kx.trace on a saturated machine (10 busy loops on the 2 cores), both
# sources: a shell watched with the children it already has gets rows and
# ends for both children, and a process matched by name that was already
# running when the run started is recorded.  (Under eBPF both went
# unrecorded: loading the program took a second of such a machine, and
# they had ended by then.)
. "$(dirname "$0")/lib.sh"
sources=proc
if have bpf; then sources="proc ebpf"; fi
busy=""
trap 'for p in $busy; do kill "$p" 2>/dev/null; done; wait; rm -rf "$T"' EXIT
for _ in $(seq 10); do
	( while :; do :; done ) &
	busy="$busy $!"
done
cd "$T"
cp /bin/sleep kxloadsleep
cat > loaded.lua <<'LUA'
local trace = require "kx.trace"
local source = arg[1]
local function lines(path)
	local out = {}
	for l in io.lines(path) do out[#out + 1] = kx.json.decode(l) end
	return out
end
local function children(pid)
	local f = io.open("/proc/" .. pid .. "/task/" .. pid .. "/children")
	local kids = {}
	for k in (f and f:read("a") or ""):gmatch("%d+") do
		local c = io.open("/proc/" .. k .. "/comm")
		if c then kids[#kids + 1] = { pid = tonumber(k), comm = c:read("l") }; c:close() end
	end
	if f then f:close() end
	return kids
end
local function comm(pid)
	local f = io.open("/proc/" .. pid .. "/comm")
	local c = f and f:read("l")
	if f then f:close() end
	return c
end
local function sleeping_kids(pid)
	local kids
	repeat
		kx.sleep(0.005)
		kids = children(pid)
	until #kids == 2 and kids[1].comm == "sleep" and kids[2].comm == "sleep"
	return kids
end
local function ends(dir, ppid)
	local n = 0
	for _, q in ipairs(lines(dir .. "/raw/procs.jsonl")) do
		if q.ppid == ppid and q.comm == "sleep" then n = n + 1 end
	end
	return n
end

-- 1. a shell watched with the children it has, which end before any tick
-- (the interval is 5 s): only a watch that takes them at once sees them
local p = kx.spawn{ "sh", "-c", "sleep 30 & sleep 30 & wait" }
local kids = sleeping_kids(p.pid)
local run = assert(trace.start{ dir = source .. "-now", interval = 5, source = source })
assert(run.source == source)
assert(run:watch(p.pid))
for _, k in ipairs(kids) do assert(kx.exec{ "kill", tostring(k.pid) } == 0) end
p:wait()
kx.sleep(0.1)
run:stop()
assert(ends(source .. "-now", p.pid) == 2,
	("%s: %d of the 2 children of a watched shell ended in procs.jsonl"):format(source, ends(source .. "-now", p.pid)))

-- 2. a process found by name, running when the run starts and ended
-- before any tick
local before = kx.spawn{ "./kxloadsleep", "30" }
repeat kx.sleep(0.005) until comm(before.pid) == "kxloadsleep"
run = assert(trace.start{ dir = source .. "-match", interval = 5, source = source, match = "^kxloadsleep$" })
before:kill()
before:wait()
kx.sleep(0.1)
run:stop()
local found = false
for _, q in ipairs(lines(source .. "-match/raw/procs.jsonl")) do found = found or q.pid == before.pid end
assert(found, source .. ": the process matched by name, already running, was not recorded")

-- 3. the issue's case, at a 50 ms interval: a shell with sleep 0.6
-- children, watched once they run; they get rows and ends
local t0 = kx.time()
run = assert(trace.start{ dir = source .. "-watch", interval = 0.05, source = source })
local took = kx.time() - t0
p = kx.spawn{ "sh", "-c", "sleep 0.6 & sleep 0.6 & wait" }
sleeping_kids(p.pid)
assert(run:watch(p.pid))
p:wait()
kx.sleep(0.1)
run:stop()
local rows = {}
for _, r in ipairs(lines(source .. "-watch/raw/proc_metrics.jsonl")) do rows[r.pid] = true end
local n = 0
for _, q in ipairs(lines(source .. "-watch/raw/procs.jsonl")) do
	if q.ppid == p.pid and q.comm == "sleep" then
		n = n + 1
		assert(rows[q.pid], ("%s: no rows for child %d"):format(source, q.pid))
	end
end
assert(n == 2, ("%s: %d of the shell's 2 children ended in procs.jsonl"):format(source, n))
print(("%s: children of a watched shell and a process matched by name recorded (start took %.2f s)"):format(source, took))
LUA
for s in $sources; do
	for b in $busy; do kill -0 "$b" || fail "busy loop $b is not running"; done
	"$KXRUN" loaded.lua "$s" || fail "$s under load"
done
exit 0
