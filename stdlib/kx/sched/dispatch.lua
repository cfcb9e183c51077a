-- kx.sched.dispatch: Tracekit's dispatcher (tools/scheduler/dispatcher.py)
-- on kx.sched: its ffmpeg profiles with its exact command lines, its task
-- plans (a seeded mix, one task per input, round robin or by duration over
-- nodes) and its submission modes (pulses, FIFO under a pending limit,
-- per-node queues, dribbling), with its log lines.
local M = {}

-- Tracekit's worker builds this command from a task's fields.
local function ffmpeg_argv(p, input, output)
	local argv = { "ffmpeg", "-i", input, "-vf", "scale=" .. p.scale,
		"-c:v", (p.vcodec == "hevc" or p.vcodec == "h265") and "libx265" or "libx264",
		"-preset", p.preset, "-crf", tostring(p.crf or 28) }
	if p.vthreads then argv[#argv + 1] = "-threads:v"; argv[#argv + 1] = tostring(p.vthreads) end
	if p.fthreads then argv[#argv + 1] = "-filter_threads"; argv[#argv + 1] = tostring(p.fthreads) end
	for _, a in ipairs{ "-c:a", "copy", output } do argv[#argv + 1] = a end
	return argv
end

local function profile(t)
	t.argv = function(input, output) return ffmpeg_argv(t, input, output) end
	return t
end

-- Tracekit's profiles (dispatcher.py's profile_from_name): cpu_units, the
-- encode, and argv(input, output).  Add your own with M.profile{...} or any
-- table with cpu_units and argv.
M.profiles = {
	fast1080p = profile{ scale = "1920:1080", vcodec = "h264", preset = "fast", crf = 28, vthreads = 2, fthreads = 2, cpu_units = 2 },
	medium480p = profile{ scale = "854:480", vcodec = "h264", preset = "medium", crf = 28, vthreads = 2, fthreads = 2, cpu_units = 2 },
	hevc1080p = profile{ scale = "1920:1080", vcodec = "hevc", preset = "medium", crf = 28, vthreads = 4, fthreads = 4, cpu_units = 4 },
	light1c = profile{ scale = "854:480", vcodec = "h264", preset = "veryfast", crf = 28, vthreads = 1, fthreads = 1, cpu_units = 1 },
}
M.profile = profile
-- Tracekit's other names for light1c
M.aliases = { light480p1c = "light1c", light_1c = "light1c" }

function M.lookup(name)
	local n = tostring(name):lower()
	n = M.aliases[n] or n
	return M.profiles[name] or M.profiles[n], M.profiles[name] and name or n
end

-- A generator of 32-bit numbers that depends on nothing but the seed.
local function xorshift(seed)
	local x = (seed or 1) & 0xffffffff
	if x == 0 then x = 0x9e3779b9 end
	return function()
		x = x ~ ((x << 13) & 0xffffffff)
		x = x ~ (x >> 17)
		x = x ~ ((x << 5) & 0xffffffff)
		return x
	end
end

local function check_mix(mix)
	local names, sum = {}, 0
	for name, w in pairs(mix) do
		if not M.lookup(name) then error(("unknown profile '%s'"):format(tostring(name)), 3) end
		if type(w) ~= "number" or w < 0 or w ~= w then error(("weight of %s must be a number >= 0"):format(name), 3) end
		names[#names + 1] = name
		sum = sum + w
	end
	if sum <= 0 then error("mix has no positive weight", 3) end
	table.sort(names)
	return names, sum
end

-- The profile of each of `total` tasks for a mix {name = weight}: counts in
-- proportion (largest remainders), shuffled by the seed.
function M.sequence(mix, total, seed)
	local names, sum = check_mix(mix)
	local counts, given, rest = {}, 0, {}
	for _, n in ipairs(names) do
		local exact = total * mix[n] / sum
		counts[n] = math.floor(exact)
		given = given + counts[n]
		rest[#rest + 1] = { n, exact - counts[n] }
	end
	table.sort(rest, function(a, b) return a[2] > b[2] or (a[2] == b[2] and a[1] < b[1]) end)
	for i = 1, total - given do counts[rest[i][1]] = counts[rest[i][1]] + 1 end
	local seq = {}
	for _, n in ipairs(names) do for _ = 1, counts[n] do seq[#seq + 1] = n end end
	local rand = xorshift(seed)
	for i = #seq, 2, -1 do
		local j = rand() % i + 1
		seq[i], seq[j] = seq[j], seq[i]
	end
	return seq
end

-- One profile per input, drawn by weight (Tracekit's --total 0 with --mix).
local function per_input(mix, n, seed)
	local names, sum = check_mix(mix)
	local rand, seq = xorshift(seed), {}
	for i = 1, n do
		local r = rand() % 1000000 / 1000000 * sum
		local pick = names[#names]
		for _, name in ipairs(names) do
			if r < mix[name] then pick = name break end
			r = r - mix[name]
		end
		seq[i] = pick
	end
	return seq
end

function M.list_inputs(dir)
	local code, out = kx.exec{ "find", dir, "-maxdepth", "1", "-type", "f" }
	local files = {}
	for line in (code == 0 and out or ""):gmatch("[^\n]+") do
		local l = line:lower()
		if l:match("%.mp4$") or l:match("%.mkv$") or l:match("%.mov$") or l:match("%.m4v$") then
			files[#files + 1] = line
		end
	end
	table.sort(files)
	return files
end

local function stem(path)
	return (path:match("([^/]*)$"):gsub("%.[^.]*$", ""))
end

local function duration(path)
	local code, out = kx.exec{ "ffprobe", "-v", "error", "-show_entries", "format=duration",
		"-of", "default=nokey=1:noprint_wrappers=1", path }
	return code == 0 and tonumber(out) or 0
end

local function scale_x(s) return (s:gsub(":", "x")) end

-- The tasks for o (see S:dispatch): {argv, cpu_units, profile, input,
-- output, node (per-node queues only)} in submission order; nil and why.
function M.plan(o)
	local tasks = {}
	if o.commands then
		for i, c in ipairs(o.commands) do
			local argv = type(c) == "string" and { "sh", "-c", c } or c
			tasks[i] = { argv = argv, cpu_units = argv.cpu_units or 1, profile = "command" }
		end
		return tasks
	end
	if o.mix then check_mix(o.mix) end
	local inputs = o.inputs and M.list_inputs(o.inputs) or {}
	local outputs = o.outputs or "outputs"
	local total = o.total or 0
	if #inputs == 0 and (total > 0 or not o.mix) then
		return nil, ("no input videos in %s (kxrun sched gen-inputs makes some)"):format(tostring(o.inputs))
	end
	if o.mix then
		local seq = total > 0 and M.sequence(o.mix, total, o.seed) or per_input(o.mix, #inputs, o.seed)
		for i, name in ipairs(seq) do
			local p, canon = M.lookup(name)
			local input = inputs[(i - 1) % #inputs + 1]
			local suffix = ("%s_%s_%s"):format(scale_x(p.scale or "x"), p.vcodec or "cmd", p.preset or canon)
			if total > 0 then suffix = suffix .. ("_n%04d"):format(i - 1) end
			local output = ("%s/%s_%s.mp4"):format(outputs, stem(input), suffix)
			tasks[i] = { argv = p.argv(input, output), cpu_units = p.cpu_units or 1, profile = canon,
				input = input, output = output }
		end
	else
		-- Tracekit without --mix: one task per input with --scale/--preset/--crf
		local p = profile{ scale = o.scale or "1280:720", vcodec = "h264", preset = o.preset or "veryfast",
			crf = o.crf or 28 }
		local order = inputs
		if o.policy == "duration-greedy" or o.policy == "lpt-duration" or o.policy == "duration-online"
			or o.policy == "online-duration" then
			-- longest first (LPT), by ffprobe's duration
			local d = {}
			for _, f in ipairs(inputs) do d[f] = duration(f) end
			order = { table.unpack(inputs) }
			table.sort(order, function(a, b) if d[a] ~= d[b] then return d[a] > d[b] end return a < b end)
			tasks.durations = d
		end
		for i, input in ipairs(order) do
			local output = ("%s/%s_%s_crf%s.mp4"):format(outputs, stem(input), scale_x(p.scale), p.crf)
			tasks[i] = { argv = p.argv(input, output), cpu_units = 1, profile = "default",
				input = input, output = output }
		end
	end
	return tasks
end

-- Nodes for the per-node queues: round robin (rr3, and every --mix plan),
-- or the least loaded by duration (duration-greedy / lpt-duration).
function M.route(tasks, nodes, policy)
	local load = {}
	for _, n in ipairs(nodes) do load[n] = 0 end
	for i, t in ipairs(tasks) do
		if policy == "duration-greedy" or policy == "lpt-duration" then
			local best = nodes[1]
			for _, n in ipairs(nodes) do if load[n] < load[best] then best = n end end
			t.node = best
			load[best] = load[best] + (tasks.durations and tasks.durations[t.input] or 0)
		else
			t.node = nodes[(i - 1) % #nodes + 1]
		end
	end
end

return M
