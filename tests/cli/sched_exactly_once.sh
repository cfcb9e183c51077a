# kx.sched exactly once through real `kxrun sched worker` processes: a
# worker SIGKILLed at a random moment, or right after one of its commands
# exited (before or while its result is written), never makes a command
# that completed run again, and loses none.  20 runs here, 200 with
# KXRUN_TEST_LONG=1 (make test-long).  Each run checks its precondition (the
# kill happened, and in the "after exit" runs the killed worker was the
# parent of that command's launcher and the command had exited), and the
# test ends with no task cgroup, launcher or recorder of its own left.
. "$(dirname "$0")/lib.sh"
need redis
RUNS=20
[ -n "${KXRUN_TEST_LONG:-}" ] && RUNS=200
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$T" --logfile "$T/redis.log" \
	>/dev/null 2>&1 &
RPID=$!
trap 'redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1; wait $RPID; [ -n "${KEEP:-}" ] && echo "kept $T" || rm -rf "$T"' EXIT
for _ in $(seq 100); do redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done

cat > "$T/driver.lua" <<'LUA'
local sched = require "kx.sched"
local url, dir, runs = arg[1], arg[2], tonumber(arg[3])
local KX = os.getenv("KXRUN")
local function read(p) local f = io.open(p) if not f then return nil end local s = f:read("a") f:close() return s end
local function ppid(pid) local s = read("/proc/" .. pid .. "/stat") return s and tonumber(s:match("%) %S+ (%d+)")) end
-- A process that has not ended: not a zombie (Z), nor one its parent is
-- reaping (X, after Z: counting it alive made a command that had ended look
-- as if it had not, once in a few hundred runs)
local function alive(pid)
	local st = (read("/proc/" .. pid .. "/stat") or ""):match("%) (%a) ")
	return st ~= nil and st ~= "Z" and st ~= "X" and st ~= "x"
end

local workers, started = {}, {}
local s
-- A failure says what the machine looked like: the process tree under this
-- driver (state, wait channel, age), the task's /proc entries, the queues
-- and the workers' logs.
local function diagnose(msg, pid)
	local out = { "FAIL: " .. msg, "-- processes under the driver (pid ppid pgid stat wchan age args):" }
	local _, ps = kx.exec{ "ps", "-eo", "pid=,ppid=,pgid=,stat=,wchan:22=,etimes=,args=" }
	local kids, rows = { [tonumber(read("/proc/self/stat"):match("^%d+"))] = true }, {}
	for line in (ps or ""):gmatch("[^\n]+") do
		local p, pp = line:match("^%s*(%d+)%s+(%d+)")
		if p then rows[#rows + 1] = { tonumber(p), tonumber(pp), line } end
	end
	for _ = 1, 6 do
		for _, r in ipairs(rows) do if kids[r[2]] then kids[r[1]] = true end end
	end
	for _, r in ipairs(rows) do if kids[r[1]] or r[1] == pid then out[#out + 1] = r[3] end end
	if pid then
		for _, f in ipairs{ "stat", "status", "cgroup", "wchan", "stack" } do
			out[#out + 1] = ("-- /proc/%d/%s:"):format(pid, f)
			out[#out + 1] = (read(("/proc/%d/%s"):format(pid, f)) or "(none)"):gsub("\n+$", "")
		end
	end
	local ok, st = pcall(function() return kx.json.encode(s:status()) end)
	out[#out + 1] = "-- status: " .. tostring(st)
	local logs = { "central.log" }
	for name, n in pairs(started) do
		for i = math.max(1, n - 1), n do
			logs[#logs + 1] = ("%s-%d.err"):format(name, i)
			logs[#logs + 1] = ("%s-%d.out"):format(name, i)
		end
	end
	for _, name in ipairs(logs) do
		out[#out + 1] = "-- " .. name .. " (last 30 lines):"
		local lines = {}
		for l in (read(dir .. "/" .. name) or ""):gmatch("[^\n]+") do lines[#lines + 1] = l end
		for i = math.max(1, #lines - 29), #lines do out[#out + 1] = lines[i] end
	end
	error(table.concat(out, "\n"), 0)
end
-- each worker started has its own log files (name-N.out, name-N.err): a
-- restarted one does not write over the one it replaces
local function start_worker(name)
	started[name] = (started[name] or 0) + 1
	local log = ("%s/%s-%d"):format(dir, name, started[name])
	workers[name] = assert(kx.spawn{ KX, "sched", "worker", "--redis", url, "--node", name, "--capacity-units", "2",
		"--parallel", "2", "--cpu-binding", "shared", "--heartbeat", "0.2", "--lease", "1",
		stdout = log .. ".out", stderr = log .. ".err" })
end
local central = assert(kx.spawn{ KX, "sched", "central", "--redis", url, stdout = dir .. "/central.log",
	stderr = dir .. "/central.log" })
start_worker("w1"); start_worker("w2")
s = assert(sched.connect(url))
local by_recorder, mid_run, after_exit = 0, 0, 0
math.randomseed(tonumber(os.getenv("SEED") or "") or math.floor(kx.time() * 1000))
for run = 1, runs do
	local rd = ("%s/r%d"):format(dir, run)
	os.execute("mkdir -p " .. rd)
	local n = 6
	local ids = {}
	for k = 1, n do
		ids[k] = s:submit{ "sh", "-c", ("echo $$ > %s/pid.%d; sleep 0.%02d; echo %d >> %s/done")
			:format(rd, k, math.random(5, 30), k, rd) }
	end
	local victim, mode = math.random(2) == 1 and "w1" or "w2", run % 2 == 0 and "after exit" or "random"
	if mode == "random" then
		kx.sleep(math.random() * 0.4)
	else
		-- the first command to end: note its worker while it runs (task ->
		-- launcher -> worker), then kill that worker the moment it exited
		local target, tpid
		local deadline = kx.now() + 60
		while not target and kx.now() < deadline do
			for k = 1, n do
				local pid = tonumber(read(rd .. "/pid." .. k) or "")
				local l = pid and ppid(pid)
				local w = l and ppid(l)
				if w then
					for name, p in pairs(workers) do if p.pid == w then target, tpid = name, pid end end
				end
				if target then break end
			end
			kx.sleep(0.001)
		end
		if not target then diagnose("run " .. run .. ": no task seen running in 60 s") end
		victim = target
		-- it sleeps 0.05-0.3 s: 20 s is a host that stopped it
		deadline = kx.now() + 20
		local ended
		repeat
			ended = not alive(tpid)
			if not ended then kx.sleep(0.0005) end
		until ended or kx.now() >= deadline
		if not ended then diagnose(("run %d: the command (pid %d) did not end"):format(run, tpid), tpid) end
		after_exit = after_exit + 1
	end
	local p = workers[victim]
	assert(p:kill("KILL"), "run " .. run .. ": kill failed")
	local st = p:wait(10)
	assert(st and st.signal == 9, ("run %d: worker %s was not killed by SIGKILL: %s"):format(run, victim,
		st and (st.code and "exit " .. st.code or "signal " .. tostring(st.signal)) or "still running"))
	start_worker(victim)
	local drain = kx.go(function() return assert(s:drain()) end)
	local dok, recs = drain:wait(60)
	if not dok then diagnose(("run %d (%s, killed %s): drain did not end in 60 s: %s"):format(run, mode, victim,
		tostring(recs))) end
	local seen = {}
	for l in (read(rd .. "/done") or ""):gmatch("[^\n]+") do seen[l] = (seen[l] or 0) + 1 end
	local mine, why = 0, {}
	for _, r in ipairs(recs) do
		for k = 1, n do
			if r.id == ids[k] then
				mine = mine + 1
				why[k] = kx.json.encode(r)
				if r.exit_code ~= 0 then diagnose(("run %d: task %d: %s"):format(run, k, why[k])) end
				if r.recorded_by then by_recorder = by_recorder + 1 end
				if (r.attempts or 0) > 0 then mid_run = mid_run + 1 end
			end
		end
	end
	for k = 1, n do
		if seen[tostring(k)] ~= 1 then
			diagnose(("run %d (%s, killed %s): command %d completed %d times; record %s")
				:format(run, mode, victim, k, seen[tostring(k)] or 0, tostring(why[k])))
		end
	end
	if mine ~= n then diagnose(("run %d: %d records of %d"):format(run, mine, n)) end
end
s:close()
for _, p in pairs(workers) do p:kill("TERM") end
for _, p in pairs(workers) do p:wait(20) end
central:kill("TERM")
central:wait(10)
-- what the killed workers' launchers and recorders removed: no task cgroup
-- of a launcher that is gone
local deadline = kx.now() + 10
local left
repeat
	left = {}
	for _, root in ipairs{ "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuset" } do
		local code, out = kx.exec{ "find", root, "-maxdepth", "1", "-name", "kxrun-sched-*" }
		for d in (code == 0 and out or ""):gmatch("[^\n]+") do
			local pid = d:match("kxrun%-sched%-(%d+)%-")
			if pid and not alive(pid) then left[#left + 1] = d end
		end
	end
	if #left > 0 then kx.sleep(0.1) end
until #left == 0 or kx.now() > deadline
assert(#left == 0, "task cgroups left: " .. table.concat(left, " "))
print(("%d runs: exactly once; %d killed right after a command exited, %d results written by a dead worker's "
	.. "launcher, %d tasks re-run after their worker died mid-run"):format(runs, after_exit, by_recorder, mid_run))
assert(mid_run > 0, "no run killed a worker mid-task: the random kills proved nothing")
LUA
# every process of this test (driver, workers, launchers, zygotes, tasks,
# recorders) carries the mark in its environment: what is left is ours,
# not another test's running beside this one
KXRUN_SCHED_EXACTLY_ONCE=$T timeout 900 "$KXRUN" "$T/driver.lua" "redis://127.0.0.1:$PORT/0" "$T" "$RUNS" || fail "exactly-once driver (see above)"
ours() { grep -lsz "^KXRUN_SCHED_EXACTLY_ONCE=$T\$" /proc/[0-9]*/environ | sed 's|/proc/\([0-9]*\)/environ|\1|'; }
for _ in $(seq 100); do [ -z "$(ours)" ] && break; sleep 0.1; done
left=$(ours)
[ -z "$left" ] || fail "processes of this test still running: $(ps -o pid=,stat=,args= -p "$(echo $left | tr ' ' ,)")"
exit 0
