-- kx.rfork against its yardsticks, measured in the same run (issue 16's
-- goals; bindings/rfork/README.md "Figures" says what each timing covers):
--   prepare    prepare time of a 64 MB, 1 GB, 4 GB parent (goal: 4 GB < 50 ms)
--              beside one copy of that memory
--   resume     a whole `kxrun rfork resume` process for a 1 GB parent whose
--              child prints one line and exits (goal: < 5 ms), and the same
--              resume to the child's first Lua statement (the README's
--              recipe), beside a fresh `kxrun -e` printing one line
--   rate       resumes/s with 1, 8, 64 children at once (goal: >= 1,000/s,
--              <= 2 ms of CPU each, the pagers and the holder counted),
--              for a 1 GB parent (children print a line) and a 64 MB parent
--              (children touch 1% of it), beside fresh `kxrun -e` processes;
--              then the same resumes by rfork.spawn from one kxrun (no exec,
--              its own CPU counted) beside the whole processes
--   learn      the fork-function demo (a 1 M-entry table, a child looks one
--              key up): faults per child and resume + answer time, with the
--              holder's learned working set against a holder without it
--   touch      a child reading 1%, 10%, 100% of a 1 GB parent (goal: full
--              touch >= 1 GB/s) beside the same bytes through a plain
--              loopback TCP stream
--   container  a resume into a lean container (PID, mount with a read-only
--              root, net, UTS, IPC namespaces, memory/CPU/pids cgroups)
--              beside a plain one
--   criu       CRIU dump + restore of the 1 GB parent, where CRIU runs
-- Whole processes are started by build/bench/rfork_spawn (fork + exec, no
-- shell), C at once.  Needs root (userfaultfd, cgroups).
--   kxrun bench/rfork.lua [--parts resume,rate] [--reps 7] [--out DIR]
local lab = require "kx.lab"
local exp = lab.experiment{
	name = "rfork",
	about = "kx.rfork: prepare, resume, resumes/s, learned prefetch, full touch, containers",
	params = {
		{ "parts", type = "string", list = true,
			default = "prepare,resume,rate,learn,touch,container,criu", help = "what to measure" },
		{ "sizes", type = "size", list = true, default = "64M,1G,4G", help = "prepare: parent sizes" },
		{ "size", type = "size", default = "1G", help = "resume, rate, touch, criu: the parent's size" },
		{ "small", type = "size", default = "64M", help = "rate: the parent whose children touch 1%" },
		{ "concurrency", type = "int", list = true, default = "1,8,64", help = "rate: children at once" },
		{ "children", type = "int", default = 256, help = "rate: resumes per run" },
		{ "ballast", type = "size", default = "200M",
			help = "rate: 4 KiB Lua strings held by rfork.spawn's caller in its last row" },
		{ "entries", type = "int", default = 1000000, help = "learn: entries of the table" },
		{ "touch", type = "number", list = true, default = "0.01,0.1,1", help = "touch: fractions read" },
	},
	reps = 7, out = false, quiet = true,
}
local P = exp.params
local parts = {}
for _, v in ipairs(P.parts) do parts[v] = true end
local BUILD = os.getenv("BUILD") or "build"
local SPAWN = BUILD .. "/bench/rfork_spawn"
local LIB = (arg[0]:gsub("[^/]*$", "")) .. "lib_rfork.lua"
local MB = 1 << 20
local median = lab.stats.median

local ok, why = pcall(require, "kx.rfork")
if not ok then
	print("rfork: SKIPPED: kx.rfork is not in this build: " .. tostring(why))
	return
end
assert(io.open(SPAWN), SPAWN .. " missing: run make")

local function label(bytes)
	return bytes >= 1 << 30 and ("%gG"):format(bytes / (1 << 30)) or ("%gM"):format(bytes / MB)
end

local function mem_available()
	for line in io.lines("/proc/meminfo") do
		local kb = line:match("^MemAvailable:%s+(%d+)")
		if kb then return tonumber(kb) * 1024 end
	end
	return math.huge
end

local tmp = os.tmpname()
os.remove(tmp)
assert(kx.exec{ "mkdir", "-p", tmp } == 0)
local parents, groups = {}, {}
local function cleanup()
	for p in pairs(parents) do
		p.stdin:close()
		if not p:wait(20) then p:kill("KILL") p:wait(5) end
	end
	for g in pairs(groups) do os.remove(g) end
	kx.exec{ "rm", "-rf", tmp }
end

-- A parent (lib_rfork.lua parent SIZE | table N, [nolearn]): its address,
-- id, key and holder pid; it ends when its stdin is closed.
local function parent(...)
	local argv = { kx.exe, LIB, ... }
	argv.stdin, argv.stdout = "pipe", "pipe"
	local p = assert(kx.spawn(argv))
	parents[p] = true
	local line = p.stdout:read("l")
	assert(line, "lib_rfork.lua " .. table.concat({ ... }, " ") .. ": no address")
	local a, i, k, holder = line:match("^(%S+)%s+(%S+)%s+(%S+)%s+(%S+)")
	return { proc = p, args = { a, i, k }, holder = tonumber(holder) }
end
local function stop(pp)
	pp.proc.stdin:close()
	pp.proc:wait(30)
	parents[pp.proc] = nil
end
local function resume_argv(pp, flags)
	local argv = { kx.exe, "rfork", "resume" }
	for _, f in ipairs(flags or {}) do argv[#argv + 1] = f end
	for _, a in ipairs(pp.args) do argv[#argv + 1] = a end
	return argv
end
-- kx.exec of argv with INPUT on its stdin (and env entries)
local function exec_in(argv, text, env)
	local a = table.move(argv, 1, #argv, 1, {})
	a.input, a.env = text, env
	return kx.exec(a)
end
local function input(text)
	local path = ("%s/in%d"):format(tmp, #text)
	assert(kx.write_file(path, text .. "\n"))
	return path
end

-- CPU of a process (its utime + stime from /proc, ms)
local TICK = 1000 / 100
local function proc_cpu(pid)
	local f = io.open(("/proc/%d/stat"):format(pid))
	if not f then return 0 end
	local s = f:read("a")
	f:close()
	local rest = s:match("%) (.*)$")
	local fields = {}
	for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
	return (tonumber(fields[12]) + tonumber(fields[13])) * TICK
end

-- A runner (cmd: rfork_spawn, or lib_rfork.lua spawn) in a cpuacct cgroup
-- of its own, so that the CPU of everything the runs started (the pagers,
-- which no one waits for) and of the runner itself is counted:
-- {wall_ms = {...}, total_ms, cpu_ms, failed}
local CPUACCT = "/sys/fs/cgroup/cpuacct"
local function in_cpu_group(cmd, env)
	local group = io.open(CPUACCT .. "/cgroup.procs") and
		("%s/kxrun-bench-rfork-%d"):format(CPUACCT, math.random(1 << 30))
	if group and kx.exec{ "mkdir", group } ~= 0 then group = nil end
	local code, out, err
	if group then
		groups[group] = true
		local sh = { "sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', group }
		for _, a in ipairs(cmd) do sh[#sh + 1] = a end
		sh.env = env
		code, out, err = kx.exec(sh)
	else
		cmd.env = env
		code, out, err = kx.exec(cmd)
	end
	assert(code == 0, "rfork_spawn: " .. tostring(err))
	local r = kx.json.decode(out)
	if group then
		-- the pagers end with their children: wait for an empty group
		for _ = 1, 500 do
			local f = io.open(group .. "/cgroup.procs")
			local procs = f:read("a")
			f:close()
			if procs == "" then break end
			kx.sleep(0.01)
		end
		local f = io.open(group .. "/cpuacct.usage")
		r.cpu_ms = tonumber(f:read("a")) / 1e6
		f:close()
		assert(os.remove(group))
		groups[group] = nil
		r.counted = "every process of the runs"
	else
		r.counted = "the processes waited for (not the pagers)"
	end
	return r
end

-- rfork_spawn N C [-i INPUT] ARGV...: N whole processes, C at once
local function spawn_runs(n, c, argv, inpath, env)
	local cmd = { SPAWN, tostring(n), tostring(c) }
	if inpath then cmd[#cmd + 1] = "-i" cmd[#cmd + 1] = inpath end
	for _, a in ipairs(argv) do cmd[#cmd + 1] = a end
	return in_cpu_group(cmd, env)
end

-- N children resumed by rfork.spawn from one kxrun, C at once (its own CPU
-- counted with theirs; without the cgroup: nothing counted)
local function rfork_spawns(n, c, pp, inpath, ballast)
	local cmd = { kx.exe, LIB, "spawn", tostring(n), tostring(c), inpath or "null" }
	for _, a in ipairs(pp.args) do cmd[#cmd + 1] = a end
	cmd[#cmd + 1] = ballast
	local r = in_cpu_group(cmd)
	r.cpu_ms = r.cpu_ms or 0 / 0
	return r
end

local function run(what, fn)
	if not parts[what] then return end
	local okr, err = xpcall(fn, debug.traceback)
	if not okr then
		cleanup()
		error(err, 0)
	end
end

print(("rfork bench: load average %s"):format((io.open("/proc/loadavg"):read("l"))))

-- ---- prepare ----------------------------------------------------------------
run("prepare", function()
	for _, bytes in ipairs(P.sizes) do
		if bytes * 2.5 > mem_available() then
			print(("prepare %s: skipped, %.1f GB available is under 2.5x the working set")
				:format(label(bytes), mem_available() / (1 << 30)))
		else
			local code, out, err = kx.exec{ kx.exe, LIB, "prepare", label(bytes), tostring(P.reps) }
			assert(code == 0, "lib_rfork.lua prepare: " .. tostring(err))
			local r = kx.json.decode(out)
			exp:beside(("prepare %s (max %.2f ms)"):format(label(bytes), math.max(table.unpack(r.prepare_ms))),
				r.prepare_ms, { r.copy_ms }, { unit = "ms", peer = "one copy of it" })
		end
	end
end)

-- ---- resume -------------------------------------------------------------------
local big
local function big_parent()
	big = big or parent("parent", label(P.size))
	return big
end
local BARE = { kx.exe, "-e", "print('hello')" }

run("resume", function()
	local pp = big_parent()
	local ours = spawn_runs(P.reps, 1, resume_argv(pp), nil)
	local bare = spawn_runs(P.reps, 1, BARE, nil)
	assert(ours.failed == 0, "resumes failed")
	exp:beside(("resume %s, whole process"):format(label(P.size)), ours.wall_ms, bare.wall_ms,
		{ unit = "ms", peer = "kxrun -e print" })
	-- the README's recipe: start of the resume to the child's first statement
	local first = {}
	for _ = 1, P.reps do
		local t0 = kx.time()
		local code, out = exec_in(resume_argv(pp), "touch 0\n")
		if code == 0 then first[#first + 1] = (kx.json.decode(out).first - t0) * 1000 end
	end
	local cold = {}
	for _ = 1, math.min(P.reps, 3) do
		local t0 = kx.now()
		assert(kx.exec{ kx.exe, "-e", ("local ws, page = {}, ('k'):rep(4096) for i = 1, %d do "
			.. "ws[i] = page:rep(%d) end print('hello')"):format(P.size // (256 * MB),
				256 * MB // 4096) } == 0)
		cold[#cold + 1] = (kx.now() - t0) * 1000
	end
	exp:beside(("resume %s, to the first statement"):format(label(P.size)), first, cold,
		{ unit = "ms", peer = "cold start rebuilding" })
end)

-- ---- rate ---------------------------------------------------------------------
run("rate", function()
	local small = parent("parent", label(P.small))
	local pp = big_parent()
	local touch = input("touch 0.01")
	for _, c in ipairs(P.concurrency) do
		local n = math.max(P.children, 2 * c)
		for _, w in ipairs{ { pp, nil, label(P.size) .. " print" }, { small, touch, label(P.small) .. " touch 1%" } } do
			local h0 = proc_cpu(w[1].holder)
			local r = spawn_runs(n, c, resume_argv(w[1]), w[2])
			local holder_ms = proc_cpu(w[1].holder) - h0
			local peer = spawn_runs(n, c, BARE, nil)
			assert(r.failed == 0, ("%d of %d resumes failed"):format(r.failed, n))
			local ours_rate, peer_rate = n / r.total_ms * 1000, n / peer.total_ms * 1000
			exp:record{ point = { figure = "rate", parent = w[3], concurrency = c }, system = "kxrun",
				values = { rate = ours_rate, cpu = (r.cpu_ms + holder_ms) / n }, units = { rate = "1/s", cpu = "ms" } }
			print(("rate %-14s x%-3d %7.0f resumes/s  %.2f ms CPU each (%.2f holder)   "
				.. "kxrun -e print %7.0f/s %.2f ms CPU   ratio %.2fx  [CPU: %s + the holder]")
				:format(w[3], c, ours_rate, (r.cpu_ms + holder_ms) / n, holder_ms / n,
					peer_rate, peer.cpu_ms / n, ours_rate / peer_rate, r.counted))
			-- the same resumes by rfork.spawn from one kxrun (no exec), beside
			-- the whole `kxrun rfork resume` processes above
			h0 = proc_cpu(w[1].holder)
			local s = rfork_spawns(n, c, w[1], w[2])
			local sholder_ms = proc_cpu(w[1].holder) - h0
			assert(s.failed == 0, ("%d of %d rfork.spawn resumes failed"):format(s.failed, n))
			local spawn_rate = n / s.total_ms * 1000
			exp:record{ point = { figure = "spawn rate", parent = w[3], concurrency = c },
				system = "kxrun", values = { rate = spawn_rate, cpu = (s.cpu_ms + sholder_ms) / n },
				units = { rate = "1/s", cpu = "ms" } }
			print(("spawn %-13s x%-3d %7.0f resumes/s  %.2f ms CPU each (%.2f holder)   "
				.. "rfork resume   %7.0f/s %.2f ms CPU   ratio %.2fx  [CPU: %s, the "
				.. "calling kxrun included, + the holder]")
				:format(w[3], c, spawn_rate, (s.cpu_ms + sholder_ms) / n, sholder_ms / n,
					ours_rate, (r.cpu_ms + holder_ms) / n, spawn_rate / ours_rate, s.counted))
		end
	end
	-- rfork.spawn from a caller holding BALLAST of small Lua strings (what
	-- a fork would copy: its children come from the zygote), beside an
	-- empty caller, 8 at once, the 1 GiB parent
	local n, c = P.children, 8
	local h0 = proc_cpu(pp.holder)
	local empty = rfork_spawns(n, c, pp, nil)
	local eh = proc_cpu(pp.holder) - h0
	h0 = proc_cpu(pp.holder)
	local full = rfork_spawns(n, c, pp, nil, label(P.ballast))
	local fh = proc_cpu(pp.holder) - h0
	assert(empty.failed == 0 and full.failed == 0, "rfork.spawn resumes failed")
	-- the caller's own building of the ballast is not a resume's
	local built = in_cpu_group{ kx.exe, LIB, "spawn", "0", "1", "null", "-", "-", "-",
		label(P.ballast) }
	local per = (full.cpu_ms - built.cpu_ms + fh) / n
	exp:record{ point = { figure = "spawn, big caller", parent = label(P.size), concurrency = c },
		system = "kxrun", values = { rate = n / full.total_ms * 1000, cpu = per },
		units = { rate = "1/s", cpu = "ms" } }
	print(("spawn %-13s x%-3d %7.0f resumes/s  %.2f ms CPU each, the caller holding %s "
		.. "of 4 KiB strings   empty caller %7.0f/s %.2f ms CPU   ratio %.2fx")
		:format(label(P.size) .. " print", c, n / full.total_ms * 1000, per, label(P.ballast),
			n / empty.total_ms * 1000, (empty.cpu_ms + eh) / n,
			(n / full.total_ms) / (n / empty.total_ms)))
	stop(small)
end)

-- ---- learn --------------------------------------------------------------------
-- faults and time of children looking one key up, after 8 children that
-- trained the holder (its learned set is merged from the first 8)
local function lookups(pp, n)
	local faults, pages, learned = {}, {}, {}
	for i = 1, n do
		local key = "k" .. math.random(P.entries)
		local code, out, err = exec_in(resume_argv(pp), "lookup " .. key .. "\n", { KXRUN_RFORK_STATS = "1" })
		assert(code == 0 and out:match('"value"'), "lookup child: " .. tostring(err))
		if i > 8 then
			faults[#faults + 1] = tonumber(err:match("(%d+) faults"))
			pages[#pages + 1] = tonumber(err:match("(%d+) pages fetched"))
			learned[#learned + 1] = tonumber(err:match("(%d+) pages prefetched")) or 0
		end
	end
	return faults, pages, learned
end
run("learn", function()
	local with = parent("table", tostring(P.entries))
	local without = parent("table", tostring(P.entries), "nolearn")
	local n = 8 + P.reps
	local fw, pw, lw = lookups(with, n)
	local fo, po = lookups(without, n)
	local key = input("lookup k" .. P.entries // 2)
	local tw = spawn_runs(P.reps, 1, resume_argv(with), key)
	local to = spawn_runs(P.reps, 1, resume_argv(without), key)
	exp:beside("learn: faults per lookup child", fw, fo, { unit = "", peer = "not learned" })
	print(("  pages fetched on faults %d vs %d; pages prefetched in one batch %d")
		:format(median(pw), median(po), median(lw)))
	exp:beside("learn: resume + lookup, whole process", tw.wall_ms, to.wall_ms,
		{ unit = "ms", peer = "not learned" })
	stop(with)
	stop(without)
end)

-- ---- touch --------------------------------------------------------------------
-- the peer: the same bytes through one plain loopback TCP stream (python3,
-- 1 MiB sends into recv_into a 1 MiB buffer): the wire's own ceiling here
local STREAM = [[
import socket, sys, threading, time
n = int(sys.argv[1]); buf = bytearray(1 << 20)
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
def send():
    c, _ = srv.accept(); left = n
    while left > 0:
        k = min(left, len(buf)); c.sendall(memoryview(buf)[:k]); left -= k
    c.close()
threading.Thread(target=send).start()
s = socket.create_connection(srv.getsockname()); t0 = time.monotonic(); got = 0
while got < n:
    k = s.recv_into(buf)
    if not k: break
    got += k
print((time.monotonic() - t0) * 1000)
]]
run("touch", function()
	-- a holder without a learned set: the set of earlier children would be
	-- fetched before the child's first statement, outside exec_ms
	local pp = parent("parent", label(P.size), "nolearn")
	for _, f in ipairs(P.touch) do
		local ms, wire = {}, {}
		for _ = 1, math.min(P.reps, f >= 1 and 3 or P.reps) do
			local c2, o2, e2 = exec_in(resume_argv(pp), ("touch %g\n"):format(f))
			assert(c2 == 0, "touch child: " .. tostring(e2))
			ms[#ms + 1] = kx.json.decode(o2).exec_ms
			local c3, o3 = kx.exec{ "python3", "-c", STREAM, ("%d"):format(math.floor(P.size * f)) }
			if c3 == 0 then wire[#wire + 1] = tonumber(o3) end
		end
		local gbs = P.size * f / (median(ms) / 1000) / 1e9
		if #wire > 0 then
			exp:beside(("touch %g%% of %s (%.2f GB/s)"):format(f * 100, label(P.size), gbs), ms, wire,
				{ unit = "ms", peer = "TCP stream, same bytes" })
		else
			print(("touch %g%% of %s: %.2f ms (%.2f GB/s); no peer figure: python3 did not run")
				:format(f * 100, label(P.size), median(ms), gbs))
		end
	end
	stop(pp)
end)

-- ---- container ----------------------------------------------------------------
run("container", function()
	local pp = big_parent()
	local root = tmp .. "/root"
	for _, d in ipairs{ "proc", "dev", "tmp" } do assert(kx.exec{ "mkdir", "-p", root .. "/" .. d } == 0) end
	local flags = { "--rootfs", root, "--pid", "--net", "new", "--hostname", "box",
		"--memory", "256M", "--cpus", "1", "--pids", "64" }
	local plain = spawn_runs(P.reps, 1, resume_argv(pp), nil)
	local boxed = spawn_runs(P.reps, 1, resume_argv(pp, flags), nil)
	assert(boxed.failed == 0, "container resumes failed")
	exp:beside(("resume %s in a lean container"):format(label(P.size)), boxed.wall_ms, plain.wall_ms,
		{ unit = "ms", peer = "plain resume" })
	print(("  the container adds %.2f ms"):format(median(boxed.wall_ms) - median(plain.wall_ms)))
end)

-- ---- criu ---------------------------------------------------------------------
run("criu", function()
	local code, out, err = kx.exec{ "criu", "check" }
	if not code then
		print("criu: no figure: criu is not installed (" .. tostring(out) .. ")")
	elseif code ~= 0 then
		local reasons = {}
		for msg in ((err or "") .. (out or "")):gmatch("Error %b():%s*([^\n]+)") do
			if not msg:match("^exited, status") and #reasons < 2 then reasons[#reasons + 1] = msg end
		end
		print("criu: no figure: `criu check` fails on this kernel: "
			.. (#reasons > 0 and table.concat(reasons, "; ") or ("exit " .. code))
			.. " (in the VM bed: bindings/rfork/README.md)")
	else
		-- dump + restore of a kxrun holding the same state, beside a resume
		local dir = tmp .. "/criu"
		assert(kx.exec{ "mkdir", "-p", dir } == 0)
		local holder = assert(kx.spawn{ kx.exe, "-e", ("local ws, page = {}, ('k'):rep(4096) "
			.. "for i = 1, %d do ws[i] = page:rep(%d) end io.write('READY\\n') io.stdout:flush() "
			.. "kx.sleep(600)"):format(P.size // (256 * MB), 256 * MB // 4096),
			stdout = "pipe", stdin = "null", detach = true })
		holder.stdout:read("l")
		local t0 = kx.now()
		local dc, _, derr = kx.exec{ "criu", "dump", "-t", tostring(holder.pid), "-D", dir, "--shell-job" }
		local dump_ms = (kx.now() - t0) * 1000
		local rc, rerr = 1, derr
		t0 = kx.now()
		if dc == 0 then rc, _, rerr = kx.exec{ "criu", "restore", "-D", dir, "--shell-job", "-d" } end
		local restore_ms = (kx.now() - t0) * 1000
		kx.exec{ "kill", "-KILL", tostring(holder.pid) }
		if rc ~= 0 then
			print("criu: no figure: " .. tostring(rerr):match("[^\n]*Error[^\n]*") or rerr)
		else
			local pp = big_parent()
			local ours = spawn_runs(P.reps, 1, resume_argv(pp), nil)
			exp:beside(("resume %s against CRIU dump + restore"):format(label(P.size)), ours.wall_ms,
				{ dump_ms + restore_ms }, { unit = "ms", peer = "CRIU" })
		end
	end
end)

if big then stop(big) end
cleanup()
exp:finish()
