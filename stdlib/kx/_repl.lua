-- The REPL's Lua half: how values are shown, and tab completion.
local M = {}

local function is_ident(s)
	return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil
end

local function render(v, depth, seen)
	local t = type(v)
	if t == "string" then return ("%q"):format(v) end
	if t ~= "table" then return tostring(v) end
	local mt = getmetatable(v)
	if mt and mt.__tostring then return tostring(v) end
	if seen[v] or depth > 2 then return tostring(v) end
	seen[v] = true
	local parts, n = {}, #v
	for i = 1, n do parts[#parts + 1] = render(v[i], depth + 1, seen) end
	local keys = {}
	for k in pairs(v) do
		if not (math.type(k) == "integer" and k >= 1 and k <= n) then
			keys[#keys + 1] = k
		end
	end
	table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
	for _, k in ipairs(keys) do
		if #parts >= 40 then parts[#parts + 1] = "..."; break end
		local key = is_ident(k) and k or "[" .. render(k, depth + 1, seen) .. "]"
		parts[#parts + 1] = key .. " = " .. render(v[k], depth + 1, seen)
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

local function fields(v, into, seen)
	seen = seen or {}
	if seen[v] then return end
	seen[v] = true
	if type(v) == "table" then
		for k in pairs(v) do
			if is_ident(k) then into[k] = true end
		end
	end
	local mt = getmetatable(v)
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
