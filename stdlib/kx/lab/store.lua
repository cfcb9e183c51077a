-- kx.lab.store: a results directory.
--
--   DIR/results.jsonl  one JSON object per measurement, appended (one write)
--                      as soon as it is taken:
--                      {"point":{...params},"system":"kx","rep":3,
--                       "values":{"time":1.2},"units":{"time":"ms"},
--                       "t":1733450000.123,"session":1}
--                      (+ "error" for a failed run, "stopped":"budget" on the
--                      last run of a point cut short by its time budget)
--   DIR/env.json       the machine and the sessions that wrote the rows
--   DIR/results.csv    derived from results.jsonl (one row per measurement)
--
-- A store without a directory keeps its rows in memory only.
local json = kx.json

local M = {}

local read_file = kx.read_file

-- The identity of a point (and system) for resuming: canonical JSON.
function M.key(point, system)
	return json.encode(point) .. (system and ("|" .. system) or "")
end

-- Rows of a results.jsonl text; a last line cut short (no newline: the
-- writer was killed mid-line) is reported as `torn`.
function M.parse_jsonl(text, label)
	local rows, problems, n = {}, {}, 0
	local torn = text ~= "" and text:sub(-1) ~= "\n"
	for line in text:gmatch("([^\n]*)\n") do
		n = n + 1
		if line:match("%S") then
			local v, err = json.decode(line)
			if type(v) == "table" then
				rows[#rows + 1] = v
			else
				problems[#problems + 1] = ("%s:%d: %s"):format(label or "results.jsonl", n, err or "not an object")
			end
		end
	end
	return rows, problems, torn
end

-- store.read(dir) -> rows, env (or nil), problems
function M.read(dir)
	local text = read_file(dir .. "/results.jsonl")
	if not text then return nil, nil, { dir .. "/results.jsonl: no such file" } end
	local rows, problems, torn = M.parse_jsonl(text)
	if torn then problems[#problems + 1] = "results.jsonl: the last line is incomplete (an interrupted write)" end
	local env = read_file(dir .. "/env.json")
	return rows, env and json.decode(env) or nil, problems
end

local Store = {}
Store.__index = Store

-- store.open(dir or nil, experiment_name) -> store | nil, message
-- Existing rows are read back (a run continues where it stopped); a last
-- line cut short by a kill is dropped.
function M.open(dir, name)
	local st = setmetatable({ dir = dir, rows = {} }, Store)
	if not dir then return st end
	local ok, err = kx.mkdir(dir)
	if not ok then return nil, err end
	local envtext = read_file(dir .. "/env.json")
	local env = envtext and json.decode(envtext)
	if type(env) == "table" and env.experiment and name and env.experiment ~= name then
		return nil, ("%s holds the results of experiment '%s', not '%s' (use another --out)")
			:format(dir, env.experiment, name)
	end
	st.env = type(env) == "table" and env or nil
	local path = dir .. "/results.jsonl"
	local text = read_file(path) or ""
	local rows, problems, torn = M.parse_jsonl(text)
	for _, p in ipairs(problems) do kx.log.warn("kx.lab: %s/%s (line skipped)", dir, p) end
	if torn then
		-- keep every complete line; the cut one was never a measurement
		local whole = text:match("^(.*\n)") or ""
		local wok, werr = kx.write_file(path, whole)
		if not wok then return nil, werr end
		kx.log.warn("kx.lab: %s: dropped a line cut short by an interruption", path)
	end
	st.rows = rows
	local f, ferr = io.open(path, "a")
	if not f then return nil, ferr end
	f:setvbuf("no")
	st.file = f
	return st
end

-- Appends one row: one write(2) of a whole line on an O_APPEND descriptor.
function Store:append(row)
	self.rows[#self.rows + 1] = row
	if not self.file then return true end
	local ok, err = self.file:write(json.encode(row) .. "\n")
	if not ok then return nil, ("%s/results.jsonl: %s"):format(self.dir, err) end
	return true
end

function Store:close()
	if self.file then self.file:close() self.file = nil end
end

-- Counts per point and system, and the points their budget closed.
function Store:done()
	local counts, closed = {}, {}
	for _, r in ipairs(self.rows) do
		if type(r.point) == "table" and r.rep then
			local k = M.key(r.point, r.system)
			counts[k] = (counts[k] or 0) + 1
			if r.stopped then closed[M.key(r.point)] = true end
		end
	end
	return counts, closed
end

function Store:write_env(env)
	self.env = env
	if not self.dir then return true end
	return kx.write_file(self.dir .. "/env.json", json.encode(env, { indent = 2 }) .. "\n")
end

-- ---- the machine ------------------------------------------------------------

local function first_match(path, pattern)
	local text = read_file(path)
	return text and text:match(pattern)
end

local function loadavg()
	local a, b, c = (read_file("/proc/loadavg") or ""):match("^(%S+) (%S+) (%S+)")
	if not a then return nil end
	return { tonumber(a), tonumber(b), tonumber(c) }
end
M.loadavg = loadavg

-- Facts about this machine and kxrun (one session's env.json fields).
function M.machine()
	local cpus = 0
	for line in (read_file("/proc/cpuinfo") or ""):gmatch("[^\n]+") do
		if line:match("^processor%s*:") then cpus = cpus + 1 end
	end
	local mem_kb = tonumber(first_match("/proc/meminfo", "MemTotal:%s*(%d+)"))
	return {
		hostname = (read_file("/proc/sys/kernel/hostname") or ""):gsub("%s+$", ""),
		kernel = (read_file("/proc/sys/kernel/osrelease") or ""):gsub("%s+$", ""),
		kernel_version = (read_file("/proc/sys/kernel/version") or ""):gsub("%s+$", ""),
		os = first_match("/etc/os-release", 'PRETTY_NAME="([^"]*)"'),
		cpu_model = first_match("/proc/cpuinfo", "model name%s*:%s*([^\n]-)%s*\n") or "unknown",
		cpu_count = cpus,
		memory_mb = mem_kb and mem_kb // 1024,
		kxrun_version = kx.version,
		lua = _VERSION,
	}
end

-- The git commit of the repository holding `path` (a script), if any.
function M.git(path)
	local dir = path and path:match("^(.*)/[^/]*$") or "."
	local code, out = kx.exec{ "git", "-C", dir, "rev-parse", "HEAD" }
	if code ~= 0 or not out then return nil end
	local _, status = kx.exec{ "git", "-C", dir, "status", "--porcelain", "--untracked-files=no" }
	local _, top = kx.exec{ "git", "-C", dir, "rev-parse", "--show-toplevel" }
	return { commit = out:gsub("%s+$", ""), dirty = (status or "") ~= "",
		repo = top and top:gsub("%s+$", "") or nil }
end

-- ---- CSV ----------------------------------------------------------------------

-- The shortest decimal text that reads back as the same number.
function M.number_text(v)
	if math.type(v) == "integer" then return tostring(v) end
	if v ~= v or v == math.huge or v == -math.huge then return tostring(v) end
	-- a whole number as one ("100", not "1e+02", which is as short and as exact)
	if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return ("%.0f"):format(v) end
	for digits = 1, 17 do
		local s = ("%." .. digits .. "g"):format(v)
		if tonumber(s) == v then return s end
	end
	return ("%.17g"):format(v)
end

local function csv_cell(v)
	if v == nil or v == json.null then return "" end
	if type(v) == "number" then return M.number_text(v) end
	if type(v) == "table" then
		local out = {}
		for i, x in ipairs(v) do out[i] = type(x) == "number" and M.number_text(x) or tostring(x) end
		v = table.concat(out, ",")
	end
	v = tostring(v)
	if v:find('[,"\n\r]') or v:match("^%s") or v:match("%s$") then
		return '"' .. v:gsub('"', '""') .. '"'
	end
	return v
end

-- Column order: system, the parameters (in `order`, then any others by
-- name), rep, each metric as "name (unit)", then error, stopped, t, session.
function M.columns(rows, order)
	local params, metrics, units, seen, has_system = {}, {}, {}, {}, false
	for _, name in ipairs(order or {}) do
		if not seen[name] then seen[name] = true params[#params + 1] = name end
	end
	local extra, mseen, mlist = {}, {}, {}
	for _, r in ipairs(rows) do
		if r.system then has_system = true end
		for k in pairs(type(r.point) == "table" and r.point or {}) do
			if not seen[k] then seen[k] = true extra[#extra + 1] = k end
		end
		for k in pairs(type(r.values) == "table" and r.values or {}) do
			if not mseen[k] then mseen[k] = true mlist[#mlist + 1] = k end
			if type(r.units) == "table" and r.units[k] then units[k] = r.units[k] end
		end
	end
	table.sort(extra)
	table.sort(mlist)
	for _, k in ipairs(extra) do params[#params + 1] = k end
	for _, k in ipairs(mlist) do metrics[#metrics + 1] = k end
	return { system = has_system, params = params, metrics = metrics, units = units }
end

function M.csv(rows, order)
	local c = M.columns(rows, order)
	local head = {}
	if c.system then head[#head + 1] = "system" end
	for _, p in ipairs(c.params) do head[#head + 1] = csv_cell(p) end
	head[#head + 1] = "rep"
	for _, m in ipairs(c.metrics) do
		head[#head + 1] = csv_cell(c.units[m] and ("%s (%s)"):format(m, c.units[m]) or m)
	end
	for _, h in ipairs{ "error", "stopped", "t", "session" } do head[#head + 1] = h end
	local lines = { table.concat(head, ",") }
	for _, r in ipairs(rows) do
		local cells = {}
		local point, values = r.point or {}, r.values or {}
		if c.system then cells[#cells + 1] = csv_cell(r.system) end
		for _, p in ipairs(c.params) do cells[#cells + 1] = csv_cell(point[p]) end
		cells[#cells + 1] = csv_cell(r.rep)
		for _, m in ipairs(c.metrics) do cells[#cells + 1] = csv_cell(values[m]) end
		for _, k in ipairs{ "error", "stopped", "t", "session" } do cells[#cells + 1] = csv_cell(r[k]) end
		lines[#lines + 1] = table.concat(cells, ",")
	end
	return table.concat(lines, "\r\n") .. "\r\n"
end

-- CSV text (RFC 4180) -> list of records (lists of strings).
function M.parse_csv(text)
	local records, rec, i, n = {}, {}, 1, #text
	local field = {}
	while i <= n do
		local ch = text:sub(i, i)
		if ch == '"' and #field == 0 then
			local j = i + 1
			while true do
				local q = text:find('"', j, true)
				if not q then return nil, "unterminated quoted field" end
				if text:sub(q + 1, q + 1) == '"' then
					field[#field + 1] = text:sub(j, q)
					j = q + 2
				else
					field[#field + 1] = text:sub(j, q - 1)
					i = q + 1
					break
				end
			end
		elseif ch == "," then
			rec[#rec + 1] = table.concat(field) field = {}
			i = i + 1
		elseif ch == "\r" or ch == "\n" then
			rec[#rec + 1] = table.concat(field) field = {}
			records[#records + 1] = rec rec = {}
			i = i + ((ch == "\r" and text:sub(i + 1, i + 1) == "\n") and 2 or 1)
		else
			local j = text:find('[,\r\n]', i) or n + 1
			field[#field + 1] = text:sub(i, j - 1)
			i = j
		end
	end
	if #field > 0 or #rec > 0 then rec[#rec + 1] = table.concat(field) records[#records + 1] = rec end
	return records
end

function M.write_csv(dir, rows, order)
	return kx.write_file(dir .. "/results.csv", M.csv(rows, order))
end

return M
