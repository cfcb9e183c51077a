-- The Lua half of the core module `kx`: kx.exec, kx.read_file and kx.log.
-- Called once with the module table by luaopen_kx.
return function(kx)
	-- kx.exec{argv..., input=, env=, cwd=} -> code, stdout, stderr
	-- (code is 128 + N when the program died of signal N), or nil, message.
	function kx.exec(t)
		if type(t) ~= "table" then
			error(("bad argument #1 to 'exec' (table expected, got %s)"):format(type(t)), 2)
		end
		local opts = {}
		for k, v in pairs(t) do opts[k] = v end
		opts.input = nil
		opts.stdout = opts.stdout or "pipe"
		opts.stderr = opts.stderr or "pipe"
		if t.input ~= nil then opts.stdin = "pipe" end
		local p, err = kx.spawn(opts)
		if not p then return nil, err end
		-- both pipes read at once, and the input written meanwhile: a child
		-- filling one pipe while we wait on another must not block for ever
		local function drain(s) return s and s:read("a") end
		local out_task <close> = kx.go(drain, p.stdout)
		local err_task <close> = kx.go(drain, p.stderr)
		if t.input ~= nil then
			p.stdin:write(tostring(t.input))
			p.stdin:close()
		end
		local _, out = out_task:wait()
		local _, errs = err_task:wait()
		local st = p:wait()
		return st.code or (128 + st.signal), out, errs
	end

	-- kx.read_file(path) -> the whole file | nil, message (kx.write_file's
	-- other half)
	function kx.read_file(path)
		if type(path) ~= "string" then
			error(("bad argument #1 to 'read_file' (string expected, got %s)"):format(type(path)), 2)
		end
		local f, err = io.open(path, "rb")
		if not f then return nil, err end
		local data, rerr = f:read("a")
		f:close()
		if not data then return nil, ("%s: %s"):format(path, rerr) end
		return data
	end

	local levels = { debug = 10, info = 20, warn = 30, error = 40 }
	local threshold = levels[os.getenv("KXRUN_LOG") or "info"] or levels.info

	local function emit(level, fmt, ...)
		if levels[level] < threshold then return end
		local ok, msg = pcall(string.format, tostring(fmt), ...)
		if not ok then msg = tostring(fmt) end
		local t = kx.time()
		local stamp = os.date("!%Y-%m-%dT%H:%M:%S", math.floor(t))
		io.stderr:write(("%s.%03dZ %-5s %s\n"):format(stamp,
			math.floor((t % 1) * 1000), level:upper(), msg))
	end

	kx.log = {}
	for level in pairs(levels) do
		kx.log[level] = function(fmt, ...) emit(level, fmt, ...) end
	end
end
