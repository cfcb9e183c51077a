-- kx.kronos: Kronos's orchestrator API over kx.vtime (docs/MANUAL.md, §5).
--
--   local kronos = require "kx.kronos"
--   if kronos.initializeExp(2) < 0 then os.exit(1) end -- listens for 2 tracers
--   -- elsewhere: kxrun vtime tracer -c "./server -p 9000" -r 1.0 -i 1
--   --            kxrun vtime tracer -c "./client" -r 1.0 -i 2
--   while kronos.synchronizeAndFreeze() <= 0 do end -- waits for both, freezes
--   kronos.progressBy(1000000, 100)       -- 100 rounds of 1 ms virtual
--   print(kronos.getCurrentVirtualTime())
--   kronos.stopExp()                      -- kills the commands, ends tracers
--
-- Return values are Kronos's: 1 on success; initializeExp, progressBy and
-- stopExp give -1 on failure, synchronizeAndFreeze 0 when the tracers did
-- not all register in time and -1 when the experiment went away; the
-- message is the second value.  Bad arguments and calls out of order
-- (progressBy before initializeExp) raise.
--
-- Tracers (`kxrun vtime tracer`, separate processes) register over a Unix
-- socket (kx.vtime.registry; its path: KXRUN_VTIME_SOCK, else
-- /run/kxrun/vtime.sock for root); the commands run as this process's
-- dilated children, their output goes back through the tracer, and each
-- tracer exits with its commands' status.  startTracer (an addition) starts
-- a tracer's commands from the orchestrator itself, without a process.
-- See bindings/vtime/TRACER.md.
local vtime = require "kx.vtime"
local registry = require "kx.vtime.registry"

local M = {}

-- Raises as luaL_argerror does, naming the function and the argument.
local function argerror(fname, i, msg)
	error(("bad argument #%d to '%s' (%s)"):format(i, fname, msg), 3)
end
-- The running experiment: exp, expected, tracers[id] = {id=, procs={},
-- conn=, tracer_pid=, status=}, bypid[pid] = proc, server, timer, joined.
local S = nil

-- Splits a command line into words: blanks separate, '...' and "..." quote,
-- a backslash escapes the next character (no expansion of any kind).
function M.splitCommand(s)
	local words, cur, i, quote, have = {}, {}, 1, nil, false
	while i <= #s do
		local c = s:sub(i, i)
		if quote then
			if c == quote then quote = nil
			elseif c == "\\" and quote == '"' and i < #s then i = i + 1; cur[#cur + 1] = s:sub(i, i)
			else cur[#cur + 1] = c end
		elseif c == "'" or c == '"' then quote, have = c, true
		elseif c == "\\" and i < #s then i = i + 1; cur[#cur + 1] = s:sub(i, i); have = true
		elseif c:match("%s") then
			if have or #cur > 0 then words[#words + 1] = table.concat(cur) end
			cur, have = {}, false
		else cur[#cur + 1] = c; have = true end
		i = i + 1
	end
	if quote then return nil, "unterminated quote in: " .. s end
	if have or #cur > 0 then words[#words + 1] = table.concat(cur) end
	return words
end

local function tracer_key(id)
	return math.tointeger(tonumber(id)) or id
end

local function next_free_id()
	local n = 1
	while S.tracers[n] do n = n + 1 end
	return n
end

-- One status for a tracer's commands: the first killed one's signal, else
-- the first non-zero code, else 0; commands still running when the
-- experiment stops count as killed (SIGKILL).
local function tracer_status(t)
	local code = 0
	for _, p in ipairs(t.procs) do
		local st = p:status() or { signal = 9 }
		if st.signal then return { signal = st.signal } end
		if code == 0 and st.code ~= 0 then code = st.code end
	end
	return { code = code }
end

-- The tracer's environment on top of ours, without what belongs to this
-- experiment; its LD_PRELOAD is kept after the clock library.
local function tracer_env(env)
	local out = {}
	for k, v in pairs(env or {}) do
		if not k:match("^KXRUN_VTIME_") then out[k] = v end
	end
	if out.LD_PRELOAD then
		out.LD_PRELOAD = kx.libdir() .. "/libkxvtime.so:" .. out.LD_PRELOAD
	end
	return out
end

-- Spawns argv lists as tracer id's dilated processes; on a failure the ones
-- already started are killed.  The tracer record, or nil, message.
local function start(id, cmds, o)
	if S.tracers[id] then
		return nil, ("tracer id %s is already registered"):format(tostring(id))
	end
	local t = { id = id, procs = {} }
	for _, argv in ipairs(cmds) do
		local p, err = S.exp:spawn(argv, { speed = o.speed or 1.0, timeline = o.timeline,
			env = o.env, stdout = o.stdout, stderr = o.stderr })
		if not p then
			for _, q in ipairs(t.procs) do registry.killgroup(q.pid) end
			return nil, err
		end
		t.procs[#t.procs + 1] = p
	end
	S.tracers[id] = t
	for _, p in ipairs(t.procs) do S.bypid[p.pid] = p end
	S.joined:notify()
	return t
end

local function on_register(s, ev)
	if s ~= S then return end
	local id = ev.id ~= "" and tracer_key(ev.id) or next_free_id()
	local prev, cerr = registry.chdir(ev.cwd)
	if not prev then
		s.server:refuse(ev.conn, "working directory " .. cerr)
		return
	end
	local ok, t, err = pcall(start, id, ev.cmds, { speed = ev.speed, timeline = ev.timeline,
		env = tracer_env(ev.env), stdout = ev.stdout, stderr = ev.stderr })
	registry.chdir(prev)
	if not ok or not t then
		s.server:refuse(ev.conn, tostring(ok and err or t))
		return
	end
	t.conn, t.tracer_pid = ev.conn, ev.pid
	local pids = {}
	for i, p in ipairs(t.procs) do pids[i] = p.pid end
	s.server:accept(ev.conn, pids)
end

local function on_hangup(s, ev)
	for _, t in pairs(s.tracers) do
		if t.conn == ev.conn then
			t.conn = nil
			for _, p in ipairs(t.procs) do
				if p:alive() then registry.killgroup(p.pid) end
			end
		end
	end
end

-- Tells each tracer whose commands have all ended their status.
local function report_exits(s)
	for _, t in pairs(s.tracers) do
		if t.conn then
			local running = false
			for _, p in ipairs(t.procs) do running = running or p:alive() end
			if not running then
				t.status = tracer_status(t)
				s.server:finish(t.conn, t.status)
				t.conn = nil
			end
		end
	end
end

-- opts: step (virtual ns per round, 1e6), backend ("auto"), slice (real s
-- per round), sock (socket path), listen (false: no socket, startTracer only).
function M.initializeExp(n, opts)
	assert(not S, "initializeExp: an experiment is already running (stopExp first)")
	local k = math.tointeger(n)
	if not k or k < 0 then
		argerror("initializeExp", 1, ("number of tracers must be an integer >= 0 (got %s)")
			:format(tostring(n)))
	end
	n = k
	if opts ~= nil and type(opts) ~= "table" then
		argerror("initializeExp", 2, "table expected, got " .. type(opts))
	end
	opts = opts or {}
	local e, err = vtime.experiment{ step = opts.step or 1000000,
		backend = opts.backend or "auto", slice = opts.slice }
	if not e then return -1, err end
	local s = { exp = e, expected = n, tracers = {}, bypid = {}, joined = kx.event() }
	if opts.listen ~= false then
		local path, srv, lerr = opts.sock, nil, nil
		if not path then path, lerr = registry.path() end
		if path then
			srv, lerr = registry.listen(path, function(ev)
				if ev.kind == "register" then on_register(s, ev) else on_hangup(s, ev) end
			end)
		end
		if not srv then
			e:stop()
			return -1, "initializeExp: " .. lerr
		end
		s.server = srv
		s.timer = kx.every(0.01, function() if S == s then report_exits(s) end end)
	end
	S = s
	return 1
end

-- Starts cmd (a string, split as a shell would without expansions, or an
-- argv table) in this process as tracer t.id: {cmd=, id=, speed=,
-- timeline=, env=, stdout=, stderr=}.  The first process, or nil, message.
function M.startTracer(t)
	assert(S, "startTracer: call initializeExp first")
	local argv = t.cmd
	if type(argv) == "string" then
		local err
		argv, err = M.splitCommand(argv)
		if not argv then return nil, err end
	end
	local tr, err = start(t.id and tracer_key(t.id) or next_free_id(), { argv }, t)
	if not tr then return nil, err end
	return tr.procs[1]
end

-- Waits until the expected number of tracers registered, then freezes.
-- timeout: seconds (a number or {timeout=}), default 60.
function M.synchronizeAndFreeze(timeout)
	assert(S, "synchronizeAndFreeze: call initializeExp first")
	if type(timeout) == "table" then timeout = timeout.timeout end
	timeout = timeout or 60
	if type(timeout) ~= "number" or timeout ~= timeout or timeout < 0 then
		argerror("synchronizeAndFreeze", 1, ("timeout must be a number of seconds >= 0 (got %s)")
			:format(tostring(timeout)))
	end
	local s, deadline = S, kx.now() + timeout
	local function count()
		local k = 0
		for _ in pairs(s.tracers) do k = k + 1 end
		return k
	end
	while count() < s.expected do
		local left = deadline - kx.now()
		if left <= 0 or not s.joined:wait(left) or S ~= s then
			if S ~= s then return -1, "synchronizeAndFreeze: the experiment was stopped" end
			return 0, ("synchronizeAndFreeze: %d of %d tracers registered after %g s")
				:format(count(), s.expected, timeout)
		end
	end
	s.exp:freeze()
	return 1
end

-- Kronos: rounds of duration_ns each.  The experiment's step was fixed at
-- initializeExp; another duration runs the equivalent virtual time in
-- rounds of the experiment's step.  1 and the virtual time, or -1 and a
-- message (the experiment was stopped meanwhile).
function M.progressBy(duration_ns, rounds)
	assert(S, "progressBy: call initializeExp first")
	local d, r = math.tointeger(duration_ns), math.tointeger(rounds or 1)
	if not d or d <= 0 then
		argerror("progressBy", 1, ("duration must be an integer > 0 ns (got %s)")
			:format(tostring(duration_ns)))
	end
	if not r or r < 0 then
		argerror("progressBy", 2, ("rounds must be an integer >= 0 (got %s)"):format(tostring(rounds)))
	end
	local s = S
	local now, err = s.exp:run_until(s.exp:now() + d * r)
	if not now then return -1, "progressBy: " .. tostring(err) end
	report_exits(s)
	return 1, now
end

function M.getCurrentVirtualTime()
	return S and S.exp:now() or 0
end

-- The kx.vtime experiment under the running one (an addition: its stats,
-- kx.lab's exp:vtime), or nil.
function M.experiment()
	return S and S.exp or nil
end

-- pid: a dilated process, or a tracer process (its first command's clock).
function M.getCurrentTimePid(pid)
	if not S then return nil end
	local p = S.bypid[pid]
	if not p then
		for _, t in pairs(S.tracers) do
			if t.tracer_pid == pid then p = t.procs[1] end
		end
	end
	return p and p:now() or nil
end

function M.getCurrentTimeTracer(id)
	local t = S and S.tracers[tracer_key(id)]
	return t and t.procs[1]:now() or nil
end

-- The tracers known now: {id=, pids={...}, tracer_pid=, status=} each
-- (status: what the tracer was told once its commands ended).
function M.tracers()
	local out = {}
	for id, t in pairs(S and S.tracers or {}) do
		local pids = {}
		for i, p in ipairs(t.procs) do pids[i] = p.pid end
		out[#out + 1] = { id = id, pids = pids, tracer_pid = t.tracer_pid, status = t.status }
	end
	table.sort(out, function(a, b) return tostring(a.id) < tostring(b.id) end)
	return out
end

-- Kills every dilated process, tells every tracer (which then exits with
-- its commands' status), closes the socket.  Twice is harmless.
function M.stopExp()
	local s = S
	if not s then return 1 end
	S = nil
	s.exp:stop()
	if s.server then
		for _, t in pairs(s.tracers) do
			if t.conn then
				t.status = tracer_status(t)
				s.server:finish(t.conn, t.status)
				t.conn = nil
			end
		end
		s.timer:stop()
		s.server:close()
	end
	s.joined:notify()
	return 1
end

return M
