-- kxrun vtime: virtual-time helpers (kx.vtime).
local USAGE = [[
usage: kxrun vtime cleanup
       kxrun vtime run [-s STEP_NS] [-n ROUNDS] [-b BACKEND] -- CMD ARGS...
       kxrun vtime --help

  cleanup   thaw and remove leftover kxrun-vtime-* freezer cgroups of dead
            controllers, kill the dilated processes they left (stopped or
            frozen), remove their /dev/shm/kxrun-vtime-* clock files
  run       run CMD dilated for ROUNDS rounds (default 1000) of STEP_NS virtual
            ns (default 1000000), then print the virtual time and its status

  Not built yet: `kxrun vtime tracer -c CMD -r SPEED` (Kronos's tracer that
  registers with an orchestrator's experiment); see bindings/vtime/README.md.
]]

return function(argv)
	local cmd = argv[1]
	if cmd == nil or cmd == "--help" or cmd == "-h" or cmd == "help" then
		io.write(USAGE)
		return cmd == nil and 2 or 0
	end
	local vtime = require "kx.vtime"
	if cmd == "cleanup" then
		local n, err = vtime.cleanup()
		print(("removed %d cgroup(s)"):format(n))
		if err then io.stderr:write("kxrun vtime cleanup: ", err, "\n") return 1 end
		return 0
	end
	if cmd == "run" then
		local step, rounds, backend, i = 1000000, 1000, "auto", 2
		while argv[i] and argv[i] ~= "--" do
			local o, v = argv[i], argv[i + 1]
			if o == "-s" then step = tonumber(v)
			elseif o == "-n" then rounds = math.tointeger(tonumber(v))
			elseif o == "-b" then backend = v
			else io.stderr:write(USAGE) return 2 end
			i = i + 2
		end
		local prog = table.move(argv, i + 1, #argv, 1, {})
		if #prog == 0 or not step or not rounds then io.stderr:write(USAGE) return 2 end
		local exp, err = vtime.experiment{ step = step, backend = backend }
		if not exp then io.stderr:write("kxrun vtime: ", err, "\n") return 1 end
		local p, perr = exp:spawn(prog)
		if not p then io.stderr:write("kxrun vtime: ", perr, "\n") exp:stop() return 1 end
		exp:freeze()
		while exp.rounds < rounds and p:alive() do exp:advance(1) end
		local st = p:status()
		print(("virtual %d ns after %d rounds (%s): %s"):format(exp:now(), exp.rounds,
			exp.backend, st and (st.code and "exit " .. st.code or "signal " .. st.signal)
			or "still running"))
		exp:stop()
		return st and st.code or 0
	end
	io.stderr:write("kxrun vtime: unknown command '", cmd, "'\n", USAGE)
	return 2
end
