-- quickstart.lua: a first tour of kxrun, on embedded defaults (no Redis, no
-- GPU, no RDMA needed).  Run it with `make run` or `./kxrun experiments/quickstart.lua`.

print(("kxrun %s  (%s)"):format(kx.version, _VERSION))

-- 1. The core: a few processes started concurrently, waited for, tabulated.
local jobs = {
	{ name = "sleep 0.2", argv = { "sleep", "0.2" } },
	{ name = "sh loop", argv = { "sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done" } },
	{ name = "ls /", argv = { "ls", "/" }, stdout = "null" },
	{ name = "false", argv = { "false" } },
}
local t0 = kx.now()
local tasks = {}
for i, job in ipairs(jobs) do
	tasks[i] = kx.go(function()
		local argv = { table.unpack(job.argv) }
		argv.stdout = job.stdout
		local started = kx.now()
		local p = assert(kx.spawn(argv))
		local st = p:wait()
		return { name = job.name, pid = p.pid, status = st.code or ("signal " .. st.signal),
			seconds = kx.now() - started }
	end)
end
print(("\n%-10s %8s %8s %8s"):format("job", "pid", "status", "seconds"))
for _, t in ipairs(tasks) do
	local ok, r = t:wait()
	assert(ok, r)
	print(("%-10s %8d %8s %8.3f"):format(r.name, r.pid, tostring(r.status), r.seconds))
end
print(("all %d jobs in %.3f s (run concurrently)"):format(#jobs, kx.now() - t0))
