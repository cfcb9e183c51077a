-- kxrun gpu (also a link named `chronos`): time-limited GPU memory
-- partitions, with Chronos's command line.  Flags and arguments go through
-- kx.cli's parser like every kxrun tool's, but the outputs and the exit
-- status are Chronos's: what its user guide shows on stdout, every failure
-- (a bad command line too) exit 1 with the message alone on stderr.  Only
-- `stats` and `devices` start OpenCL.
local gpu = require "kx.gpu"
local cli = require "kx.cli"

local PROG = arg and arg[0] and arg[0]:match("[^/]*$") == "chronos" and "chronos" or "kxrun gpu"

local USAGE = [[
Usage: PROG <command> [arguments]

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
                       gets SIGTERM, then SIGKILL after the grace (5 s).  It
                       dies with this command, even one killed by SIGKILL.
  serve                Own the ledger for several users (root): the ledger
                       becomes root's (0600) and users' commands go through
                       a unix socket that identifies them by SO_PEERCRED;
                       partitions end at their time with nobody running.
  help                 Show this help.

Examples:
  PROG create 0 0.5 3600          # 50% of device 0 for one hour
  PROG create 0 0.3 28800 --user alice
  PROG available 0                # prints e.g. 75.00
  PROG run partition_0001 -- ./train
  PROG release --force partition_0001

State: $KXRUN_STATE_DIR/gpu (default /var/lib/kxrun/gpu).
]]
USAGE = USAGE:gsub("PROG", PROG)

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
	return s:match("^%d+$") and tonumber(s)
end

local grace_flag = { "grace", type = "number", arg = "SECONDS" }

-- Each command: its usage line, what kx.cli's parser takes, what it does.
local commands = {
	{ name = "create", usage = "create <device> <memory> <duration> [--user <user>]",
	  args = { "DEVICE", "MEMORY", "DURATION" }, flags = { { "user", type = "string" } } },
	{ name = "list", usage = "list" },
	{ name = "release", usage = "release [--force] [--grace <seconds>] <partition_id>",
	  args = { "ID" }, flags = { { "force", type = "boolean" }, grace_flag } },
	{ name = "stats", usage = "stats" },
	{ name = "available", usage = "available <device>", args = { "DEVICE" } },
	{ name = "devices", usage = "devices" },
	{ name = "run", usage = "run <id> [--grace <seconds>] -- <command> [args...]",
	  args = { "ID", "COMMAND..." }, flags = { grace_flag } },
	{ name = "serve", usage = "serve" },
}

local run = {}

function run.create(opts, args)
	local dev = device_index(args[1])
	if not dev then return fail("Invalid device index: " .. args[1]) end
	local p, err = gpu.create{ device = dev, memory = args[2], duration = args[3], user = opts.user }
	if not p then return fail(err) end
	local seconds = math.floor(p.expires - p.created + 0.5)
	io.stdout:write(string.format(
		"Created partition %s on device %d (%s) with %d MB for %s seconds\n",
		p.id, p.device, p.device_name, mb(p.bytes),
		seconds >= 1 and tostring(seconds) or args[3]))
	io.stdout:write(string.format("Assigned to user: %s (Created by: %s, PID: %d)\n",
		p.owner, p.creator, p.pid))
end

function run.list()
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

function run.release(opts, args)
	local ok, err = gpu.release(args[1], { force = opts.force, grace = opts.grace })
	if not ok then
		if err:match("running in it") then err = err .. " (--force)" end
		return fail(err)
	end
	io.stdout:write("Released partition ", args[1], "\n")
end

function run.available(_, args)
	local dev = device_index(args[1])
	if not dev then return fail("Invalid device index: " .. args[1]) end
	local pct, ppm = gpu.available(dev)
	if not pct then return fail(ppm) end
	io.stdout:write(two_decimals(ppm), "\n")
end

function run.stats()
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

function run.devices()
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

function run.run(opts, args)
	local id = args[1]
	local cmd = table.move(args, 2, #args, 1, {})
	if opts.grace and opts.grace < 0 then return fail("--grace needs seconds (>= 0)") end
	local p, err = gpu.open(id)
	if not p then return fail(err) end
	cmd.grace = opts.grace
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

function run.serve()
	io.stderr:write(PROG, " serve: ledger ", gpu.state_dir(), "\n")
	local ok, err = gpu.serve()
	if not ok then return fail(err) end
end

return function(argv)
	local name = argv[1]
	if name == nil then
		io.stderr:write(USAGE)
		return 1
	end
	if name == "help" or name == "--help" or name == "-h" then
		io.stdout:write(USAGE)
		return 0
	end
	local cmd
	for _, c in ipairs(commands) do if c.name == name then cmd = c end end
	if not cmd then
		return fail("Unknown command: " .. name .. " (" .. PROG .. " help lists them)")
	end
	local opts, args = cli.parse(cmd, cmd.flags or {}, argv, 2)
	if opts == "help" then
		io.stdout:write(USAGE)
		return 0
	end
	if not opts then
		return fail("Usage: " .. PROG .. " " .. cmd.usage .. " (" .. args .. ")")
	end
	return run[name](opts, args) or 0
end
