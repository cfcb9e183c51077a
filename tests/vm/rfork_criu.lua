-- The driver of tests/vm/rfork_criu_bench.sh (not a case):
--   kxrun rfork_criu.lua ADDRESS ID KEY SIZE REPS DIR
-- times REPS whole `kxrun rfork resume` processes of the parent at ADDRESS
-- and REPS CRIU dumps + restores of a kxrun holding SIZE of Lua strings
-- (images in DIR), then REPS lazy restores (criu lazy-pages serving the
-- images), and prints the medians and their ratios.
local A, I, K, size, reps, dir = arg[1], arg[2], arg[3], arg[4], tonumber(arg[5]), arg[6]
local function median(t) table.sort(t) return t[(#t + 1) // 2] end
local rf, criu, restore = {}, {}, {}
for _ = 1, reps do
	local t0 = kx.now()
	local code, out, err = kx.exec{ kx.exe, "rfork", "resume", A, I, K }
	assert(code == 0 and out == "hello\n", "resume: " .. tostring(err))
	rf[#rf + 1] = (kx.now() - t0) * 1000
end
local bytes = math.tointeger(tonumber(size:match("^%d+"))) << (size:match("G$") and 30 or 20)
for i = 1, reps do
	local h = assert(kx.spawn{ kx.exe, "-e", ("local ws, page, left = {}, ('k'):rep(4096), %d "
		.. "while left > 0 do local n = math.min(left, 256 << 20) ws[#ws + 1] = page:rep(n // 4096) "
		.. "left = left - n end io.write('READY\\n') io.stdout:flush() kx.sleep(3600)"):format(bytes),
		stdout = "pipe", stdin = "null", detach = true })
	assert(h.stdout:read("l") == "READY", "the kxrun to dump did not start")
	local img = ("%s/img%d"):format(dir, i)
	assert(kx.exec{ "mkdir", img } == 0)
	local t0 = kx.now()
	local c1, _, e1 = kx.exec{ "criu", "dump", "-t", tostring(h.pid), "-D", img, "--shell-job" }
	if c1 ~= 0 then h:kill("KILL") end
	assert(c1 == 0, "criu dump: " .. tostring(e1):sub(-600))
	local t1 = kx.now()
	local c2, _, e2 = kx.exec{ "criu", "restore", "-D", img, "--shell-job", "-d" }
	assert(c2 == 0, "criu restore: " .. tostring(e2):sub(-600))
	local t2 = kx.now()
	kx.exec{ "kill", "-KILL", tostring(h.pid) }
	kx.exec{ "rm", "-rf", img }
	criu[#criu + 1], restore[#restore + 1] = (t2 - t0) * 1000, (t2 - t1) * 1000
end
-- CRIU's lazy restore (userfaultfd, as kx.rfork): the dump's pages served
-- on demand by `criu lazy-pages` from the images; where it fails, why
local lazy, lazy_why = {}, nil
for i = 1, reps do
	local h = assert(kx.spawn{ kx.exe, "-e", ("local ws, page, left = {}, ('k'):rep(4096), %d "
		.. "while left > 0 do local n = math.min(left, 256 << 20) ws[#ws + 1] = page:rep(n // 4096) "
		.. "left = left - n end io.write('READY\\n') io.stdout:flush() kx.sleep(3600)"):format(bytes),
		stdout = "pipe", stdin = "null", detach = true })
	assert(h.stdout:read("l") == "READY", "the kxrun to dump did not start")
	local img = ("%s/lazy%d"):format(dir, i)
	assert(kx.exec{ "mkdir", img } == 0)
	local c1, _, e1 = kx.exec{ "criu", "dump", "-t", tostring(h.pid), "-D", img, "--shell-job" }
	if c1 ~= 0 then h:kill("KILL") lazy_why = "dump: " .. tostring(e1):sub(-300) break end
	local daemon = assert(kx.spawn{ "criu", "lazy-pages", "-D", img, stdout = "null", stderr = "pipe" })
	for _ = 1, 200 do
		if io.open(img .. "/lazy-pages.socket") then break end
		kx.sleep(0.01)
	end
	local t0 = kx.now()
	local c2, _, e2 = kx.exec{ "criu", "restore", "-D", img, "--shell-job", "--lazy-pages", "-d" }
	local t1 = kx.now()
	kx.exec{ "kill", "-KILL", tostring(h.pid) }
	if not daemon:wait(10) then daemon:kill("KILL") daemon:wait(5) end
	kx.exec{ "rm", "-rf", img }
	if c2 ~= 0 then lazy_why = "restore --lazy-pages: " .. tostring(e2):sub(-300) break end
	lazy[#lazy + 1] = (t1 - t0) * 1000
end
local r, c, s = median(rf), median(criu), median(restore)
print(("rfork vs CRIU, a kxrun holding %s of Lua strings, QEMU TCG guest, medians of %d:")
	:format(size, reps))
print(("  kx.rfork: a whole kxrun rfork resume process  %9.1f ms"):format(r))
print(("  CRIU: dump + restore                         %9.1f ms (restore alone %.1f ms)"):format(c, s))
print(("  ratio CRIU / kx.rfork: %.1fx (restore alone %.1fx)"):format(c / r, s / r))
if #lazy == reps then
	print(("  CRIU restore --lazy-pages (criu lazy-pages from the images): %.1f ms, ratio %.1fx")
		:format(median(lazy), median(lazy) / r))
else
	print("  CRIU restore --lazy-pages: no figure: " .. tostring(lazy_why):gsub("%s+", " "))
end
