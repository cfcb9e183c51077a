-- kx.sched.runner: runs one task on a worker's node, bound as the worker
-- says: `exclusive` (a cpuset of its own cores, never shared with another
-- running task) or `shared` (CPU weight cpuweight_per_vcpu x cpu_units).
-- cgroup v1 (cpuset, cpu.shares) where mounted, else cgroup v2 (cpuset.cpus,
-- cpu.weight); without a writable hierarchy the task runs unbound and the
-- worker says so once.
local M = {}

local V1_CPUSET, V1_CPU = "/sys/fs/cgroup/cpuset", "/sys/fs/cgroup/cpu"
local V2 = "/sys/fs/cgroup"

local function read(path)
	local f = io.open(path)
	if not f then return nil end
	local s = f:read("a")
	f:close()
	return s and s:gsub("%s+$", "")
end

local function write(path, value)
	local f, err = io.open(path, "w")
	if not f then return nil, err end
	local ok, werr = f:write(tostring(value))
	local cok, cerr = f:close()
	if not ok or not cok then return nil, werr or cerr end
	return true
end

-- Which hierarchy can bind tasks here: "v1", "v2" or nil and why.
function M.cgroups()
	if M._kind ~= nil then return M._kind or nil, M._why end
	-- writable cgroup.procs: this process may make and fill task cgroups there
	local function writable(root)
		local f = io.open(root .. "/cgroup.procs", "r+")
		if f then f:close() end
		return f ~= nil
	end
	if writable(V1_CPUSET) and writable(V1_CPU) then
		M._kind = "v1"
		return "v1"
	end
	local controllers = read(V2 .. "/cgroup.controllers")
	if controllers and controllers:find("cpuset") and controllers:find("cpu") then
		M._kind = "v2"
		return "v2"
	end
	M._kind, M._why = false, "no writable cgroup v1 cpuset/cpu hierarchy nor a cgroup v2 with cpu and cpuset"
	return nil, M._why
end

-- "0-2,5" -> {0, 1, 2, 5}
function M.parse_cpuset(s)
	local out = {}
	for part in (s or ""):gmatch("[^,%s]+") do
		local a, b = part:match("^(%d+)%-(%d+)$")
		if a then
			for c = tonumber(a), tonumber(b) do out[#out + 1] = c end
		elseif tonumber(part) then
			out[#out + 1] = tonumber(part)
		end
	end
	return out
end

local function cpus_of(path)
	return M.parse_cpuset(read(path))
end

-- The cores a node may hand out: the machine's online CPUs.
function M.online_cores()
	local cores = cpus_of("/sys/devices/system/cpu/online")
	if #cores == 0 then cores = { 0 } end
	return cores
end

-- Makes the cgroups of one task; returns the list of cgroup.procs files the
-- task must join and a clean-up function.
function M.bind(name, binding, cores, weight)
	local kind = M.cgroups()
	if not kind then return {}, function() end end
	local dirs = {}
	local function mk(dir)
		if not os.execute("mkdir -p '" .. dir .. "' 2>/dev/null") then return nil end
		dirs[#dirs + 1] = dir
		return dir
	end
	local cpulist = cores and table.concat(cores, ",") or nil
	if kind == "v1" then
		if binding == "exclusive" and cpulist then
			local d = mk(V1_CPUSET .. "/" .. name)
			if d then
				write(d .. "/cpuset.mems", read(V1_CPUSET .. "/cpuset.mems") or "0")
				write(d .. "/cpuset.cpus", cpulist)
			end
		elseif binding == "shared" then
			local d = mk(V1_CPU .. "/" .. name)
			-- cpu.weight 100 is cpu.shares 1024
			if d then write(d .. "/cpu.shares", math.max(2, math.floor(weight * 1024 / 100))) end
		end
	else
		write(V2 .. "/cgroup.subtree_control", "+cpu +cpuset")
		local d = mk(V2 .. "/" .. name)
		if d then
			if binding == "exclusive" and cpulist then write(d .. "/cpuset.cpus", cpulist) end
			if binding == "shared" then write(d .. "/cpu.weight", math.max(1, math.min(10000, weight))) end
		end
	end
	local procs = {}
	for i, d in ipairs(dirs) do procs[i] = d .. "/cgroup.procs" end
	local function cleanup()
		for _, d in ipairs(dirs) do
			-- whatever the task left behind goes with it
			local pids = read(d .. "/cgroup.procs") or ""
			for pid in pids:gmatch("%d+") do os.execute("kill -9 " .. pid .. " 2>/dev/null") end
			for _ = 1, 50 do
				if os.execute("rmdir '" .. d .. "' 2>/dev/null") then break end
				kx.sleep(0.01)
			end
		end
	end
	return procs, cleanup
end

-- Removes the task cgroups (kxrun-sched-<pid>-...) of workers that are gone:
-- a worker killed with SIGKILL cannot remove its own.  Whatever still runs
-- in them belonged to a dead worker and has been (or will be) re-run by the
-- reaper elsewhere, so it is killed first.  Returns how many were removed.
function M.reap_stale()
	local kind = M.cgroups()
	if not kind then return 0 end
	local roots = kind == "v1" and { V1_CPUSET, V1_CPU } or { V2 }
	local removed = 0
	for _, root in ipairs(roots) do
		local ls = io.popen("ls -1 '" .. root .. "' 2>/dev/null")
		local names = ls and ls:read("a") or ""
		if ls then ls:close() end
		for name in names:gmatch("[^\n]+") do
			local pid = name:match("^kxrun%-sched%-(%d+)%-")
			local alive = pid and io.open("/proc/" .. pid .. "/stat")
			if alive then alive:close() end
			if pid and not alive then
				local d = root .. "/" .. name
				for p in (read(d .. "/cgroup.procs") or ""):gmatch("%d+") do
					os.execute("kill -9 " .. p .. " 2>/dev/null")
				end
				for _ = 1, 50 do
					if os.execute("rmdir '" .. d .. "' 2>/dev/null") then removed = removed + 1 break end
					kx.sleep(0.01)
				end
			end
		end
	end
	return removed
end

local function shell_quote(s)
	return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local has_setpriv = os.execute("command -v setpriv >/dev/null 2>&1")

-- argv run so that it joins its cgroups first (its children inherit them,
-- so nothing of the task escapes the binding) and dies with its worker: a
-- worker killed mid-task must not leave the task running beside its re-run.
-- The shell gets SIGTERM when the worker dies (PR_SET_PDEATHSIG through
-- setpriv) and takes the task's whole process group with it.
function M.wrap(argv, procs)
	local joins = {}
	for _, p in ipairs(procs) do joins[#joins + 1] = "echo $$ > " .. shell_quote(p) .. " && " end
	local out = {}
	if has_setpriv then
		out = { "setpriv", "--pdeathsig", "TERM", "--" }
	end
	for _, a in ipairs{ "sh", "-c", table.concat(joins) ..
		'{ trap "kill -KILL 0" TERM; "$@" & wait $!; }', "kxrun-task" } do
		out[#out + 1] = a
	end
	for _, a in ipairs(argv) do out[#out + 1] = a end
	return out
end

-- Runs task (argv, cpu_units, cpuset, id, trace_id, ts_enqueue) for a worker
-- node (binding, cpuweight_per_vcpu, free cores, trace run, log dir).
-- Returns the record: ts_start, ts_end, exit_code | signal, pid, cpuset.
function M.run(task, node, cores)
	local name = ("kxrun-sched-%s-%s"):format(node.uid, tostring(task.id):gsub("[^%w_-]", "_"))
	local procs, cleanup = M.bind(name, node.binding, cores, (node.cpuweight_per_vcpu or 100) * task.cpu_units)
	local argv = M.wrap(task.argv, procs)
	local rec = { cpuset = cores and table.concat(cores, ",") or nil }
	local log = node.logs and (node.logs .. "/" .. name .. ".log") or "null"
	if node.trace then
		local spec = { table.unpack(argv) }
		spec.trace_id = task.trace_id or tostring(task.id)
		spec.ts_enqueue = task.ts_enqueue and math.floor(task.ts_enqueue)
		spec.stdout, spec.stderr = log, log
		local r, err = node.trace:exec(spec)
		cleanup()
		if not r then rec.error = err; rec.exit_code = 127; return rec end
		rec.pid, rec.ts_start, rec.ts_end = r.pid, r.ts_start, r.ts_end
		rec.exit_code, rec.signal, rec.cpu_ms = r.exit_code, r.signal, r.cpu_ms
		return rec
	end
	local spec = { table.unpack(argv) }
	spec.stdout, spec.stderr, spec.stdin = log, log, "null"
	rec.ts_start = kx.time() * 1000
	local p, err = kx.spawn(spec)
	if not p then
		cleanup()
		rec.error, rec.exit_code, rec.ts_end = err, 127, kx.time() * 1000
		return rec
	end
	rec.pid = p.pid
	local st = p:wait()
	rec.ts_end = kx.time() * 1000
	rec.exit_code, rec.signal = st.code, st.signal
	cleanup()
	return rec
end

return M
