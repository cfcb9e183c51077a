-- A parent for tests/cli/rfork_container.sh:  kxrun ctparent.lua
-- Prepares and prints "ADDRESS ID KEY", then waits for its stdin to close.
-- A resumed child reads an order on its stdin and prints what it sees of
-- its container, one "name value" per line:
--   "show"         pid (as it sees itself), host name, network interfaces,
--                  /marker, whether / and /tmp can be written, its memory cgroup
--   "wait"         says "waiting", then waits for a line on stdin, then "show"
--   "sleep"        says "waiting", then sleeps 60 s (in kx.sleep: its signals
--                  are handled)
--   "leave"        starts `sleep 1000` in a session of its own and exits
--   "hog MB"       allocates MB MiB (a string) and says "hogged"
--   "exit N"       exits with status N
--   "fds"          prints "fd TARGET" for each of its descriptors
--   "signals"      prints "ign MASK" and "caught MASK" (/proc/self/status)
local rfork = require "kx.rfork"

local function slurp(p)
	local f = io.open(p)
	if not f then return "-" end
	local s = f:read("a")
	f:close()
	return s
end

local h = assert(rfork.prepare{ listen = "127.0.0.1:0" })
if h.child then
	local order = io.read("l") or "show"
	if order == "wait" then
		print("waiting")
		io.stdout:flush()
		io.read("l")
	elseif order == "sleep" then
		print("waiting")
		io.stdout:flush()
		kx.sleep(60)
	elseif order == "leave" then
		local p = assert(kx.spawn{ "sleep", "1000", detach = true })
		print("left", p.pid)
		os.exit(0)
	elseif order == "fds" then
		local pid = slurp("/proc/self/stat"):match("^(%d+)")
		local _, out = kx.exec{ "find", "/proc/" .. pid .. "/fd", "-mindepth", "1",
			"-printf", "fd\t%l\n" }
		io.write(out)
		os.exit(0)
	elseif order == "signals" then
		local st = slurp("/proc/self/status")
		print("ign", st:match("SigIgn:%s*(%x+)"))
		print("caught", st:match("SigCgt:%s*(%x+)"))
		os.exit(0)
	elseif order:match("^exit") then
		os.exit(tonumber(order:match("%d+")))
	elseif order:match("^hog") then
		local s = ("x"):rep(tonumber(order:match("%d+")) << 20)
		print("hogged", #s)
		os.exit(0)
	end
	print("pid", (slurp("/proc/self/stat"):match("^(%d+)")))
	print("host", (slurp("/proc/sys/kernel/hostname"):gsub("\n", "")))
	local ifs = {}
	for name in slurp("/proc/net/dev"):gmatch("\n%s*([%w_.-]+):") do ifs[#ifs + 1] = name end
	table.sort(ifs)
	print("ifs", table.concat(ifs, ","))
	print("marker", (slurp("/marker"):gsub("\n", "")))
	local f, err = io.open("/kxrun-rfork-written", "w")
	if f then f:close() os.remove("/kxrun-rfork-written") end
	print("root", f and "writable" or err:match("Read%-only") and "read-only" or err)
	f = io.open("/tmp/kxrun-rfork-written", "w")
	if f then f:close() os.remove("/tmp/kxrun-rfork-written") end
	print("tmp", f and "writable" or "no")
	print("cgroup", (slurp("/proc/self/cgroup"):match("memory:([^\n]*)")) or "-")
	os.exit(0)
end
print(h.address, h.id, h.key)
io.stdout:flush()
io.read("a")
h:close()
