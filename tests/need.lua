-- Feature probes for busted specs: the only way a spec goes pending.
--
--   local need = dofile("tests/need.lua")
--   it("...", function()
--       if not need("bpf", "root") then return end
--       ...
--
-- Each feature is probed by tests/features.sh (the machine, never kxrun).
-- When one is absent the skip is recorded for tests/run.sh, which fails the
-- run if that feature is present after all, and the test goes pending with
-- the probe's reason.
local cache = {}

local function probe(feature)
	if cache[feature] == nil then
		local root = os.getenv("ROOT") or "."
		local p = assert(io.popen(("%q/tests/features.sh %q 2>&1"):format(root, feature)))
		local why = p:read("a"):gsub("%s+$", "")
		local ok = p:close()
		cache[feature] = ok and true or why
	end
	return cache[feature]
end

-- busted's pending() is a global of the spec files' environment, not of
-- this chunk (dofile runs it in _G): found in the caller's _ENV.
local function spec_pending()
	for level = 3, 8 do
		local info = debug.getinfo(level, "f")
		if not info then break end
		for i = 1, 255 do
			local name, v = debug.getupvalue(info.func, i)
			if not name then break end
			if name == "_ENV" and type(v) == "table" and type(v.pending) == "function" then
				return v.pending
			end
		end
	end
	return pending
end

return function(...)
	for _, feature in ipairs{ ... } do
		local r = probe(feature)
		if r ~= true then
			local file = os.getenv("KXRUN_TEST_SKIPS")
			if file then
				local f = assert(io.open(file, "a"))
				f:write(("%s\t%s\t%s\n"):format(os.getenv("KXRUN_TEST_NAME") or "spec", feature, r))
				f:close()
			end
			spec_pending()(feature .. " absent: " .. r)
			return false
		end
	end
	return true
end
