-- Timers: 1,000 concurrent kx.sleep(0.01) tasks; lateness of each wake-up,
-- median and p99 (goal: median < 1 ms).  Peer: the same sleeps through
-- `sleep 0.01` processes is not comparable; we print the loop's own floor:
-- a single kx.sleep(0.01) alone, measured in the same run.
local N = tonumber(os.getenv("N")) or 1000
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
	table.sort(late)
	return late[math.max(1, math.floor(#late * 0.5))], late[math.max(1, math.floor(#late * 0.99))]
end
local m1, p1 = lateness(1)
local med, p99 = lateness(N)
print(("timers: %d concurrent kx.sleep(0.01): lateness median %.3f ms, p99 %.3f ms; "
	.. "one sleep alone %.3f ms; ratio %.2fx (goal: median < 1 ms)"):format(N, med, p99, m1, med / math.max(m1, 1e-3)))
