-- kx.lab.stats: the statistics of a set of measurements.
--
--   local stats = require "kx.lab.stats"
--   local s = stats.summary{ 12.1, 11.8, 12.4, 13.0, 12.2 }
--   -- s.n, s.mean, s.median, s.min, s.max, s.p5, s.p95, s.p99, s.stddev,
--   -- s.cov, s.ci_lo, s.ci_hi (bootstrap interval of the median, s.level)
--   local r = stats.ratio(ours, peer)   -- r.ratio = median(ours)/median(peer), r.lo, r.hi
--
-- Quantiles interpolate between order statistics (Hyndman & Fan type 7: R's
-- default, numpy's `linear`, Python's statistics.quantiles(method="inclusive")).
-- stddev is the sample standard deviation (n - 1).  Bootstrap intervals are
-- percentile intervals over resamples drawn by a generator with a fixed seed,
-- so a report computed twice from the same data says the same.
local M = {}

local function numbers(xs, name)
	if type(xs) ~= "table" then
		error(("bad argument #1 to '%s' (table of numbers expected, got %s)"):format(name, type(xs)), 3)
	end
	for i = 1, #xs do
		if type(xs[i]) ~= "number" then
			error(("bad argument #1 to '%s' (item %d is a %s, not a number)"):format(name, i, type(xs[i])), 3)
		end
	end
	return xs
end

function M.sorted(xs)
	local s = table.move(numbers(xs, "sorted"), 1, #xs, 1, {})
	table.sort(s)
	return s
end

function M.mean(xs)
	numbers(xs, "mean")
	if #xs == 0 then return nil end
	local sum = 0
	for i = 1, #xs do sum = sum + xs[i] end
	return sum / #xs
end

-- Type 7 quantile of an already sorted list.
local function quantile_sorted(s, q)
	local n = #s
	if n == 0 then return nil end
	local h = (n - 1) * q + 1
	local lo = math.floor(h)
	if lo >= n then return s[n] end
	return s[lo] + (h - lo) * (s[lo + 1] - s[lo])
end
M.quantile_sorted = quantile_sorted

function M.quantile(xs, q)
	if type(q) ~= "number" or q < 0 or q > 1 then
		error("bad argument #2 to 'quantile' (a number in [0, 1] expected)", 2)
	end
	return quantile_sorted(M.sorted(xs), q)
end

function M.median(xs)
	return quantile_sorted(M.sorted(xs), 0.5)
end

function M.stddev(xs)
	numbers(xs, "stddev")
	local n = #xs
	if n < 2 then return nil end
	local mean = M.mean(xs)
	local ss = 0
	for i = 1, n do ss = ss + (xs[i] - mean) ^ 2 end
	return math.sqrt(ss / (n - 1))
end

-- A small generator of its own (splitmix64), so that resampling neither
-- depends on nor disturbs math.random's state.
function M.rng(seed)
	local x = math.tointeger(seed or 0x2545F4914F6CDD1D)
	return function(n)
		x = x + 0x9E3779B97F4A7C15
		local z = x
		z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
		z = (z ~ (z >> 27)) * 0x94D049BB133111EB
		z = z ~ (z >> 31)
		return (z >> 11) % n + 1
	end
end

-- The k-th smallest of a[1..n], reordering a (quickselect).
local function select_k(a, n, k)
	local lo, hi = 1, n
	while lo < hi do
		local mid = (lo + hi) // 2
		-- median of three as the pivot
		if a[mid] < a[lo] then a[mid], a[lo] = a[lo], a[mid] end
		if a[hi] < a[lo] then a[hi], a[lo] = a[lo], a[hi] end
		if a[hi] < a[mid] then a[hi], a[mid] = a[mid], a[hi] end
		local pivot = a[mid]
		local i, j = lo, hi
		while i <= j do
			while a[i] < pivot do i = i + 1 end
			while a[j] > pivot do j = j - 1 end
			if i <= j then
				a[i], a[j] = a[j], a[i]
				i, j = i + 1, j - 1
			end
		end
		if k <= j then hi = j elseif k >= i then lo = i else return a[k] end
	end
	return a[k]
end

-- Median of a[1..n] (reorders a).
local function median_inplace(a, n)
	local k = (n + 1) // 2
	local m = select_k(a, n, k)
	if n % 2 == 1 then return m end
	local up = a[k + 1]
	for i = k + 2, n do if a[i] < up then up = a[i] end end
	return (m + up) / 2
end

-- Medians of `count` resamples of xs.
local function resample_medians(xs, count, next_index)
	local n, buf, out = #xs, {}, {}
	for b = 1, count do
		for i = 1, n do buf[i] = xs[next_index(n)] end
		out[b] = median_inplace(buf, n)
	end
	return out
end

local function resamples_for(n, opts)
	local want = opts and opts.resamples or 2000
	-- keep a report of large samples quick: at most ~4 million draws
	return math.max(200, math.min(want, 4000000 // math.max(n, 1)))
end

local function interval(list, level)
	table.sort(list)
	local tail = (1 - level) / 2
	return quantile_sorted(list, tail), quantile_sorted(list, 1 - tail)
end

-- Bootstrap interval of the median: lo, hi (opts.level = 0.95,
-- opts.resamples = 2000, opts.seed).
function M.median_ci(xs, opts)
	numbers(xs, "median_ci")
	local level = opts and opts.level or 0.95
	if #xs == 0 then return nil end
	if #xs == 1 then return xs[1], xs[1] end
	local meds = resample_medians(xs, resamples_for(#xs, opts), M.rng(opts and opts.seed))
	return interval(meds, level)
end

-- median(xs) / median(base), with a bootstrap interval: { ratio, lo, hi, level }.
-- nil when either is empty or base's median is 0.
function M.ratio(xs, base, opts)
	numbers(xs, "ratio")
	numbers(base, "ratio")
	if #xs == 0 or #base == 0 then return nil end
	local mb = M.median(base)
	if mb == 0 then return nil end
	local level = opts and opts.level or 0.95
	local r = { ratio = M.median(xs) / mb, level = level }
	if #xs == 1 and #base == 1 then
		r.lo, r.hi = r.ratio, r.ratio
		return r
	end
	local count = resamples_for(math.max(#xs, #base), opts)
	local rng = M.rng(opts and opts.seed)
	local a = resample_medians(xs, count, rng)
	local b = resample_medians(base, count, rng)
	local ratios = {}
	for i = 1, count do
		ratios[#ratios + 1] = b[i] ~= 0 and a[i] / b[i] or math.huge
	end
	r.lo, r.hi = interval(ratios, level)
	return r
end

-- Everything at once (opts as median_ci's).
function M.summary(xs, opts)
	local s = M.sorted(xs)
	local n = #s
	local out = { n = n, level = opts and opts.level or 0.95 }
	if n == 0 then return out end
	out.min, out.max = s[1], s[n]
	out.mean = M.mean(s)
	out.median = quantile_sorted(s, 0.5)
	out.p5, out.p95, out.p99 = quantile_sorted(s, 0.05), quantile_sorted(s, 0.95), quantile_sorted(s, 0.99)
	out.stddev = M.stddev(s)
	if out.stddev and out.mean ~= 0 then out.cov = out.stddev / math.abs(out.mean) end
	out.ci_lo, out.ci_hi = M.median_ci(xs, opts)
	return out
end

-- A number for people: 4 significant digits, no exponent from 0.001 to 10^7.
function M.fmt(v, sig)
	if v == nil then return "-" end
	if type(v) ~= "number" then return tostring(v) end
	if v ~= v then return "nan" end
	if v == math.huge then return "inf" elseif v == -math.huge then return "-inf" end
	if v == 0 then return "0" end
	sig = sig or 4
	local a = math.abs(v)
	if math.type(v) == "integer" and a < 1e9 then return tostring(v) end
	if a >= 1e7 or a < 1e-3 then return ("%." .. (sig - 1) .. "e"):format(v) end
	local e = math.floor(math.log(a, 10))
	if 10 ^ (e + 1) <= a then e = e + 1 end
	local s = ("%." .. math.max(0, sig - 1 - e) .. "f"):format(v)
	return s
end

-- An aligned text table: header is a list of column names, rows lists of
-- cells (numbers are formatted with fmt and right-aligned).
function M.table(header, rows)
	local cells, width, numeric = {}, {}, {}
	for c, h in ipairs(header) do width[c], numeric[c] = #h, true end
	for r, row in ipairs(rows) do
		cells[r] = {}
		for c = 1, #header do
			local v = row[c]
			local text = type(v) == "number" and M.fmt(v) or tostring(v == nil and "" or v)
			if type(v) ~= "number" and v ~= nil and not text:match("^[%d.%-+e%%x%[%] ,]*$") then
				numeric[c] = false
			end
			cells[r][c] = text
			width[c] = math.max(width[c], utf8.len(text) or #text)
		end
	end
	local function line(row)
		local out = {}
		for c = 1, #header do
			local text = row[c]
			local pad = (" "):rep(width[c] - (utf8.len(text) or #text))
			out[c] = (numeric[c] and c > 1) and pad .. text or text .. pad
		end
		return (table.concat(out, "  "):gsub("%s+$", ""))
	end
	local rule = {}
	for c = 1, #header do rule[c] = ("-"):rep(width[c]) end
	local lines = { line(header), table.concat(rule, "  ") }
	for _, row in ipairs(cells) do lines[#lines + 1] = line(row) end
	return table.concat(lines, "\n") .. "\n"
end

return M
