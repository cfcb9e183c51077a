-- kx.lab.params: an experiment's declared parameters, parsed from its
-- command line.
--
--   local params = require "kx.lab.params"
--   local decl = params.declare{
--     { "size", type = "size", default = "64M", help = "working set" },
--     { "threads", type = "int", default = "1,2,4", list = true, help = "workers" },
--   }
--   local values, err = params.parse(decl, { "--size=1G", "--threads", "8" })
--
-- Types: int, number, size (bytes: 64K, 1.5G; K M G T and KiB... are powers of
-- 1024, KB MB GB TB powers of 1000), duration (seconds: 250ms, 2s, 1.5min,
-- 1h; a bare number is seconds), bool, string, choice (one of `choices`).
-- `list = true` takes `a,b,c` and gives a table.  `positional = true` also
-- takes the next bare argument, in declaration order.
local cli = require "kx.cli"

local M = {}

local SIZE = { [""] = 1, b = 1 }
for i, l in ipairs{ "k", "m", "g", "t", "p" } do
	SIZE[l], SIZE[l .. "ib"], SIZE[l .. "b"] = 1024 ^ i, 1024 ^ i, 1000 ^ i
end
-- seconds per unit, or (negative) units per second: 250 / 1e3 is exactly
-- 0.25 where 250 * 1e-3 is not
local DURATION = {
	ns = -1e9, us = -1e6, ["µs"] = -1e6, ms = -1e3, [""] = 1, s = 1, sec = 1,
	min = 60, h = 3600,
}

local parse = {}

function parse.int(s)
	local n = tonumber(s)
	n = n and math.tointeger(n)
	if not n then return nil, "is not an integer" end
	return n
end

function parse.number(s)
	local n = tonumber(s)
	if not n or n ~= n then return nil, "is not a number" end
	return n
end

-- "64K" -> 65536, "1.5G", "4KiB" -> 4096, "2MB" -> 2000000, "512" -> 512
function parse.size(s)
	local num, suffix = tostring(s):match("^%s*([%d.]+)%s*(%a*)%s*$")
	local n, scale = tonumber(num or ""), suffix and SIZE[suffix:lower()]
	if not n or not scale then
		return nil, "is not a size (a number of bytes with K, M, G or T: 512, 64K, 1.5G)"
	end
	local bytes = n * scale
	if bytes ~= math.floor(bytes) then return nil, "is not a whole number of bytes" end
	return math.tointeger(bytes) or bytes
end

-- "250ms" -> 0.25, "2s", "1.5min" -> 90, "1h", "30" -> 30
function parse.duration(s)
	local num, unit = tostring(s):match("^%s*([%d.]+)%s*(%S*)%s*$")
	local n = tonumber(num or "")
	local scale = unit and DURATION[unit]
	if not n or not scale then
		return nil, "is not a duration (a number with ns, us, ms, s, min or h: 250ms, 2s, 1.5min)"
	end
	return scale > 0 and n * scale or n / -scale
end

function parse.bool(s)
	local v = ({ ["true"] = true, yes = true, on = true, ["1"] = true,
		["false"] = false, no = false, off = false, ["0"] = false })[tostring(s):lower()]
	if v == nil then return nil, "is not a boolean (true, false, yes, no, on, off, 1, 0)" end
	return v
end

function parse.string(s)
	return tostring(s)
end

M.parse_value = parse

local METAVAR = { int = "N", number = "X", size = "SIZE", duration = "TIME",
	string = "STR", bool = "", choice = "NAME" }

-- One declaration, checked; its default parsed.
local function declare_one(d, i)
	if type(d) ~= "table" or type(d[1]) ~= "string" or not d[1]:match("^[%a_][%w_]*$") then
		error(("parameter #%d: a table whose first item is the name (letters, digits, _)"):format(i), 3)
	end
	local p = { name = d[1], type = d.type, default = d.default, help = d.help or "",
		unit = d.unit, list = d.list and true or false, choices = d.choices,
		positional = d.positional and true or false, required = d.required and true or false,
		meta = d.meta }
	if p.type == nil then
		p.type = type(p.default) == "number" and "number" or type(p.default) == "boolean" and "bool" or "string"
	end
	if not parse[p.type] and p.type ~= "choice" then
		error(("parameter '%s': unknown type '%s' (int, number, size, duration, bool, string, choice)")
			:format(p.name, tostring(p.type)), 3)
	end
	if p.type == "choice" and (type(p.choices) ~= "table" or #p.choices == 0) then
		error(("parameter '%s': a choice needs choices = { ... }"):format(p.name), 3)
	end
	if p.type == "bool" and p.list then
		error(("parameter '%s': a bool cannot be a list"):format(p.name), 3)
	end
	if p.default ~= nil then
		local v, err = M.convert(p, p.default)
		if v == nil then error(("parameter '%s': default %s"):format(p.name, err), 3) end
		p.value = v
	end
	return p
end

-- params.declare{ {name, type=, default=, unit=, help=, list=, choices=,
--   positional=, required=, meta= (the value's name in --help)}, ... }
function M.declare(list)
	if type(list) ~= "table" then
		error(("bad argument #1 to 'declare' (table expected, got %s)"):format(type(list)), 2)
	end
	local decl = { byname = {} }
	for i, d in ipairs(list) do
		local p = declare_one(d, i)
		if decl.byname[p.name] then error(("parameter '%s' declared twice"):format(p.name), 2) end
		decl[#decl + 1] = p
		decl.byname[p.name] = p
	end
	return decl
end

local function convert_scalar(p, v)
	if p.type == "choice" then
		for _, c in ipairs(p.choices) do
			if tostring(c) == tostring(v) then return c end
		end
		return nil, ("%q is not one of %s"):format(tostring(v), table.concat(p.choices, ", "))
	end
	if type(v) == "number" and (p.type == "number" or p.type == "size" or p.type == "duration") then
		return v
	end
	if type(v) == "number" and p.type == "int" then
		return math.tointeger(v) or nil, ("%s is not an integer"):format(v)
	end
	if type(v) == "boolean" and p.type == "bool" then return v end
	local out, err = parse[p.type](v)
	if out == nil then return nil, ("%q %s"):format(tostring(v), err) end
	return out
end

-- A value (a string from the command line, or a Lua value) for p; nil, why.
function M.convert(p, v)
	if not p.list then return convert_scalar(p, v) end
	local items = {}
	if type(v) == "table" then
		items = v
	else
		for item in (tostring(v) .. ","):gmatch("([^,]*),") do
			items[#items + 1] = item
		end
	end
	local out = {}
	for i, item in ipairs(items) do
		if item == "" then return nil, ("%q has an empty item"):format(tostring(v)) end
		local x, err = convert_scalar(p, item)
		if x == nil then return nil, err end
		out[i] = x
	end
	if #out == 0 then return nil, "is an empty list" end
	return out
end

local function dashed(name) return (name:gsub("_", "-")) end

-- params.parse(decl, argv) -> values, given | nil, message (one line naming
-- the parameter) | "help".  argv is a list of strings (the script's
-- arguments).  The syntax is kx.cli's, as every kxrun tool reads flags
-- (--name value, --name=value, -- ends them, -h/--help anywhere); kx.lab
-- adds --no-NAME for booleans and its typed values.
function M.parse(decl, argv)
	local flags, specs, positional = {}, {}, {}
	for _, p in ipairs(decl) do
		flags[#flags + 1] = { dashed(p.name), type = p.type == "bool" and "boolean" or "string" }
		if p.positional then
			specs[#specs + 1] = "[" .. p.name:upper() .. "]"
			positional[#positional + 1] = p
		end
	end
	local args = {}
	for i, a in ipairs(argv) do
		if a == "--" then table.move(argv, i, #argv, #args + 1, args) break end
		local name = a:match("^%-%-no%-([^=]+)$")
		local p = name and decl.byname[(name:gsub("-", "_"))]
		args[#args + 1] = (p and p.type == "bool") and ("--" .. name .. "=false") or a
	end
	local opts, rest = cli.parse({ args = specs }, flags, args, 1)
	if opts == "help" then return "help" end
	if not opts then return nil, rest .. " (see --help)" end
	local values, given = {}, {}
	for _, p in ipairs(decl) do
		local raw = opts[p.name]
		if raw == nil and p.positional then
			for i, q in ipairs(positional) do if q == p then raw = rest[i] end end
		end
		if raw ~= nil then
			local v, err = M.convert(p, raw)
			if v == nil then return nil, ("--%s: %s"):format(dashed(p.name), err) end
			values[p.name], given[p.name] = v, true
		elseif p.required then
			return nil, ("--%s is required"):format(dashed(p.name))
		else
			values[p.name] = p.value
		end
	end
	return values, given
end

-- A value as the command line writes it (sizes as 64M, durations as 250ms).
function M.format(p, v)
	if type(v) == "table" then
		local out = {}
		for i, x in ipairs(v) do out[i] = M.format(p, x) end
		return table.concat(out, ",")
	end
	if p and p.type == "size" and type(v) == "number" then
		for pow = 4, 1, -1 do
			local unit = 1024 ^ pow
			if v >= unit and v % unit == 0 then
				return ("%d%s"):format(v // unit, ("KMGT"):sub(pow, pow))
			end
		end
		return ("%d"):format(v)
	end
	if p and p.type == "duration" and type(v) == "number" then
		if v ~= 0 and v < 1 then
			local ms = v * 1e3
			if ms >= 1 then return ("%gms"):format(ms) end
			return ("%gus"):format(v * 1e6)
		end
		if v >= 60 and v % 60 == 0 then return ("%gmin"):format(v / 60) end
		return ("%gs"):format(v)
	end
	return tostring(v)
end

-- The --help text of the declared parameters (after `usage` and `about`).
function M.help(decl, usage, about)
	local lines = { usage }
	if about and about ~= "" then lines[#lines + 1] = about end
	local sections, order = {}, {}
	for _, p in ipairs(decl) do
		local s = p.section or "Parameters"
		if not sections[s] then sections[s] = {} order[#order + 1] = s end
		local meta = p.meta or p.type == "choice" and table.concat(p.choices, "|") or METAVAR[p.type]
		if p.list then meta = meta .. ",..." end
		local flag = "--" .. dashed(p.name) .. (meta ~= "" and " " .. meta or "")
		local extra = {}
		if p.unit then extra[#extra + 1] = p.unit end
		if p.value ~= nil then extra[#extra + 1] = "default " .. M.format(p, p.value)
		elseif p.required then extra[#extra + 1] = "required" end
		local text = p.help .. (#extra > 0 and (" (" .. table.concat(extra, "; ") .. ")") or "")
		table.insert(sections[s], { flag, text })
	end
	for _, s in ipairs(order) do
		lines[#lines + 1] = s .. ":"
		local w = 0
		for _, r in ipairs(sections[s]) do w = math.max(w, #r[1]) end
		w = math.min(w, 28)
		for _, r in ipairs(sections[s]) do
			if #r[1] > w then
				lines[#lines + 1] = "  " .. r[1]
				lines[#lines + 1] = (" "):rep(w + 4) .. r[2]
			else
				lines[#lines + 1] = ("  %-" .. w .. "s  %s"):format(r[1], r[2])
			end
		end
	end
	lines[#lines + 1] = "Values: sizes 512, 64K, 1.5G (K M G T = 1024^n, KB MB GB = 1000^n); "
		.. "durations 250ms, 2s, 1.5min; lists a,b,c; --name=value or --name value."
	return table.concat(lines, "\n") .. "\n"
end

return M
