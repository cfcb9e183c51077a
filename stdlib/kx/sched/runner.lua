-- kx.sched.runner: runs the tasks of a worker's node, bound as the worker
-- says: `exclusive` (a cpuset of the node's least-used cores: its own ones
-- while there are enough, clamped and said so in the record when not) or
-- `shared` (CPU weight cpuweight_per_vcpu x cpu_units).  cgroup v1 (cpuset,
-- cpu.shares) where mounted, else cgroup v2 (cpuset.cpus, cpu.weight);
-- without a writable hierarchy tasks run unbound and the worker says so.
--
-- Tasks start through the worker's launcher (kx.sched.launch): no shell,
-- and the task joins a cgroup of a pool made when the worker starts, with
-- one write, before it execs.  The result is handed to record() as soon as
-- the command ends; the cgroup is emptied and the launcher told after.
local launch = require "kx.sched.launch"

local M = {}

local V1_CPUSET, V1_CPU = "/sys/fs/cgroup/cpuset", "/sys/fs/cgroup/cpu"

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
	f:setvbuf("no")
	local ok, werr = f:write(tostring(value))
	local cok, cerr = f:close()
	if not ok or not cok then return nil, ("%s: %s"):format(path, tostring(werr or cerr)) end
	return true
end

-- The cgroup v2 mount point, if any (/sys/fs/cgroup on a v2-only system,
-- /sys/fs/cgroup/unified on a hybrid one).
local function v2_mount()
	for line in (read("/proc/self/mounts") or ""):gmatch("[^\n]+") do
		local dir, fstype = line:match("^%S+ (%S+) (%S+)")
		if fstype == "cgroup2" then return dir end
	end
end

-- Which hierarchy can bind tasks here: "v1" or "v2" and its root (v2), or
-- nil and why.  The answer is the probe's: what is mounted and writable.
function M.cgroups()
	if M._kind ~= nil then return M._kind or nil, M._why end
	local function writable(root)
		local f = io.open(root .. "/cgroup.procs", "r+")
		if f then f:close() end
		return f ~= nil
	end
	if writable(V1_CPUSET) and writable(V1_CPU) then
		M._kind = "v1"
		return "v1"
	end
	local v2 = v2_mount()
	local controllers = v2 and read(v2 .. "/cgroup.controllers") or ""
	if v2 and controllers:find("cpuset") and controllers:find("cpu%f[%s%z]") and writable(v2) then
		M._kind, M._why = "v2", v2
		return "v2", v2
	end
	M._kind, M._why = false, "no writable cgroup v1 cpuset and cpu hierarchies, nor a cgroup v2 ("
		.. (v2 or "not mounted") .. ") with the cpu and cpuset controllers"
	return nil, M._why
end

-- "0-2,5" -> {0, 1, 2, 5}; nil and why for anything else.
function M.parse_cpuset(s)
	local out = {}
	if type(s) ~= "string" or not s:match("^%s*[%d,%-%s]+$") then
		return nil, ("cpuset must be a list like 0-2,5, got %s"):format(tostring(s))
	end
	for part in s:gmatch("[^,%s]+") do
		local a, b = part:match("^(%d+)%-(%d+)$")
		if a then
			a, b = tonumber(a), tonumber(b)
			if a > b then return nil, ("cpuset %s: range %s is backwards"):format(s, part) end
			for c = a, b do out[#out + 1] = c end
		elseif part:match("^%d+$") then
			out[#out + 1] = tonumber(part)
		else
			return nil, ("cpuset must be a list like 0-2,5, got %s"):format(s)
		end
	end
	if #out == 0 then return nil, "cpuset is empty" end
	return out
end

-- {0, 1, 2, 5} -> "0-2,5"
function M.format_cpuset(cores)
	local sorted = { table.unpack(cores) }
	table.sort(sorted)
	local parts, i = {}, 1
	while i <= #sorted do
		local j = i
		while j < #sorted and sorted[j + 1] == sorted[j] + 1 do j = j + 1 end
		parts[#parts + 1] = i == j and tostring(sorted[i]) or sorted[i] .. "-" .. sorted[j]
		i = j + 1
	end
	return table.concat(parts, ",")
end

-- The cores a node may hand out: the machine's online CPUs.
function M.online_cores()
	return M.parse_cpuset(read("/sys/devices/system/cpu/online") or "0") or { 0 }
end

-- ---- the node's cores (exclusive binding) ---------------------------------

local Cores = {}
Cores.__index = Cores

function M.cores(list)
	local use = {}
	for _, c in ipairs(list) do use[c] = 0 end
	return setmetatable({ list = list, use = use }, Cores)
end

-- The `units` least-used cores (their own while there are enough free);
-- with fewer cores than units, or only shared ones, the task is clamped:
-- returns the cores and why it is not what it asked for (nil when it is).
-- Among cores used alike, `busy` (the CPU the worker runs on) comes last:
-- the task's zygote, pinned to the task's cores, starts it there at once
-- instead of waiting for the worker to finish its turn on that CPU
-- (measured: 0.24 ms from request to exec on the other core, 0.6-0.9 ms on
-- the worker's own).
function Cores:take(units, busy)
	local order = { table.unpack(self.list) }
	table.sort(order, function(a, b)
		if self.use[a] ~= self.use[b] then return self.use[a] < self.use[b] end
		if (a == busy) ~= (b == busy) then return b == busy end
		return a < b
	end)
	local got, shared = {}, false
	for i = 1, math.min(units, #order) do
		got[i] = order[i]
		if self.use[order[i]] > 0 then shared = true end
		self.use[order[i]] = self.use[order[i]] + 1
	end
	local why
	if units > #order then
		why = ("clamped: %d units on a node with %d cores"):format(units, #order)
	elseif shared then
		why = ("clamped: %d units, cores shared with other tasks (capacity above the cores)"):format(units)
	end
	return got, why
end

function Cores:give(got)
	for _, c in ipairs(got or {}) do self.use[c] = math.max(0, self.use[c] - 1) end
end

-- Whether every core of `cores` is one of this node's; nil and why if not.
function Cores:holds(cores, spec)
	for _, c in ipairs(cores) do
		if not self.use[c] then
			return nil, ("cpuset %s: core %d is not one of this node's cores (%s)")
				:format(spec, c, M.format_cpuset(self.list))
		end
	end
	return true
end

-- ---- a pool of task cgroups, made ahead -----------------------------------

local Pool = {}
Pool.__index = Pool

local function procs_of(dir, except)
	local pids = {}
	for p in (read(dir .. "/cgroup.procs") or ""):gmatch("%d+") do
		p = tonumber(p)
		if p ~= except then pids[#pids + 1] = p end
	end
	return pids
end

-- A pool for a node: its cgroups are made now (mkdir(2), no shell) and
-- named kxrun-sched-<launcher pid>-<node>-<n>; the launcher removes them
-- when its worker is gone.  nil, why when tasks cannot be bound here.
function M.pool(uid, binding, size, launcher)
	local kind, v2 = M.cgroups()
	if not kind then return nil, v2 end
	local root
	if kind == "v1" then
		root = binding == "exclusive" and V1_CPUSET or V1_CPU
	else
		root = v2
		local ok, err = write(v2 .. "/cgroup.subtree_control", "+cpu +cpuset")
		if not ok then return nil, "cgroup v2: cannot enable cpu and cpuset: " .. err end
	end
	local self = setmetatable({ kind = kind, root = root, binding = binding, prefix = "kxrun-sched-" .. uid,
		free = {}, busy = {}, all = {}, set = {}, dirty = {}, zygote = {}, n = 0, launcher = launcher,
		mems = kind == "v1" and read(V1_CPUSET .. "/cpuset.mems") or nil }, Pool)
	for _ = 1, size do
		local dir, err = self:make()
		if not dir then self:close() return nil, err end
		self.free[#self.free + 1] = dir
	end
	return self
end

function Pool:make()
	self.n = self.n + 1
	local dir = ("%s/%s-%d"):format(self.root, self.prefix, self.n)
	local ok, err, code = launch.mkdir(dir)
	if not ok and code ~= "EEXIST" then return nil, "cannot make a task cgroup: " .. err end
	self.all[#self.all + 1] = dir
	if self.kind == "v1" and self.binding == "exclusive" then
		-- a cpuset takes no process before it has memory nodes and cores
		local wok, werr = write(dir .. "/cpuset.mems", self.mems or "0")
		if not wok then return nil, werr end
		wok, werr = write(dir .. "/cpuset.cpus", read(V1_CPUSET .. "/cpuset.cpus") or "0")
		if not wok then return nil, werr end
	end
	if self.launcher then
		-- the launcher puts a zygote there (tasks are then born in the
		-- cgroup, not moved into it): its pid is the cgroup's one process
		self.launcher:own(dir)
		for _ = 1, 200 do
			local pids = procs_of(dir)
			if #pids > 0 then self.zygote[dir] = pids[1] break end
			kx.sleep(0.005)
		end
	end
	return dir
end

-- Writes the task's binding into dir.
-- (what each dir was last set to is remembered: a write to cpuset.cpus
-- costs the kernel a rebuild of its scheduling domains, so an equal one is
-- skipped)
function Pool:setup(dir, cores, weight)
	local file, value
	if self.binding == "exclusive" and cores then
		file, value = "/cpuset.cpus", M.format_cpuset(cores)
	elseif self.binding == "shared" then
		if self.kind == "v1" then
			-- cpu.weight 100 is cpu.shares 1024
			file, value = "/cpu.shares", math.max(2, math.floor(weight * 1024 / 100))
		else
			file, value = "/cpu.weight", math.max(1, math.min(10000, weight))
		end
	else
		return true
	end
	if self.set[dir] == value then return true end
	self.set[dir] = nil
	local ok, err = write(dir .. file, value)
	if ok then self.set[dir] = value end
	return ok, err
end

-- The value setup(dir, ...) would write, to find a dir already set so.
function Pool:wanted(cores, weight)
	if self.binding == "exclusive" and cores then return M.format_cpuset(cores) end
	if self.binding == "shared" then
		return self.kind == "v1" and math.max(2, math.floor(weight * 1024 / 100)) or math.max(1, math.min(10000, weight))
	end
end

-- A free, empty cgroup set up for the task: its cgroup.procs file and dir.
function Pool:acquire(cores, weight)
	local dir
	-- a free one already set as wanted first; cgroups still holding what
	-- a task left behind wait their turn
	local want, pick = self:wanted(cores, weight), nil
	for i = #self.free, 1, -1 do
		local d = self.free[i]
		if (not pick or self.set[d] == want) and (not self.dirty[d] or #procs_of(d, self.zygote[d]) == 0) then
			self.dirty[d] = nil
			pick = i
			if self.set[d] == want then break end
		end
	end
	if pick then dir = table.remove(self.free, pick) end
	local ok, err
	if dir then
		ok, err = self:setup(dir, cores, weight)
		if not ok and not io.open(dir .. "/cgroup.procs") then
			-- something else removed it (a clean-up that took it for stale)
			kx.log.warn("kx.sched: task cgroup %s was removed by something else; making another", dir)
			self:forget(dir)
			dir = nil
		end
	end
	if not dir then
		dir, err = self:make()
		if not dir then return nil, err end
		ok, err = self:setup(dir, cores, weight)
	end
	if not ok then
		self.free[#self.free + 1] = dir
		return nil, err
	end
	self.busy[dir] = true
	return dir .. "/cgroup.procs", dir
end

-- dir is gone: not to be handed out again, nor any free one gone with it.
function Pool:forget(dir)
	local gone = { [dir] = true }
	for _, d in ipairs(self.free) do
		local f = io.open(d .. "/cgroup.procs")
		if f then f:close() else gone[d] = true end
	end
	for _, list in ipairs{ self.all, self.free } do
		for i = #list, 1, -1 do
			if gone[list[i]] then table.remove(list, i) end
		end
	end
	for d in pairs(gone) do self.busy[d], self.set[d], self.dirty[d], self.zygote[d] = nil, nil, nil, nil end
end

-- Whatever the task left running in its cgroup goes with it.
function Pool:release(dir)
	if not dir or not self.busy[dir] then return end
	self.busy[dir] = nil
	local left = procs_of(dir, self.zygote[dir])
	for _, pid in ipairs(left) do launch.kill(pid, 9) end
	-- what was killed may take a moment to leave: looked at again then
	if #left > 0 then self.dirty[dir] = true end
	self.free[#self.free + 1] = dir
end

-- Empties and removes every cgroup of the pool (the worker is leaving).
function Pool:close()
	for _, dir in ipairs(self.all) do
		for _ = 1, 100 do
			for _, pid in ipairs(procs_of(dir)) do launch.kill(pid, 9) end
			if os.remove(dir) or not io.open(dir .. "/cgroup.procs") then break end
			kx.sleep(0.01)
		end
	end
	self.all, self.free, self.busy = {}, {}, {}
end

-- Removes the task cgroups (kxrun-sched-<launcher pid>-...) whose launcher
-- is gone without removing them (it was killed too).  What still
-- runs there belonged to a dead worker and is killed first.  Returns how
-- many were removed.
function M.reap_stale()
	local kind, v2 = M.cgroups()
	if not kind then return 0 end
	local removed = 0
	for _, root in ipairs(kind == "v1" and { V1_CPUSET, V1_CPU } or { v2 }) do
		local code, out = kx.exec{ "find", root, "-maxdepth", "1", "-name", "kxrun-sched-*", "-type", "d" }
		for d in (code == 0 and out or ""):gmatch("[^\n]+") do
			local pid = d:match("/kxrun%-sched%-(%d+)%-[^/]*$")
			local alive = pid and io.open("/proc/" .. pid .. "/stat")
			if alive then alive:close() end
			if pid and not alive then
				for _ = 1, 100 do
					for _, p in ipairs(procs_of(d)) do launch.kill(p, 9) end
					if os.remove(d) then removed = removed + 1 break end
					kx.sleep(0.01)
				end
			end
		end
	end
	return removed
end

-- ---- running one task -----------------------------------------------------

local STAGE, RUN_ID = os.getenv("STAGE") or "cloud", os.getenv("RUN_ID")

function M.mkdir_p(dir)
	local path = dir:sub(1, 1) == "/" and "" or "."
	for part in dir:gmatch("[^/]+") do
		path = path .. "/" .. part
		launch.mkdir(path)
	end
end

local function shell_quote(s)
	s = tostring(s)
	if s:match("^[%w@%%+=:,./_-]+$") then return s end
	return "'" .. s:gsub("'", "'\"'\"'") .. "'"
end

-- argv as a shell would read it (Tracekit's "EXEC:" line).
function M.shell_join(argv)
	local out = {}
	for i, a in ipairs(argv) do out[i] = shell_quote(a) end
	return table.concat(out, " ")
end

-- For traced tasks, which start through kx.trace's run:exec: a shell joins
-- the cgroup first and dies with the worker.
local has_setpriv = os.execute("command -v setpriv >/dev/null 2>&1")
local function wrap(argv, procs)
	local out = has_setpriv and { "setpriv", "--pdeathsig", "KILL", "--" } or {}
	local join = procs and ("echo $$ > " .. shell_quote(procs) .. " && exec \"$@\"") or 'exec "$@"'
	for _, a in ipairs{ "sh", "-c", join, "kxrun-task" } do out[#out + 1] = a end
	for _, a in ipairs(argv) do out[#out + 1] = a end
	return out
end

-- Runs task (argv, cpu_units, cpuset, id, trace_id, ts_enqueue) on a
-- worker's node {binding, cpuweight_per_vcpu, cores, pool, launcher, trace,
-- logs, tag(task, rec)}.  record(rec) gets the result the moment the
-- command ended (ts_start, ts_end, exit_code | signal, pid, cpuset, cpu_ms,
-- error, clamped); the clean-up comes after it.
function M.run(task, node, record)
	local rec = {}
	local mine, procs, dir
	local function cleanup()
		if node.pool then node.pool:release(dir) end
		if mine then node.cores:give(mine) end
	end
	local function fail(err)
		rec.error, rec.exit_code, rec.ts_end = err, -1, kx.time() * 1000
		rec.ts_start = rec.ts_start or rec.ts_end
		cleanup()
		record(rec)
	end
	-- the cores: the task's own cpuset (only cores of this node), or the
	-- node's least-used ones under exclusive binding
	local bound
	if task.cpuset ~= nil then
		local cores, err = M.parse_cpuset(task.cpuset)
		if cores then err = select(2, node.cores:holds(cores, task.cpuset)) end
		if err then return fail(err) end
		bound = cores
	elseif node.binding == "exclusive" then
		mine, rec.clamped = node.cores:take(task.cpu_units, launch.cpu())
		bound = mine
	end
	rec.cpuset = bound and M.format_cpuset(bound) or nil
	if node.pool and (bound or node.binding == "shared") then
		procs, dir = node.pool:acquire(node.binding == "exclusive" and bound or nil,
			(node.cpuweight_per_vcpu or 100) * task.cpu_units)
		if not procs then
			-- an explicit cpuset the kernel refuses is the task's error
			if task.cpuset ~= nil then return fail("cpuset " .. tostring(task.cpuset) .. ": " .. tostring(dir)) end
			return fail(dir)
		end
		if bound and node.binding ~= "exclusive" then
			-- shared binding with a task's own cpuset: the cpu cgroup gives
			-- the weight; the cores come from the cpuset hierarchy only under
			-- exclusive, so say what was not enforced
			rec.clamped = "cpuset not enforced under shared binding"
			rec.cpuset = nil
		end
	end
	if task.output then
		-- Tracekit's worker makes the output's directory; a re-run starts
		-- from no output (ffmpeg, without -y, would refuse the lost run's)
		local d = tostring(task.output):match("^(.+)/[^/]*$")
		if d then M.mkdir_p(d) end
		if (tonumber(task.attempts) or 0) > 0 then os.remove(task.output) end
	end
	local log = node.logs and ("%s/%s.log"):format(node.logs, tostring(task.id):gsub("[^%w_.-]", "_")) or "null"
	if node.trace then
		local spec = wrap(task.argv, procs)
		spec.trace_id = task.trace_id or tostring(task.id)
		spec.ts_enqueue = task.ts_enqueue and math.floor(task.ts_enqueue)
		spec.stdout, spec.stderr = log, log
		local r, err = node.trace:exec(spec)
		if not r then return fail(err) end
		rec.pid, rec.ts_start, rec.ts_end = r.pid, r.ts_start, r.ts_end
		rec.exit_code, rec.signal, rec.cpu_ms = r.exit_code, r.signal, r.cpu_ms
		record(rec)
		cleanup()
		return
	end
	local spec = { table.unpack(task.argv) }
	spec.cgroup, spec.stdout, spec.stderr, spec.stdin = procs, log, log, "null"
	spec.tag = node.tag and node.tag(task, rec) or nil
	-- what Tracekit's worker puts in its tasks' environment
	spec.env = { NODE_ID = node.id, STAGE = STAGE, RUN_ID = RUN_ID, CPUSET = rec.cpuset,
		TS_ENQUEUE = task.ts_enqueue and ("%d"):format(math.floor(task.ts_enqueue)) or nil }
	local job, err, stage = node.launcher:spawn(spec)
	if not job and stage == "join cgroup" and node.pool then
		-- its cgroup was removed under it (a clean-up that took it for
		-- stale): a new one, once
		kx.log.warn("kx.sched: task cgroup %s was removed by something else; making another", dir)
		node.pool:forget(dir)
		procs, dir = node.pool:acquire(node.binding == "exclusive" and bound or nil,
			(node.cpuweight_per_vcpu or 100) * task.cpu_units)
		if procs then
			spec.cgroup = procs
			job, err = node.launcher:spawn(spec)
		end
	end
	if not job then
		rec.exit_code, rec.error, rec.ts_end = 127, err, kx.time() * 1000
		rec.ts_start = rec.ts_end
		cleanup()
		record(rec)
		return
	end
	rec.pid, rec.ts_start, rec.ts_request = job.pid, job.ts_start, job.ts_request
	if node.jobs then node.jobs[job] = true end
	local st, werr = job:wait()
	if node.jobs then node.jobs[job] = nil end
	if not st then return fail(werr) end
	rec.ts_end, rec.cpu_ms = st.ts_end, st.cpu_ms
	rec.exit_code, rec.signal = st.code, st.signal
	record(rec)
	job:ack()
	cleanup()
end

return M
