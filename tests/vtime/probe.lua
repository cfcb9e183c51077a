-- Which kx.vtime backends the machine has the features for, probed from
-- the filesystem, never by asking kx.vtime (a test must fail, not skip,
-- when the product fails where the feature is there).
--   local probe = dofile("tests/vtime/probe.lua")
--   probe.backends()  --> { "signal", "freezer-v1", "freezer-v2" } (those present)
--   probe.v1(), probe.v2()  --> true, or false and why
--   kxrun tests/vtime/probe.lua   prints the backends, space-separated
local M = {}

local function writable(path)
	local f = io.open(path, "a")
	if f then f:close() return true end
	return false
end

-- A cgroup v1 freezer hierarchy we may write.
function M.v1()
	local root = "/sys/fs/cgroup/freezer"
	if not writable(root .. "/cgroup.procs") then
		return false, root .. " is not a writable cgroup v1 freezer hierarchy"
	end
	return true
end

-- A cgroup2 mount we may write, whose child cgroups have cgroup.freeze.
function M.v2()
	local root
	for line in io.lines("/proc/self/mounts") do
		local mnt, typ = line:match("^%S+ (%S+) (%S+)")
		if typ == "cgroup2" then root = mnt break end
	end
	if not root then return false, "no cgroup2 mount" end
	if not writable(root .. "/cgroup.procs") then return false, root .. " is not writable" end
	local probe = ("%s/kxrun-vtime-probe-%d"):format(root, math.random(1 << 30))
	if not os.execute("mkdir " .. probe .. " 2>/dev/null") then
		return false, "cannot make a cgroup under " .. root
	end
	local has = io.open(probe .. "/cgroup.freeze") ~= nil
	os.execute("rmdir " .. probe)
	if not has then return false, "no cgroup.freeze (no cgroup v2 freezer)" end
	return true
end

function M.backends()
	local out = { "signal" }
	if M.v1() then out[#out + 1] = "freezer-v1" end
	if M.v2() then out[#out + 1] = "freezer-v2" end
	return out
end

-- What the controller ctl (a pid; default: this process) left: live
-- processes whose environment names one of its clock files, its
-- kxrun-vtime-* cgroups and clock files.  A list of phrases, empty when
-- nothing is left.
function M.leftovers(ctl)
	if not ctl then
		local f = io.open("/proc/self/stat")
		ctl = math.tointeger(tonumber(f:read("a"):match("^(%d+)")))
		f:close()
	end
	local prefix, left = ("kxrun-vtime-%d-"):format(ctl), {}
	local mark = "KXRUN_VTIME_SHM=/dev/shm/" .. prefix
	local ls = io.popen("ls /proc")
	for pid in ls:lines() do
		local f = pid:match("^%d+$") and io.open("/proc/" .. pid .. "/environ", "rb")
		local env = f and f:read("a") or ""
		if f then f:close() end
		if env:find(mark, 1, true) then
			local st = io.open("/proc/" .. pid .. "/stat")
			local state = (st and st:read("a") or ""):match("%) (%a)")
			if st then st:close() end
			if state and state ~= "Z" then left[#left + 1] = ("process %s (%s)"):format(pid, state) end
		end
	end
	ls:close()
	local dirs = io.popen("ls -d /sys/fs/cgroup/*/" .. prefix .. "* /sys/fs/cgroup/" .. prefix
		.. "* /dev/shm/" .. prefix .. "* 2>/dev/null")
	for d in dirs:lines() do left[#left + 1] = d end
	dirs:close()
	return left
end

if arg and arg[0] and arg[0]:match("probe%.lua$") then
	print(table.concat(M.backends(), " "))
end
return M
