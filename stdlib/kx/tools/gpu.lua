-- kxrun gpu: time-limited GPU memory partitions (Chronos's command line).
-- Output follows the Chronos user guide; failures print the message on
-- stderr and exit 1.  Only `stats` and `devices` start OpenCL.
local gpu = require "kx.gpu"

local USAGE = [[
Usage: kxrun gpu <command> [arguments]

Commands:
  create <device> <memory> <duration> [--user <user>]
                       Create a partition: <memory> is a fraction of the
                       device (0 < memory <= 1), <duration> in seconds.
                       --user creates it for another user (root only).
  list                 List active partitions.
  release [--force] [--grace <seconds>] <id>
                       Release a partition early (owner or root).  While
                       programs run in it, it is refused (they are named);
                       --force ends them: SIGTERM, then SIGKILL after the
                       grace (5 s).
  stats                Show every device with the memory partitions hold.
  available <device>   Print the percentage of the device still free.
  devices              Probe OpenCL and list its devices.
  run <id> [--grace <seconds>] -- <command> [args...]
                       Run a command in a partition: its device allocations
                       are limited to the partition's memory; at expiry it
                       gets SIGTERM, then SIGKILL after the grace (5 s).
  serve                Own the ledger for several users (root): the ledger
                       becomes root's (0600) and users' commands go through
                       a unix socket that identifies them by SO_PEERCRED.
  help                 Show this help.

Examples:
  kxrun gpu create 0 0.5 3600          # 50% of device 0 for one hour
  kxrun gpu create 0 0.3 28800 --user alice
  kxrun gpu available 0                # prints e.g. 75.00
  kxrun gpu run partition_0001 -- ./train

State: $KXRUN_STATE_DIR/gpu (default /var/lib/kxrun/gpu).
]]

local function fail(msg)
	io.stderr:write(msg, "\n")
	return 1
end

-- ppm as a percentage: "50", "12.5", "0.0001"
local function percent(ppm)
	local whole, frac = ppm // 10000, ppm % 10000
	if frac == 0 then return tostring(whole) end
	return (string.format("%d.%04d", whole, frac):gsub("0+$", ""))
end

local function two_decimals(ppm)
	return string.format("%d.%02d", ppm // 10000, ppm % 10000 // 100)
end

local function mb(bytes) return bytes // (1024 * 1024) end

local function device_index(s)
	local d = s and s:match("^%d+$") and tonumber(s)
	return d
end

local commands = {}

function commands.create(args)
	local pos, user = {}, nil
	local i = 1
	while i <= #args do
		local a = args[i]
		if a == "--user" then
			user = args[i + 1]
			if not user then return fail("--user needs a user name") end
			i = i + 2
		elseif a:match("^%-%-user=") then
			user = a:sub(8)
			i = i + 1
		else
			pos[#pos + 1] = a
			i = i + 1
		end
	end
	if #pos ~= 3 then
		return fail("Usage: kxrun gpu create <device> <memory> <duration> [--user <user>]")
	end
	local dev = device_index(pos[1])
	if not dev then return fail("Invalid device index: " .. pos[1]) end
	local p, err = gpu.create{ device = dev, memory = pos[2], duration = pos[3], user = user }
	if not p then return fail(err) end
	local seconds = math.floor(p.expires - p.created + 0.5)
	io.stdout:write(string.format(
		"Created partition %s on device %d (%s) with %d MB for %s seconds\n",
		p.id, p.device, p.device_name, mb(p.bytes),
		seconds >= 1 and tostring(seconds) or pos[3]))
	io.stdout:write(string.format("Assigned to user: %s (Created by: %s, PID: %d)\n",
		p.owner, p.creator, p.pid))
end

function commands.list(args)
	if #args > 0 then return fail("Usage: kxrun gpu list") end
	local parts, err = gpu.list()
	if not parts then return fail(err) end
	local out = { "Active partitions:", "-----------------" }
	if #parts == 0 then out[#out + 1] = "No active partitions" end
	for _, p in ipairs(parts) do
		out[#out + 1] = "ID: " .. p.id
		out[#out + 1] = string.format("  Device: %d (%s)", p.device, p.device_name or "?")
		out[#out + 1] = string.format("  Memory: %s%% (%d MB)", percent(p.ppm), mb(p.bytes))
		out[#out + 1] = string.format("  Time remaining: %d seconds%s", math.floor(p.remaining),
			p.ending and " (ending: its programs are being stopped)" or "")
		out[#out + 1] = string.format("  Owner: %s (PID: %d)", p.owner, p.pid)
		local used = gpu.usage(p.id)
		if used and used > 0 then
			out[#out + 1] = string.format("  Memory usage: %d MB of %d MB", mb(used), mb(p.bytes))
		end
	end
	io.stdout:write(table.concat(out, "\n"), "\n")
end

function commands.release(args)
	local usage = "Usage: kxrun gpu release [--force] [--grace <seconds>] <partition_id>"
	local id, opts = nil, {}
	local i = 1
	while i <= #args do
		local a = args[i]
		if a == "--force" then
			opts.force = true
		elseif a == "--grace" then
			opts.grace = tonumber(args[i + 1] or "")
			if not opts.grace or opts.grace < 0 then return fail("--grace needs seconds (>= 0)") end
			i = i + 1
		elseif id or a:sub(1, 1) == "-" then
			return fail(usage)
		else
			id = a
		end
		i = i + 1
	end
	if not id then return fail(usage) end
	local ok, err = gpu.release(id, opts)
	if not ok then
		if err:match("running in it") then err = err .. " (--force)" end
		return fail(err)
	end
	io.stdout:write("Released partition ", id, "\n")
end

function commands.available(args)
	if #args ~= 1 then return fail("Usage: kxrun gpu available <device>") end
	local dev = device_index(args[1])
	if not dev then return fail("Invalid device index: " .. args[1]) end
	local pct, ppm = gpu.available(dev)
	if not pct then return fail(ppm) end
	io.stdout:write(two_decimals(ppm), "\n")
end

function commands.stats(args)
	if #args > 0 then return fail("Usage: kxrun gpu stats") end
	local devs, warn = gpu.stats()
	if not devs then return fail(warn) end
	if warn then io.stderr:write("warning: device facts as last probed: ", warn, "\n") end
	local out = { "Device statistics:", "=================" }
	for _, d in ipairs(devs) do
		out[#out + 1] = string.format("Device %d: %s", d.index, d.name)
		out[#out + 1] = "  Type: " .. d.type
		out[#out + 1] = "  Vendor: " .. d.vendor
		out[#out + 1] = "  OpenCL version: " .. d.version
		out[#out + 1] = "  Memory:"
		out[#out + 1] = string.format("    Total: %d MB", mb(d.memory))
		out[#out + 1] = string.format("    Used: %d MB", mb(d.used))
		out[#out + 1] = string.format("    Available: %d MB", mb(d.available))
		out[#out + 1] = string.format("    Usage: %s%%", two_decimals(d.used_ppm))
		out[#out + 1] = "  Chronos management:"
		out[#out + 1] = string.format("    Active partitions: %d", d.partitions)
	end
	io.stdout:write(table.concat(out, "\n"), "\n")
end

function commands.devices(args)
	if #args > 0 then return fail("Usage: kxrun gpu devices") end
	local devs, err = gpu.devices()
	if not devs then return fail(err) end
	local out = {}
	for _, d in ipairs(devs) do
		out[#out + 1] = string.format("Device %d: %s", d.index, d.name)
		out[#out + 1] = "  Type: " .. d.type
		out[#out + 1] = "  Vendor: " .. d.vendor
		out[#out + 1] = "  OpenCL version: " .. d.version
		out[#out + 1] = "  Platform: " .. d.platform
		out[#out + 1] = string.format("  Memory: %d MB", mb(d.memory))
	end
	if #out > 0 then io.stdout:write(table.concat(out, "\n"), "\n") end
end

function commands.run(args)
	local id, grace, cmd = nil, nil, {}
	local i = 1
	while i <= #args do
		local a = args[i]
		if a == "--" then
			table.move(args, i + 1, #args, 1, cmd)
			break
		elseif a == "--grace" then
			grace = tonumber(args[i + 1] or "")
			if not grace or grace < 0 then return fail("--grace needs seconds (>= 0)") end
			i = i + 2
		elseif not id then
			id = a
			i = i + 1
		else
			return fail("Usage: kxrun gpu run <id> [--grace <seconds>] -- <command> [args...]")
		end
	end
	if not id or #cmd == 0 then
		return fail("Usage: kxrun gpu run <id> [--grace <seconds>] -- <command> [args...]")
	end
	local p, err = gpu.open(id)
	if not p then return fail(err) end
	cmd.grace = grace
	local st, rerr = p:exec(cmd)
	if not st then return fail(rerr) end
	if st.expired then
		io.stderr:write("Partition ", id, " expired: the command was stopped\n")
	elseif st.signal and not gpu.open(id) then
		io.stderr:write("Partition ", id, " was released: the command was stopped\n")
	end
	if st.signal then return 128 + st.signal end
	return st.code
end

function commands.serve(args)
	if #args > 0 then return fail("Usage: kxrun gpu serve") end
	io.stderr:write("kxrun gpu serve: ledger ", gpu.state_dir(), "\n")
	local ok, err = gpu.serve()
	if not ok then return fail(err) end
end

function commands.help()
	io.stdout:write(USAGE)
end

return function(argv)
	local cmd = argv[1]
	if cmd == nil then
		io.stderr:write(USAGE)
		return 1
	end
	if cmd == "--help" or cmd == "-h" then cmd = "help" end
	local f = commands[cmd]
	if not f then
		return fail("Unknown command: " .. cmd .. " (kxrun gpu help lists them)")
	end
	local args = table.move(argv, 2, #argv, 1, {})
	for _, a in ipairs(args) do
		if a == "--help" or a == "-h" then
			io.stdout:write(USAGE)
			return 0
		end
		if a == "--" then break end
	end
	return f(args) or 0
end
