-- kxrun opendc export --input DIR --output OUT
-- kxrun opendc verify --input OUT
-- The OpenDC exporter and verifier of kx.opendc on the command line (the
-- same work as `kxrun trace export|verify`).
local opendc = require "kx.opendc"

local usage = [[
usage: kxrun opendc export --input DIR --output OUT
       kxrun opendc verify --input OUT

export  reads DIR/CTS/ (or DIR/<node>/CTS/ for several nodes) and writes
        OUT/tasks.parquet, OUT/fragments.parquet, OUT/topology.json and
        OUT/ids.json (task id -> trace_id), all or nothing
verify  reads OUT back and checks it the way OpenDC loads it; exits 1
        naming the first problem
]]

local function parse(argv)
	local o = { cmd = argv[1] }
	local i = 2
	while i <= #argv do
		local a = argv[i]
		if a == "--help" or a == "-h" then
			o.help = true
		elseif a == "--input" or a == "--output" then
			local v = argv[i + 1]
			if not v then return nil, a .. " needs a value" end
			o[a:sub(3)] = v
			i = i + 1
		else
			return nil, "unknown argument: " .. a
		end
		i = i + 1
	end
	return o
end

return function(argv)
	if argv[1] == nil or argv[1] == "--help" or argv[1] == "-h" then
		io.stdout:write(usage)
		return argv[1] == nil and 2 or 0
	end
	local o, err = parse(argv)
	if not o then
		io.stderr:write("kxrun opendc: ", err, "\n", usage)
		return 2
	end
	if o.help then
		io.stdout:write(usage)
		return 0
	end
	if o.cmd == "export" then
		if not o.input or not o.output then
			io.stderr:write("kxrun opendc export: --input and --output are required\n")
			return 2
		end
		local s, e = opendc.export(o.input, o.output)
		if not s then
			io.stderr:write("kxrun opendc export: ", e, "\n")
			return 1
		end
		print(string.format("exported %d tasks, %d fragments from %d nodes " ..
			"(%d samples, %d attributed) to %s",
			s.tasks, s.fragments, s.nodes, s.samples, s.samples_used, o.output))
		return 0
	elseif o.cmd == "verify" then
		if not o.input then
			io.stderr:write("kxrun opendc verify: --input is required\n")
			return 2
		end
		local v, e = opendc.verify(o.input)
		if not v then
			io.stderr:write("kxrun opendc verify: ", e, "\n")
			return 1
		end
		print(string.format("ok: %d tasks, %d fragments", v.tasks, v.fragments))
		return 0
	end
	io.stderr:write("kxrun opendc: unknown command: ", tostring(o.cmd), "\n", usage)
	return 2
end
