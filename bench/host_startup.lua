-- Start-up: `kxrun -e ''` against `lua5.4 -e ''` (goal: within 1.5x), each
-- started N times in a row per run; the two are run in turn (--reps, after
-- a warm-up) and the medians compared.  `--out DIR` keeps every run.
local lab = require "kx.lab"
local exp = lab.experiment{
	name = "host_startup",
	about = "Start-up to the end of an empty chunk: kxrun -e '' against lua5.4 -e ''",
	params = { { "n", type = "int", default = tonumber(os.getenv("N")) or 200, help = "starts per run (or N=)" } },
	metrics = { start = "us" }, reps = 3, warmup = 1, out = false, quiet = true,
}
local N = exp.params.n
if N < 1 then io.stderr:write("kxrun: host_startup.lua: --n: must be at least 1\n") os.exit(2) end
local LUA = "/usr/bin/lua5.4"
if not io.open(LUA) then
	print("lua5.4 missing (apt-get install lua5.4)")
	os.exit(1)
end

local times = { kxrun = {}, lua = {} }
local function starts(argv, into)
	return function(_, rep)
		local t0 = kx.now()
		for _ = 1, N do
			local st = assert(kx.spawn(argv)):wait()
			if st.code ~= 0 then return nil, argv[1] .. " exited " .. tostring(st.code or st.signal) end
		end
		local us = (kx.now() - t0) / N * 1e6
		if rep > 0 then table.insert(into, us) end
		return us
	end
end
exp:run{ systems = { { "kxrun", starts({ kx.exe, "-e", "" }, times.kxrun) }, { "lua5.4", starts({ LUA, "-e", "" }, times.lua) } } }
local median = lab.stats.median
local k, l = median(times.kxrun), median(times.lua)
print(("start-up: kxrun -e \"\" %d us, lua5.4 -e \"\" %d us, ratio %.2fx (goal <= 1.5x)")
	:format(math.floor(k + 0.5), math.floor(l + 0.5), k / l))
