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

-- busted puts `pending` in the running test's environment, which this
-- chunk (loaded with dofile) does not share: take it from the caller's.
local function caller_pending()
	local f = debug.getinfo(3, "f").func
	for i = 1, math.huge do
		local name, env = debug.getupvalue(f, i)
		if not name then break end
		if name == "_ENV" then return env.pending end
	end
	error("need() must be called in the body of a test (it)", 3)
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
			caller_pending()(feature .. " absent: " .. r)
			return false
		end
	end
	return true
end
