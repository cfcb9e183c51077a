-- kxrun vtime: virtual-time helpers (kx.vtime): Kronos's tracer, a quick
-- dilated run, the cleanup of what dead controllers left, the resume cost.
-- The environment of this process, as "K=V" strings.
local function environ()
	local f = io.open("/proc/self/environ", "rb")
	local out = {}
	if f then
		for kv in f:read("a"):gmatch("([^%z]+)") do
			if kv:find("=", 2, true) then out[#out + 1] = kv end
		end
		f:close()
	end
	return out
end

-- A program name without '/' is looked up in our PATH (the controller's
-- may differ); one not found is sent as it is, for the controller to refuse.
local function resolve(prog)
	if prog:find("/", 1, true) then return prog end
	for dir in (os.getenv("PATH") or "/usr/bin:/bin"):gmatch("[^:]+") do
		local f = io.open(dir .. "/" .. prog, "rb")
		if f then
			f:close()
			return dir .. "/" .. prog
		end
	end
	return prog
end

-- Kronos's tracer: registers its command(s) with an orchestrator's
-- experiment and relays their output and status.
local function tracer(o, _, tool)
	local kronos = require "kx.kronos"
	local registry = require "kx.vtime.registry"
	if (o.cmd == nil) == (o.file == nil) then
		return tool:usage("tracer: give one of -c CMD or -f FILE")
	end
	if not (o.speed > 0 and o.speed < math.huge) then
		return tool:usage("tracer: -r REL_SPEED must be a number > 0")
	end
	if o.timeline < 0 then return tool:usage("tracer: -t TIMELINE must be an integer >= 0") end
	if not (o.wait >= 0) then return tool:usage("tracer: -w WAIT_S must be >= 0") end
	local lines = {}
	if o.cmd then
		lines[1] = o.cmd
	else
		local f, err = io.open(o.file)
		if not f then return nil, "tracer: " .. err end
		for line in f:lines() do
			if line:match("%S") and not line:match("^%s*#") then lines[#lines + 1] = line end
		end
		f:close()
		if #lines == 0 then return tool:usage("tracer: " .. o.file .. " holds no command") end
	end
	local cmds = {}
	for k, line in ipairs(lines) do
		local words, err = kronos.splitCommand(line)
		if not words then return tool:usage("tracer: " .. err) end
		if #words == 0 then return tool:usage("tracer: empty command") end
		words[1] = resolve(words[1])
		cmds[k] = words
	end
	local path = o.sock
	if not path then
		local err
		path, err = registry.path()
		if not path then return nil, "tracer: " .. err end
	end
	local st, err = registry.tracer{ path = path, wait = o.wait, id = o.id or "",
		speed = o.speed, timeline = o.timeline, cwd = assert(registry.getcwd()),
		env = environ(), cmds = cmds }
	if not st then return nil, "tracer: " .. err end
	return st.code or 128 + st.signal
end

-- CMD dilated for ROUNDS rounds (or until it ends); prints the virtual time.
local function run(o, prog, tool)
	local vtime = require "kx.vtime"
	if o.step <= 0 then
		return tool:usage(("run: -s STEP_NS must be an integer > 0 (got '%d')"):format(o.step))
	end
	if o.rounds < 1 then
		return tool:usage(("run: -n ROUNDS must be an integer >= 1 (got '%d')"):format(o.rounds))
	end
	local exp, err = vtime.experiment{ step = o.step, backend = o.backend }
	if not exp then return nil, err end
	local p, perr = exp:spawn(prog)
	if not p then exp:stop() return nil, perr end
	exp:freeze()
	-- progress on a terminal (kx.progress: nothing when piped) once the
	-- run has taken a second
	local rounds, t0, shown = o.rounds, kx.now(), false
	local function label(what)
		return ("vtime run: %s%.6f s virtual, %.1f s real, rounds"):format(what or "",
			exp:now() / 1e9, kx.now() - t0)
	end
	while exp.rounds < rounds and p:alive() do
		exp:advance(1)
		if shown or kx.now() - t0 >= 1 then
			shown = true
			kx.progress(label(), exp.rounds, rounds)
		end
	end
	if shown and exp.rounds < rounds then
		kx.progress(label(("the command ended after %d of %d rounds, "):format(exp.rounds, rounds)),
			exp.rounds, exp.rounds)
	end
	local st = p:status()
	print(("virtual %d ns after %d rounds (%s): %s"):format(exp:now(), exp.rounds,
		exp.backend, st and (st.code and "exit " .. st.code or "signal " .. st.signal)
		or "still running"))
	exp:stop()
	return st and st.code or 0
end

return require("kx.cli").tool{
	name = "vtime",
	summary = "Virtual time (kx.vtime): Kronos's tracer, dilated runs, cleanup, calibration.",
	commands = {
		{
			name = "tracer",
			summary = "Kronos's tracer: run commands dilated in an orchestrator's experiment",
			help = [[
Registers its command(s) with the experiment an orchestrator started
(kronos.initializeExp), which runs them as dilated processes; their stdout
and stderr come out here, and the tracer exits with their status (128+N for
signal N; killed by stopExp: 137) once they end or the experiment stops.
Exit 1 when nobody listens, or the experiment refuses (program missing,
duplicate id); 2 on bad usage.]],
			flags = {
				{ "cmd", "c", arg = "CMD", help = "one command line (words split on blanks, '' and \"\" quote, no other shell syntax)" },
				{ "file", "f", arg = "FILE", help = "a file of command lines, one per line (blank lines and # lines skipped), all dilated under this tracer" },
				{ "speed", "r", type = "number", arg = "REL_SPEED", required = true, help = "relative CPU speed, > 0 (2.0: work appears to take half as long in virtual time)" },
				{ "id", "i", arg = "ID", help = "tracer id (default: the next free number)" },
				{ "timeline", "t", type = "integer", arg = "N", default = 0, help = "timeline (passed on to the experiment)" },
				{ "wait", "w", type = "number", arg = "WAIT_S", default = 10, help = "how long to wait for the experiment's socket" },
				{ "sock", "s", arg = "SOCKET", help = "the socket (default $KXRUN_VTIME_SOCK, else /run/kxrun/vtime.sock as root)" },
			},
			run = tracer,
		},
		{
			name = "run",
			args = { "CMD..." },
			summary = "run CMD dilated for ROUNDS rounds, print its virtual time and status",
			help = [[
Runs CMD (after --) dilated for ROUNDS rounds of STEP_NS virtual ns, or
until it ends; prints the virtual time and its status, and exits with its
exit code.  Progress on a terminal once it has taken a second.]],
			flags = {
				{ "step", "s", type = "integer", arg = "STEP_NS", default = 1000000, help = "virtual ns per round" },
				{ "rounds", "n", type = "integer", arg = "ROUNDS", default = 1000, help = "rounds at most" },
				{ "backend", "b", choices = { "auto", "signal", "freezer", "freezer-v1", "freezer-v2", "kmod" }, default = "auto", help = "how processes are frozen" },
			},
			run = run,
		},
		{
			name = "cleanup",
			summary = "end what dead controllers left (processes, kxrun-vtime-* cgroups, clock files)",
			help = [[
A controller (kxrun) killed with SIGKILL has its processes ended by its
supervisor; if that was killed too, this ends them, removes its
kxrun-vtime-* cgroups (v1 and v2) and /dev/shm/kxrun-vtime-* clock files,
one line each, then "removed N cgroup(s)".]],
			run = function()
				local vtime = require "kx.vtime"
				local n, err = vtime.cleanup(function(what, ctl)
					print(("%s (dead controller %d)"):format(what, ctl))
				end)
				print(("removed %d cgroup(s)"):format(n))
				if err then return nil, "cleanup: " .. err end
				return 0
			end,
		},
		{
			name = "calibrate",
			summary = "measure what a resume costs a dilated process here; keep it for this boot",
			help = [[
Measures the CPU a resume costs a dilated process on this machine (~0.1 s:
a spinning child stopped and resumed by its counter, against the same
child run free), prints it and keeps it in the calibration file, which
every kxrun of this boot and CPU model then takes (the first experiment of
a boot without one, or whose value is over 10 minutes old, measures it in
the background).  --show prints the
kept value without measuring.]],
			flags = {
				{ "show", type = "boolean", help = "print the kept value and where it comes from" },
			},
			run = function(o)
				local vtime = require "kx.vtime"
				if o.show then
					local c = vtime.calibration()
					if c.source == "measuring" then
						print(("no value kept for this boot in %s"):format(c.file))
						return 1
					end
					print(("resume cost %.1f us (%s, %s)"):format(c.resume_cost_ns / 1e3,
						c.source, c.file))
					return 0
				end
				local c, err = vtime.calibrate()
				if not c then return nil, "calibrate: " .. err end
				if c.not_kept then
					print(("resume cost %.1f us"):format(c.resume_cost_ns / 1e3))
					return nil, "calibrate: not kept: " .. c.not_kept
				end
				print(("resume cost %.1f us (kept in %s)"):format(c.resume_cost_ns / 1e3, c.file))
				return 0
			end,
		},
		{
			name = "supervise",
			args = { "PID", "FD" },
			summary = "internal: kx.vtime's supervisor of controller PID (pidfd FD)",
			run = function(_, args)
				return require("kx.vtime")._supervise(math.tointeger(tonumber(args[1])),
					math.tointeger(tonumber(args[2])))
			end,
		},
	},
}
