-- kxrun vtime: virtual-time helpers (kx.vtime).
local USAGE = [[
usage: kxrun vtime tracer (-c "CMD ARGS" | -f FILE) -r REL_SPEED [-i ID]
                          [-t TIMELINE] [-w WAIT_S] [-s SOCKET]
       kxrun vtime run [-s STEP_NS] [-n ROUNDS] [-b BACKEND] -- CMD ARGS...
       kxrun vtime cleanup
       kxrun vtime --help

  tracer    Kronos's tracer: registers its command(s) with the experiment an
            orchestrator started (kronos.initializeExp), which runs them as
            dilated processes; their stdout/stderr come out here, and the
            tracer exits with their status (128+N for signal N; killed by
            stopExp: 137) once they end or the experiment stops.
              -c CMD     one command line (words split on blanks, '' and ""
                         quote, no other shell syntax)
              -f FILE    a file of command lines, one per line (blank lines
                         and lines starting with # skipped), all dilated
                         under this tracer
              -r SPEED   relative CPU speed, > 0 (2.0: work appears to take
                         half as long in virtual time)
              -i ID      tracer id (default: the next free number)
              -t N       timeline (passed on to the experiment)
              -w WAIT_S  how long to wait for the experiment's socket (10)
              -s SOCKET  the socket (default $KXRUN_VTIME_SOCK, else
                         /run/kxrun/vtime.sock as root)
            Exit 1 when nobody listens, or the experiment refuses (program
            missing, duplicate id); 2 on bad usage.
  run       run CMD dilated for ROUNDS rounds (default 1000) of STEP_NS virtual
            ns (default 1000000), then print the virtual time and its status
  cleanup   end what dead controllers (kxrun killed with SIGKILL, and its
            supervisor too) left: their dilated processes, kxrun-vtime-*
            cgroups and /dev/shm/kxrun-vtime-* clock files, one line each
]]

local function usage_error(msg)
	io.stderr:write("kxrun vtime: ", msg, "\n", USAGE)
	return 2
end

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

local function tracer(argv)
	local kronos = require "kx.kronos"
	local registry = require "kx.vtime.registry"
	local o, i = {}, 2
	local flags = { ["-c"] = "cmd", ["-f"] = "file", ["-r"] = "speed", ["-i"] = "id",
		["-t"] = "timeline", ["-w"] = "wait", ["-s"] = "sock" }
	while argv[i] do
		if argv[i] == "-h" or argv[i] == "--help" then io.write(USAGE) return 0 end
		local key = flags[argv[i]]
		if not key then return usage_error("tracer: unknown option '" .. argv[i] .. "'") end
		if argv[i + 1] == nil then return usage_error("tracer: " .. argv[i] .. " needs a value") end
		o[key] = argv[i + 1]
		i = i + 2
	end
	if (o.cmd == nil) == (o.file == nil) then
		return usage_error("tracer: give one of -c CMD or -f FILE")
	end
	local speed = tonumber(o.speed)
	if not speed or speed <= 0 or speed ~= speed or speed == math.huge then
		return usage_error("tracer: -r REL_SPEED must be a number > 0")
	end
	local timeline = math.tointeger(tonumber(o.timeline or 0))
	if not timeline or timeline < 0 then return usage_error("tracer: -t TIMELINE must be an integer >= 0") end
	local wait = tonumber(o.wait or 10)
	if not wait or wait < 0 then return usage_error("tracer: -w WAIT_S must be >= 0") end
	local lines = {}
	if o.cmd then
		lines[1] = o.cmd
	else
		local f, err = io.open(o.file)
		if not f then io.stderr:write("kxrun vtime tracer: ", err, "\n") return 1 end
		for line in f:lines() do
			if line:match("%S") and not line:match("^%s*#") then lines[#lines + 1] = line end
		end
		f:close()
		if #lines == 0 then return usage_error("tracer: " .. o.file .. " holds no command") end
	end
	local cmds = {}
	for k, line in ipairs(lines) do
		local words, err = kronos.splitCommand(line)
		if not words then return usage_error("tracer: " .. err) end
		if #words == 0 then return usage_error("tracer: empty command") end
		words[1] = resolve(words[1])
		cmds[k] = words
	end
	local path = o.sock
	if not path then
		local err
		path, err = registry.path()
		if not path then io.stderr:write("kxrun vtime tracer: ", err, "\n") return 1 end
	end
	local st, err = registry.tracer{ path = path, wait = wait, id = o.id or "",
		speed = speed, timeline = timeline, cwd = assert(registry.getcwd()),
		env = environ(), cmds = cmds }
	if not st then
		io.stderr:write("kxrun vtime tracer: ", err, "\n")
		return 1
	end
	return st.code or 128 + st.signal
end

local BACKENDS = { signal = true, freezer = true, ["freezer-v1"] = true,
	["freezer-v2"] = true, auto = true }

local function run(argv)
	local vtime = require "kx.vtime"
	local step, rounds, backend, i = 1000000, 1000, "auto", 2
	while argv[i] and argv[i] ~= "--" do
		local o, v = argv[i], argv[i + 1]
		if o == "-h" or o == "--help" then io.write(USAGE) return 0 end
		if o ~= "-s" and o ~= "-n" and o ~= "-b" then
			return usage_error("run: unknown option '" .. o .. "'")
		end
		if v == nil then return usage_error("run: " .. o .. " needs a value") end
		if o == "-s" then
			step = math.tointeger(tonumber(v))
			if not step or step <= 0 then
				return usage_error("run: -s STEP_NS must be an integer > 0 (got '" .. v .. "')")
			end
		elseif o == "-n" then
			rounds = math.tointeger(tonumber(v))
			if not rounds or rounds < 1 then
				return usage_error("run: -n ROUNDS must be an integer >= 1 (got '" .. v .. "')")
			end
		else
			backend = v
			if not BACKENDS[v] then
				return usage_error("run: -b BACKEND must be one of signal, freezer, freezer-v1, "
					.. "freezer-v2, auto (got '" .. v .. "')")
			end
		end
		i = i + 2
	end
	local prog = table.move(argv, i + 1, #argv, 1, {})
	if #prog == 0 then return usage_error("run: no command after --") end
	local exp, err = vtime.experiment{ step = step, backend = backend }
	if not exp then io.stderr:write("kxrun vtime: ", err, "\n") return 1 end
	local p, perr = exp:spawn(prog)
	if not p then io.stderr:write("kxrun vtime: ", perr, "\n") exp:stop() return 1 end
	exp:freeze()
	-- progress on a terminal (kx.progress: nothing when piped) once the
	-- run has taken a second
	local t0, shown = kx.now(), false
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

return function(argv)
	local cmd = argv[1]
	if cmd == nil or cmd == "--help" or cmd == "-h" or cmd == "help" then
		io.write(USAGE)
		return cmd == nil and 2 or 0
	end
	if cmd == "tracer" then return tracer(argv) end
	if cmd == "run" then return run(argv) end
	if cmd == "supervise" then -- internal: started by kx.vtime (README)
		local ok, err = require("kx.vtime")._supervise(math.tointeger(tonumber(argv[2])),
			math.tointeger(tonumber(argv[3])))
		if not ok then io.stderr:write("kxrun vtime supervise: ", err, "\n") return 1 end
		return 0
	end
	if cmd == "cleanup" then
		local vtime = require "kx.vtime"
		local n, err = vtime.cleanup(function(what, ctl)
			print(("%s (dead controller %d)"):format(what, ctl))
		end)
		print(("removed %d cgroup(s)"):format(n))
		if err then io.stderr:write("kxrun vtime cleanup: ", err, "\n") return 1 end
		return 0
	end
	return usage_error("unknown command '" .. cmd .. "'")
end
