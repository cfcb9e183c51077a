-- What a vtime controller left behind, for tests that must leave nothing.
--   local leftovers = dofile("tests/vtime/leftovers.lua")
--   assert.same({}, leftovers())   -- this process's experiments
--   kxrun tests/vtime/leftovers.lua PID   prints what controller PID left
-- What the controller ctl (a pid; default: this process) left: live
-- processes whose environment names one of its clock files, its
-- kxrun-vtime-* cgroups and clock files.  A list of phrases, empty when
-- nothing is left.
local function leftovers(ctl)
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

if arg and arg[0] and arg[0]:match("leftovers%.lua$") then
	local left = leftovers(math.tointeger(tonumber(arg[1] or "")))
	for _, l in ipairs(left) do print(l) end
	os.exit(#left == 0 and 0 or 1)
end
return leftovers
