-- kx.cli: the flag parser every `kxrun TOOL` shares, so that all of them
-- read flags, print --help and exit the same way.
--
--   return require("kx.cli").tool{
--     name = "rfork",                      -- kxrun rfork ...
--     summary = "resume a child of a prepared parent (kx.rfork)",
--     commands = {                         -- or args/flags/run at the top
--       { name = "resume", args = { "ADDRESS", "ID", "KEY" },
--         summary = "become a child of the parent",
--         flags = { { "timeout-ms", "t", type = "integer", arg = "MS",
--                     default = 10000, env = "KXRUN_RFORK_TIMEOUT_MS",
--                     help = "each request to the parent" } },
--         run = function(opts, args, tool) ... end },
--     },
--     epilog = "free text printed last by --help",
--   }
--
-- Flags: `--name value`, `--name=value`, `-n value`, `-nvalue`; booleans
-- take no value (`--wait`, `-w`).  A flag is { long, short, type = "string"
-- (default) | "number" | "integer" | "boolean" | "list" (repeatable),
-- choices = {...}, default =, env = "VAR" (its value when the flag is not
-- given), required = true, arg = "NAME" (in --help), help = "..." }.
-- opts holds them by long name with '-' as '_' (opts.timeout_ms).
-- Arguments: names; "[NAME]" optional, "NAME..." takes the rest (flags then
-- end where it starts).  `--` ends flags.  -h/--help anywhere prints help.
--
-- run(opts, args, tool) returns the exit status: a number, true/nil (0),
-- false (1), or nil, message: "kxrun TOOL: message" on stderr, status 1.
-- tool:usage(msg) prints a usage error and returns 2, for checks the
-- declarations cannot express.  Exit statuses, everywhere: 0 ok, 1 the
-- work failed, 2 bad usage ("kxrun TOOL: MESSAGE (see kxrun TOOL --help)").
local cli = {}

local Tool = {}
Tool.__index = Tool

local function key(long) return (long:gsub("-", "_")) end

function Tool:usage(msg)
	io.stderr:write(("kxrun %s: %s (see kxrun %s --help)\n"):format(self.name, msg, self.name))
	return 2
end

function Tool:fail(msg)
	io.stderr:write(("kxrun %s: %s\n"):format(self.name, msg))
	return 1
end

-- ---- help ---------------------------------------------------------------

local function wrap(text, indent, width)
	local out, line = {}, ""
	for word in tostring(text):gmatch("%S+") do
		if #line > 0 and indent + #line + 1 + #word > width then
			out[#out + 1] = line
			line = word
		else
			line = #line > 0 and (line .. " " .. word) or word
		end
	end
	if #line > 0 then out[#out + 1] = line end
	return table.concat(out, "\n" .. (" "):rep(indent))
end

local function flag_label(f)
	local long = "--" .. f[1]
	if f.type ~= "boolean" then
		long = long .. " " .. (f.arg or (f.choices and table.concat(f.choices, "|")) or
			(f.type == "number" or f.type == "integer") and "N" or "VALUE")
	end
	return (f[2] and ("-" .. f[2] .. ", ") or "    ") .. long
end

local function flag_help(f)
	local h = f.help or ""
	local extra = {}
	if f.default ~= nil then extra[#extra + 1] = "default " .. tostring(f.default) end
	if f.env then extra[#extra + 1] = "$" .. f.env end
	if f.required then extra[#extra + 1] = "required" end
	if f.type == "list" then extra[#extra + 1] = "repeatable" end
	if #extra > 0 then h = h .. (#h > 0 and " " or "") .. "(" .. table.concat(extra, "; ") .. ")" end
	return h
end

local function list_rows(rows, out)
	local w = 0
	for _, r in ipairs(rows) do w = math.max(w, #r[1]) end
	w = math.min(w, 28)
	for _, r in ipairs(rows) do
		if r[2] == "" then
			out[#out + 1] = "  " .. r[1]
		elseif #r[1] > w then
			out[#out + 1] = "  " .. r[1]
			out[#out + 1] = (" "):rep(w + 4) .. wrap(r[2], w + 4, 79)
		else
			out[#out + 1] = "  " .. r[1] .. (" "):rep(w - #r[1] + 2) .. wrap(r[2], w + 4, 79)
		end
	end
end

local function synopsis(cmd)
	local parts = {}
	for _, f in ipairs(cmd.flags or {}) do
		if f.required then parts[#parts + 1] = "--" .. f[1] .. " " .. (f.arg or "VALUE") end
	end
	if cmd.flags and #cmd.flags > 0 then parts[#parts + 1] = "[flags]" end
	for _, a in ipairs(cmd.args or {}) do parts[#parts + 1] = a end
	return table.concat(parts, " ")
end

-- Prints the help of the tool, or of one of its commands (a plain function:
-- `help` in a declaration is its text).
local function print_help(self, cmd)
	local out = {}
	if cmd and cmd.name then
		out[#out + 1] = ("usage: kxrun %s %s %s"):format(self.name, cmd.name, synopsis(cmd))
		if cmd.summary then out[#out + 1] = "\n" .. wrap(cmd.summary, 0, 79) end
		if cmd.help then out[#out + 1] = "\n" .. cmd.help:gsub("\n$", "") end
	elseif self.commands then
		out[#out + 1] = ("usage: kxrun %s COMMAND [flags] [args]"):format(self.name)
		out[#out + 1] = ("       kxrun %s COMMAND --help"):format(self.name)
		if self.summary then out[#out + 1] = "\n" .. wrap(self.summary, 0, 79) end
		out[#out + 1] = "\nCommands:"
		local rows = {}
		for _, c in ipairs(self.commands) do
			rows[#rows + 1] = { (c.name .. " " .. synopsis(c)):gsub(" $", ""), c.summary or "" }
		end
		list_rows(rows, out)
	else
		out[#out + 1] = ("usage: kxrun %s %s"):format(self.name, synopsis(self))
		if self.summary then out[#out + 1] = "\n" .. wrap(self.summary, 0, 79) end
		if self.help then out[#out + 1] = "\n" .. self.help:gsub("\n$", "") end
	end
	local flags = {}
	for _, f in ipairs((cmd or self).flags or {}) do flags[#flags + 1] = f end
	if cmd and cmd ~= self then
		for _, f in ipairs(self.flags or {}) do flags[#flags + 1] = f end
	end
	out[#out + 1] = "\nFlags:"
	local rows = {}
	for _, f in ipairs(flags) do rows[#rows + 1] = { flag_label(f), flag_help(f) } end
	rows[#rows + 1] = { "-h, --help", "print this help" }
	list_rows(rows, out)
	if self.epilog then out[#out + 1] = "\n" .. self.epilog:gsub("\n$", "") end
	io.stdout:write(table.concat(out, "\n"), "\n")
	return 0
end

-- ---- parsing ------------------------------------------------------------------

local function convert(f, v, from)
	local t = f.type or "string"
	if t == "number" or t == "integer" then
		local n = tonumber(v)
		if not n or (t == "integer" and math.type(n) ~= "integer" and n ~= math.floor(n)) then
			return nil, ("%s wants %s, got '%s'"):format(from, t == "integer" and "an integer" or "a number", v)
		end
		return t == "integer" and math.tointeger(n) or n
	end
	if t == "boolean" then
		if v == true or v == "true" or v == "1" or v == "yes" then return true end
		if v == "false" or v == "0" or v == "no" then return false end
		return nil, ("%s wants true or false, got '%s'"):format(from, tostring(v))
	end
	if f.choices then
		for _, c in ipairs(f.choices) do if c == v then return v end end
		return nil, ("%s wants one of %s, got '%s'"):format(from, table.concat(f.choices, ", "), v)
	end
	return v
end

local function find_flag(flags, name, short)
	for _, f in ipairs(flags) do
		if (short and f[2] == name) or (not short and f[1] == name) then return f end
	end
end

-- Parses argv[first..] for cmd; returns opts, args, or nil, message.
local function parse(cmd, flags, argv, first)
	local opts, args = {}, {}
	local given = {}
	local specs = cmd.args or {}
	local variadic = #specs > 0 and specs[#specs]:match("%.%.%.%]?$") ~= nil
	local nfixed = variadic and #specs - 1 or #specs
	local i = first
	local function set(f, v, from)
		local val, err = convert(f, v, from)
		if val == nil then return err end
		if f.type == "list" then
			local l = opts[key(f[1])] or {}
			l[#l + 1] = val
			opts[key(f[1])] = l
		else
			opts[key(f[1])] = val
		end
		given[f] = true
	end
	while i <= #argv do
		local a = argv[i]
		if variadic and #args > nfixed then   -- the rest is the command's
			for j = i, #argv do args[#args + 1] = argv[j] end
			break
		end
		if a == "--" then
			for j = i + 1, #argv do args[#args + 1] = argv[j] end
			break
		elseif a == "-h" or a == "--help" then
			return "help"
		elseif a:sub(1, 2) == "--" then
			local name, v = a:match("^%-%-([^=]+)=(.*)$")
			name = name or a:sub(3)
			local f = find_flag(flags, name)
			if not f then return nil, ("unknown flag '--%s'"):format(name) end
			if f.type == "boolean" then
				v = v == nil and true or v
			elseif v == nil then
				i = i + 1
				v = argv[i]
				if v == nil then return nil, ("flag '--%s' needs a value"):format(name) end
			end
			local err = set(f, v, "flag '--" .. name .. "'")
			if err then return nil, err end
		elseif a:sub(1, 1) == "-" and #a > 1 and not tonumber(a) then
			local name, rest = a:sub(2, 2), a:sub(3)
			local f = find_flag(flags, name, true)
			if not f then return nil, ("unknown flag '-%s'"):format(name) end
			local v
			if f.type == "boolean" then
				if #rest > 0 then return nil, ("flag '-%s' takes no value"):format(name) end
				v = true
			elseif #rest > 0 then
				v = rest
			else
				i = i + 1
				v = argv[i]
				if v == nil then return nil, ("flag '-%s' needs a value"):format(name) end
			end
			local err = set(f, v, "flag '-" .. name .. "'")
			if err then return nil, err end
		else
			args[#args + 1] = a
		end
		i = i + 1
	end
	for _, f in ipairs(flags) do
		if not given[f] then
			local ev = f.env and os.getenv(f.env)
			if ev and ev ~= "" then
				local err = set(f, ev, "$" .. f.env)
				if err then return nil, err end
			elseif f.required then
				return nil, ("flag '--%s' is required"):format(f[1])
			elseif f.default ~= nil then
				opts[key(f[1])] = f.default
			end
		end
	end
	local need, max = 0, #specs
	for _, s in ipairs(specs) do
		if not s:match("^%[") then need = need + 1 end
	end
	if variadic then max = math.huge end
	if #args < need then
		return nil, ("missing %s"):format(specs[#args + 1])
	elseif #args > max then
		return nil, ("unexpected argument '%s'"):format(args[max + 1])
	end
	return opts, args
end

local function finish(tool, ok, ...)
	if ok == nil and select("#", ...) > 0 and (...) ~= nil then
		return tool:fail(tostring((...)))
	end
	if ok == nil or ok == true then return 0 end
	if ok == false then return 1 end
	if math.type(ok) == "integer" then return ok end
	if type(ok) == "number" then return math.tointeger(ok) or 1 end
	return 0
end

-- The tool's main function: function(argv) -> exit status.
function cli.tool(decl)
	for _, k in ipairs{ "usage", "fail" } do   -- Tool's methods, not fields
		if rawget(decl, k) ~= nil then
			error(("kx.cli.tool: '%s' is a method, not a field (help text goes in 'help')"):format(k), 2)
		end
	end
	local tool = setmetatable(decl, Tool)
	return function(argv)
		local cmd, first = tool, 1
		if tool.commands then
			local name = argv[1]
			if name == "-h" or name == "--help" or name == "help" then return print_help(tool) end
			if name == nil then
				local names = {}
				for _, c in ipairs(tool.commands) do names[#names + 1] = c.name end
				return tool:usage("missing command: one of " .. table.concat(names, ", "))
			end
			cmd = nil
			for _, c in ipairs(tool.commands) do if c.name == name then cmd = c end end
			if not cmd then return tool:usage(("unknown command '%s'"):format(name)) end
			first = 2
		end
		local flags = {}
		for _, f in ipairs(cmd.flags or {}) do flags[#flags + 1] = f end
		if cmd ~= tool then
			for _, f in ipairs(tool.flags or {}) do flags[#flags + 1] = f end
		end
		local opts, args = parse(cmd, flags, argv, first)
		if opts == "help" then return print_help(tool, cmd ~= tool and cmd or nil) end
		if not opts then
			return tool:usage(cmd ~= tool and (cmd.name .. ": " .. args) or args)
		end
		return finish(tool, cmd.run(opts, args, tool))
	end
end

cli.parse = parse   -- for tests and tools with their own driver
return cli
