-- Timers: 1,000 concurrent kx.sleep(0.01) tasks; lateness of each wake-up,
-- median and p99 (goal: median < 1 ms).  Peer: the same sleeps through
-- `sleep 0.01` processes is not comparable; we print the loop's own floor:
-- a single kx.sleep(0.01) alone, measured in the same run.
-- `--out DIR` keeps every wake-up's lateness (results.jsonl, report.html).
local lab = require "kx.lab"
local exp = lab.experiment{
	name = "host_timers",
	about = "Lateness of kx.sleep(0.01) wake-ups: many concurrent sleeps against one alone",
	params = { { "n", type = "int", default = tonumber(os.getenv("N")) or 1000, help = "concurrent sleeps (or N=)" } },
	out = false, quiet = true,
}
local N = exp.params.n

local function lateness(n)
	local late = {}
	local tasks = {}
	for i = 1, n do
		tasks[i] = kx.go(function()
			local t0 = kx.now()
			kx.sleep(0.01)
			late[#late + 1] = (kx.now() - t0 - 0.01) * 1000
		end)
	end
	for i = 1, n do tasks[i]:wait() end
	for _, v in ipairs(late) do
		exp:record{ point = { n = n }, values = { lateness = v }, units = { lateness = "ms" } }
	end
	return late
end
local q = lab.stats.quantile
local alone = lateness(1)
local late = lateness(N)
local med, p99, m1 = q(late, 0.5), q(late, 0.99), q(alone, 0.5)
print(("timers: %d concurrent kx.sleep(0.01): lateness median %.3f ms, p99 %.3f ms; "
	.. "one sleep alone %.3f ms; ratio %.2fx (goal: median < 1 ms)"):format(N, med, p99, m1, med / math.max(m1, 1e-3)))
exp:finish()
