-- Soak: dilated programs behind shell shims, on a loaded host, must end.
--   kxrun tests/vtime/soak.lua N [LIMIT_S] [BACKENDS="signal"]
-- Runs N experiments (step 1 ms, advance(10) until the process ends) with
-- two busy loops on the host; each command is a shell shim that starts
-- subshells and pipelines and then execs the real program (a `bash -c`
-- wrapper, a nested-script shim like pyenv's, and the `python3` found on
-- PATH when that is itself a shim), BACKENDS taken in turn.  An
-- experiment still running after LIMIT_S real seconds (20) is a hang:
-- the state of its processes (ps: state, wchan) and the experiment's
-- counters are printed and the script exits 1.  Exits 0 when
-- every experiment ended with status 0.
local vtime = require "kx.vtime"

local N = math.tointeger(tonumber(arg[1] or "")) or 30
local LIMIT = tonumber(arg[2] or "") or 20
local PY = "/usr/bin/python3"
local PROG = "import time; time.sleep(0.01); print('ok')"

local function sh(cmd)
	local f = io.popen(cmd)
	local out = f:read("a")
	f:close()
	return out
end

-- A nested-script shim (what pyenv's python3 does: scripts that run
-- scripts in command substitutions and pipelines, then exec).
local dir = sh("mktemp -d /tmp/kxrun-vtime-soak.XXXXXX"):gsub("%s+$", "")
local function script(name, body)
	local f = assert(io.open(dir .. "/" .. name, "w"))
	f:write("#!/bin/bash\n", body, "\n")
	f:close()
	assert(os.execute("chmod +x " .. dir .. "/" .. name))
end
script("hooks", [[for h in a b c; do x=$(echo "$h" | tr a-c x-z); done; echo "$x"]])
script("which", [[v=$("]] .. dir .. [[/hooks" | cat); p=$(sh -c 'echo ]] .. PY .. [[' | head -1); echo "$p"]])
script("shim", [[set -e; prog=$("]] .. dir .. [[/which"); exec "$prog" "$@"]])

local commands = {
	{ "bash", "-c", [[x=$(echo hi | cat); y=$(sh -c "echo a | tr a b"); exec ]] .. PY
		.. [[ -c "]] .. PROG .. [["]] },
	{ dir .. "/shim", "-c", PROG },
}
-- the python3 a user gets from PATH, when it is a shell shim (pyenv's)
local onpath = sh("command -v python3"):gsub("%s+$", "")
local head = onpath ~= "" and io.open(onpath, "rb")
if head and head:read(2) == "#!" then commands[#commands + 1] = { "python3", "-c", PROG } end
if head then head:close() end

-- the backends to take in turn (tests/vtime/backends.sh: those whose
-- features the machine has)
local backends = {}
for b in (arg[3] or "signal"):gmatch("%S+") do backends[#backends + 1] = b end

local busy = {}
for i = 1, 2 do busy[i] = assert(kx.spawn{ "sh", "-c", "while :; do :; done" }) end

local function finish(code)
	for _, b in ipairs(busy) do b:kill("KILL") b:wait(5) end
	os.execute("rm -rf " .. dir)
	os.exit(code)
end

local leaders = {}
for i = 1, N do
	local cmd = commands[(i - 1) % #commands + 1]
	local backend = backends[(i - 1) // #commands % #backends + 1]
	local exp = assert(vtime.experiment{ step = 1000000, backend = backend })
	local p = assert(exp:spawn(cmd, { stdout = "null" }))
	leaders[#leaders + 1] = p.pid
	exp:freeze()
	local t0, done, err = kx.now(), false, nil
	kx.go(function()
		local ok, e = pcall(function() while p:alive() do exp:advance(10) end end)
		done, err = true, not ok and e or nil
	end)
	while not done and kx.now() - t0 < LIMIT do kx.sleep(0.02) end
	if not done then
		print(("HANG: experiment %d (%s, %s) still running after %g s, %d rounds")
			:format(i, backend, cmd[1], LIMIT, exp.rounds))
		-- its process group and session: state, wchan, what it runs
		io.write(sh(("ps -eo pid,ppid,pgid,sid,stat,wchan:32,args | awk 'NR == 1 || $3 == %d || $4 == %d'")
			:format(p.pid, p.pid)))
		local st = exp:stats()
		local keys = {}
		for k in pairs(st) do keys[#keys + 1] = k end
		table.sort(keys)
		for _, k in ipairs(keys) do io.write(k, "=", st[k], " ") end
		print()
		exp:stop()
		finish(1)
	end
	local st = p:status()
	exp:stop()
	if err or not st or st.code ~= 0 then
		print(("experiment %d (%s, %s): %s"):format(i, backend, cmd[1],
			err or ("status " .. (st and (st.code or "signal " .. st.signal) or "none"))))
		finish(1)
	end
end
print(("%d experiments ended (%d commands, backends %s)"):format(N, #commands,
	table.concat(backends, " ")))
finish(0)
