-- The REPL's Lua half: running a line, how values are shown, tab completion.
local M = {}

local function is_ident(s)
	return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil
end

-- tostring that never raises: a value whose __tostring fails is described.
local function safe_tostring(v)
	local ok, s = pcall(tostring, v)
	if ok and type(s) == "string" then return s end
	local why = ok and "it gave no string" or type(s) == "string" and s or type(s)
	return ("(a %s value whose __tostring failed: %s)"):format(type(v), why)
end

-- The message of an error value, as lua.c shows one.
local function message(e)
	local t = type(e)
	if t == "string" or t == "number" then return tostring(e) end
	local mt = debug.getmetatable(e)
	if mt and mt.__tostring ~= nil then
		local ok, s = pcall(tostring, e)
		if ok and type(s) == "string" then return s end
		local why = ok and "it gave no string" or type(s) == "string" and s or type(s)
		return ("(error object is a %s value whose __tostring failed: %s)"):format(t, why)
	end
	return ("(error object is a %s value)"):format(t)
end

local function render(v, depth, seen)
	local t = type(v)
	if t == "string" then return ("%q"):format(v) end
	if t ~= "table" then return safe_tostring(v) end
	local mt = debug.getmetatable(v)
	if mt and mt.__tostring ~= nil then return safe_tostring(v) end
	if seen[v] or depth > 2 then return safe_tostring(v) end
	seen[v] = true
	local parts, n = {}, rawlen(v)
	for i = 1, n do parts[#parts + 1] = render(rawget(v, i), depth + 1, seen) end
	local keys = {}
	for k in next, v do
		if not (math.type(k) == "integer" and k >= 1 and k <= n) then
			keys[#keys + 1] = k
		end
	end
	table.sort(keys, function(a, b) return safe_tostring(a) < safe_tostring(b) end)
	for _, k in ipairs(keys) do
		if #parts >= 40 then parts[#parts + 1] = "..."; break end
		local key = is_ident(k) and k or "[" .. render(k, depth + 1, seen) .. "]"
		parts[#parts + 1] = key .. " = " .. render(rawget(v, k), depth + 1, seen)
	end
	seen[v] = nil
	return "{" .. table.concat(parts, ", ") .. "}"
end

-- Prints each value, tables shown two levels deep.
function M.show(...)
	local out = {}
	for i = 1, select("#", ...) do
		out[i] = render((select(i, ...)), 1, {})
	end
	print(table.concat(out, "\t"))
end

local function report(msg)
	io.stdout:flush()
	io.stderr:write(msg, "\n")
end

-- Runs one compiled line (as a task): prints its values, or its error with
-- a traceback.  Whatever the values or the error are, this returns.
function M.run(f)
	local r = table.pack(xpcall(f, function(e)
		return debug.traceback(message(e), 2)
	end))
	if not r[1] then return report(r[2]) end
	if r.n > 1 then
		local ok, err = pcall(M.show, table.unpack(r, 2, r.n))
		if not ok then report(message(err)) end
	end
end

local function fields(v, into, seen)
	seen = seen or {}
	if seen[v] then return end
	seen[v] = true
	if type(v) == "table" then
		for k in next, v do
			if is_ident(k) then into[k] = true end
		end
	end
	local mt = debug.getmetatable(v)
	if type(mt) == "table" then
		local idx = rawget(mt, "__index")
		if type(idx) == "table" then fields(idx, into, seen) end
		local methods = rawget(mt, "methods")
		if type(methods) == "table" then fields(methods, into, seen) end
	end
end

-- Completions of a word such as "kx.sp" or "p:wa": globals, then fields
-- after "." and methods after ":".
function M.complete(word)
	local path, sep, last = word:match("^(.*)([%.:])([%w_]*)$")
	local base = _G
	if path then
		for name in path:gmatch("[^%.:]+") do
			local ok, v = pcall(function() return base[name] end)
			if not ok or v == nil then return {} end
			base = v
		end
	else
		last, path, sep = word, "", ""
	end
	local names = {}
	fields(base, names)
	local out = {}
	for k in pairs(names) do
		if k:sub(1, #last) == last then out[#out + 1] = path .. sep .. k end
	end
	table.sort(out)
	return out
end

return M
