-- kxrun rfork: resume a child of a prepared parent (kx.rfork).
local USAGE = [[
usage: kxrun rfork resume ADDRESS ID KEY
       kxrun rfork --help

  resume   become a child of the parent that called rfork.prepare{} and
           printed ADDRESS (HOST:PORT), ID and KEY (its handle's address,
           id and key): this process is replaced by the parent's Lua state
           as it was at prepare, and prepare returns there again with
           h.child == true.  Pages of the parent's memory are fetched on
           first touch (userfaultfd: root, or vm.unprivileged_userfaultfd=1).
           Exits 1 with a message when the parent cannot be resumed here.

  Environment: KXRUN_RFORK_TIMEOUT_MS (each request to the parent, 10000),
  KXRUN_RFORK_READAHEAD (pages per fault, 16).
]]

return function(argv)
	local cmd = argv[1]
	if cmd == nil or cmd == "--help" or cmd == "-h" or cmd == "help" then
		io.write(USAGE)
		return cmd == nil and 2 or 0
	end
	if cmd == "resume" then
		if #argv ~= 4 then io.stderr:write(USAGE) return 2 end
		local rfork = require "kx.rfork"
		local _, err = rfork.resume{ address = argv[2], id = argv[3], key = argv[4] }
		io.stderr:write("kxrun rfork: ", err, "\n")
		return 1
	end
	io.stderr:write("kxrun rfork: unknown command '", cmd, "'\n", USAGE)
	return 2
end
