-- kx.lab.plot: charts as SVG text (no dependency): line with error bars,
-- bar, CDF, time series and Gantt.  Each function takes a table and returns
-- the SVG document as a string; plot.save(path, svg) writes it.
--
--   plot.line{ title=, x = {label=, unit=, log=}, y = {label=, unit=, log=, zero=},
--              series = { {name=, points = { {x, y, lo, hi}, ... }}, ... } }
--   plot.bar{ title=, categories = {"a", "b"}, y = {...},
--             series = { {name=, values = { {y, lo, hi}, ... }}, ... } }
--   plot.cdf{ title=, x = {...}, series = { {name=, values = {1.2, 1.3, ...}}, ... } }
--   plot.timeseries{ title=, x = {...}, y = {...}, series = { {name=, points = { {t, v}, ... }} } }
--   plot.gantt{ title=, x = {...}, legend = { {name=, color=}, ... },
--               rows = { {label=, bars = { {start=, stop=, wait=, label=, color=, failed=} }} } }
--
-- A unit of "B" labels ticks as sizes (4K, 1M); x.log / y.log use a log scale
-- (ticks at powers of axis.base: 10, or 2 for sizes).
-- Every chart has a title, labelled axes with units, and a legend when it
-- has more than one series.
local M = {}

M.palette = { "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#8C6D31", "#000000" }

local function esc(s)
	return (tostring(s):gsub("[&<>\"]", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;" }))
end
M.escape = esc

local function num(v) return ("%.2f"):format(v):gsub("%.?0+$", "") end

-- ---- ticks and labels ----------------------------------------------------------

local function nice_step(span, count)
	local raw = span / math.max(count, 1)
	local mag = 10 ^ math.floor(math.log(raw, 10))
	for _, m in ipairs{ 1, 2, 2.5, 5, 10 } do
		if raw <= m * mag * 1.0000001 then return m * mag end
	end
	return 10 * mag
end

local function size_label(v)
	for pow = 5, 1, -1 do
		local u = 1024 ^ pow
		if math.abs(v) >= u then
			local x = v / u
			return (x == math.floor(x) and ("%d"):format(x) or ("%.3g"):format(x)) .. ("KMGTP"):sub(pow, pow)
		end
	end
	return ("%.4g"):format(v)
end

-- Tick text for value v on an axis (step: distance between ticks).
local function tick_label(axis, v, step)
	if axis.format then return axis.format(v) end
	if axis.unit == "B" then return size_label(v) end
	local a = math.abs(v)
	if a >= 1e4 and step and step >= 1000 then
		for _, s in ipairs{ { 1e12, "T" }, { 1e9, "G" }, { 1e6, "M" }, { 1e3, "k" } } do
			if a >= s[1] then return ("%.4g%s"):format(v / s[1], s[2]) end
		end
	end
	if step and step > 0 and not axis.log then
		local d = math.max(0, -math.floor(math.log(step, 10) + 1e-9))
		return ("%." .. math.min(d, 9) .. "f"):format(v)
	end
	return ("%.4g"):format(v)
end

local function axis_title(axis, default)
	local label = axis.label or default or ""
	if axis.unit and axis.unit ~= "" then return ("%s (%s)"):format(label, axis.unit) end
	return label
end

-- A scale: {lo, hi, ticks, map(v) -> pixel} over [p0, p1].
local function scale(axis, lo, hi, p0, p1, count)
	if lo == nil then lo, hi = 0, 1 end
	local s = { ticks = {} }
	if axis.log and lo > 0 then
		local base = axis.base or (axis.unit == "B" and 2 or 10)
		local e0 = math.floor(math.log(lo, base) + 1e-9)
		local e1 = math.ceil(math.log(hi, base) - 1e-9)
		if e1 == e0 then e1 = e0 + 1 end
		local every = math.max(1, math.ceil((e1 - e0) / 8))
		for e = e0, e1, every do s.ticks[#s.ticks + 1] = base ^ e end
		s.lo, s.hi = base ^ e0, base ^ e1
		local l0, l1 = math.log(s.lo), math.log(s.hi)
		s.map = function(v)
			if v <= 0 then v = s.lo end
			return p0 + (math.log(v) - l0) / (l1 - l0) * (p1 - p0)
		end
		return s
	end
	if hi - lo < 1e-12 * math.max(1, math.abs(hi)) then
		local pad = math.abs(hi) > 0 and math.abs(hi) * 0.1 or 1
		lo, hi = lo - pad, hi + pad
	end
	local step = nice_step(hi - lo, count or 6)
	s.lo, s.hi, s.step = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step, step
	for i = 0, math.floor((s.hi - s.lo) / step + 0.5) do s.ticks[#s.ticks + 1] = s.lo + i * step end
	s.map = function(v) return p0 + (v - s.lo) / (s.hi - s.lo) * (p1 - p0) end
	return s
end

-- ---- the canvas ------------------------------------------------------------------

local Canvas = {}
Canvas.__index = Canvas

local function text_width(s, size) return utf8.len(tostring(s)) * (size or 12) * 0.58 end

-- A canvas with title and legend laid out; the plot area is c.x0..c.x1, c.y0..c.y1.
local function canvas(spec, names, left, colors)
	local c = setmetatable({ w = spec.width or 720, h = spec.height or 420, out = {}, colors = colors }, Canvas)
	local legend = {}
	if #names > 1 or spec.legend then
		local x, row = 0, 0
		for i, name in ipairs(names) do
			local w = 22 + text_width(name) + 16
			if x > 0 and x + w > c.w - 80 then x, row = 0, row + 1 end
			legend[i] = { x = x, row = row, name = name }
			x = x + w
		end
		c.legend_rows = #names > 0 and (legend[#legend].row + 1) or 0
	else
		c.legend_rows = 0
	end
	c.legend = legend
	c.x0 = left or 72
	c.x1 = c.w - 24
	c.y0 = 40 + c.legend_rows * 18 + (c.legend_rows > 0 and 14 or 6)
	c.y1 = c.h - 52
	return c
end

function Canvas:add(s) self.out[#self.out + 1] = s end

function Canvas:text(x, y, s, attrs)
	self:add(('<text x="%s" y="%s"%s>%s</text>'):format(num(x), num(y), attrs or "", esc(s)))
end

function Canvas:frame(spec, xaxis, yaxis, xs, ys)
	self:text(self.w / 2, 22, spec.title or "", ' text-anchor="middle" font-size="15" font-weight="bold"')
	for i, l in ipairs(self.legend) do
		local color = self.colors and self.colors[i] or M.palette[(i - 1) % #M.palette + 1]
		local x, y = 72 + l.x, 46 + l.row * 18
		self:add(('<rect x="%s" y="%s" width="16" height="10" fill="%s"/>'):format(num(x), num(y - 9), color))
		self:text(x + 22, y, l.name)
	end
	-- grid and ticks
	if ys then
		for _, t in ipairs(ys.ticks) do
			local y = ys.map(t)
			self:add(('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#e3e3e3"/>'):format(num(self.x0), num(y), num(self.x1), num(y)))
			self:text(self.x0 - 6, y + 4, tick_label(yaxis, t, ys.step), ' text-anchor="end" fill="#333"')
		end
		self:text(16, (self.y0 + self.y1) / 2, axis_title(yaxis),
			(' text-anchor="middle" transform="rotate(-90 16 %s)"'):format(num((self.y0 + self.y1) / 2)))
	end
	if xs then
		local last = -1e9
		for _, t in ipairs(xs.ticks) do
			local x = xs.map(t)
			local label = tick_label(xaxis, t, xs.step)
			if x - text_width(label) / 2 > last + 4 then
				self:add(('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#e3e3e3"/>'):format(num(x), num(self.y0), num(x), num(self.y1)))
				self:text(x, self.y1 + 17, label, ' text-anchor="middle" fill="#333"')
				last = x + text_width(label) / 2
			end
		end
	end
	self:text((self.x0 + self.x1) / 2, self.h - 12, axis_title(xaxis), ' text-anchor="middle"')
	self:add(('<rect x="%s" y="%s" width="%s" height="%s" fill="none" stroke="#888"/>')
		:format(num(self.x0), num(self.y0), num(self.x1 - self.x0), num(self.y1 - self.y0)))
end

-- An error bar from lo to hi (pixels) at x, with 8-pixel caps.
function Canvas:error_bar(x, lo, hi, color, width)
	self:add(('<path d="M%s %sV%sM%s %sH%sM%s %sH%s" stroke="%s" stroke-width="%s" fill="none"/>'):format(
		num(x), num(lo), num(hi), num(x - 4), num(lo), num(x + 4), num(x - 4), num(hi), num(x + 4), color, width))
end

function Canvas:svg(spec)
	local head = ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
		.. 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12" role="img">'
		.. '<title>%s</title><rect width="100%%" height="100%%" fill="#fff"/>')
		:format(self.w, self.h, self.w, self.h, esc(spec.title or "chart"))
	return head .. table.concat(self.out, "") .. "</svg>\n"
end

local function names_of(series)
	local out = {}
	for i, s in ipairs(series or {}) do out[i] = tostring(s.name or ("series " .. i)) end
	return out
end

-- " [lo, hi]" after a tooltip's value, or "" without an interval.
local function interval_tip(axis, lo, hi)
	return lo and hi and (" [%s, %s]"):format(tick_label(axis, lo), tick_label(axis, hi)) or ""
end

local function extent(lo, hi, v)
	if v == nil or v ~= v or v == math.huge or v == -math.huge then return lo, hi end
	return math.min(lo or v, v), math.max(hi or v, v)
end

local function check(spec, fname, field)
	if type(spec) ~= "table" then
		error(("bad argument #1 to '%s' (table expected, got %s)"):format(fname, type(spec)), 3)
	end
	if type(spec[field]) ~= "table" then
		error(("bad argument #1 to '%s' (field '%s' must be a list)"):format(fname, field), 3)
	end
end

local function value_range(axis, lo, hi, zero)
	if zero and not axis.log and lo then lo, hi = math.min(lo, 0), math.max(hi, 0) end
	if axis.log and lo and lo <= 0 then axis = setmetatable({ log = false }, { __index = axis }) end
	return axis, lo, hi
end

-- ---- charts --------------------------------------------------------------------------

function M.line(spec)
	check(spec, "line", "series")
	local xa, ya = spec.x or {}, spec.y or {}
	local xlo, xhi, ylo, yhi
	for _, s in ipairs(spec.series) do
		for _, p in ipairs(s.points or {}) do
			xlo, xhi = extent(xlo, xhi, p[1])
			ylo, yhi = extent(ylo, yhi, p[3] or p[2])
			ylo, yhi = extent(ylo, yhi, p[4] or p[2])
		end
	end
	local c = canvas(spec, names_of(spec.series))
	xa, xlo, xhi = value_range(xa, xlo, xhi, false)
	ya, ylo, yhi = value_range(ya, ylo, yhi, ya.zero ~= false)
	local xs = scale(xa, xlo, xhi, c.x0 + 10, c.x1 - 10, 7)
	local ys = scale(ya, ylo, yhi, c.y1, c.y0, 6)
	c:frame(spec, xa, ya, xs, ys)
	for i, s in ipairs(spec.series) do
		local color = M.palette[(i - 1) % #M.palette + 1]
		local pts = {}
		for _, p in ipairs(s.points or {}) do
			if p[2] == p[2] then pts[#pts + 1] = p end
		end
		table.sort(pts, function(a, b) return a[1] < b[1] end)
		local path = {}
		for j, p in ipairs(pts) do path[j] = ("%s,%s"):format(num(xs.map(p[1])), num(ys.map(p[2]))) end
		if #path > 1 then
			c:add(('<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>'):format(table.concat(path, " "), color))
		end
		for _, p in ipairs(pts) do
			local x, y = xs.map(p[1]), ys.map(p[2])
			if p[3] and p[4] then c:error_bar(x, ys.map(p[3]), ys.map(p[4]), color, 1.5) end
			local tip = ("%s: %s → %s"):format(s.name or "", tick_label(xa, p[1]), tick_label(ya, p[2]))
				.. interval_tip(ya, p[3], p[4])
			c:add(('<circle cx="%s" cy="%s" r="3.5" fill="%s"><title>%s</title></circle>'):format(num(x), num(y), color, esc(tip)))
		end
	end
	return c:svg(spec)
end

function M.bar(spec)
	check(spec, "bar", "series")
	local cats = spec.categories or {}
	local ya = spec.y or {}
	local ylo, yhi
	for _, s in ipairs(spec.series) do
		for _, v in pairs(s.values or {}) do
			ylo, yhi = extent(ylo, yhi, v[1])
			ylo, yhi = extent(ylo, yhi, v[2])
			ylo, yhi = extent(ylo, yhi, v[3])
		end
	end
	local c = canvas(spec, names_of(spec.series))
	ya, ylo, yhi = value_range(ya, ylo, yhi, true)
	local ys = scale(ya, ylo, yhi, c.y1, c.y0, 6)
	c:frame(spec, spec.x or {}, ya, nil, ys)
	local n = math.max(#cats, 1)
	local group = (c.x1 - c.x0) / n
	local bw = group * 0.8 / math.max(#spec.series, 1)
	local step = math.max(1, math.ceil(#cats * 70 / (c.x1 - c.x0)))
	for k, cat in ipairs(cats) do
		local gx = c.x0 + (k - 1) * group
		if (k - 1) % step == 0 then
			c:text(gx + group / 2, c.y1 + 17, cat, ' text-anchor="middle" fill="#333"')
		end
		for i, s in ipairs(spec.series) do
			local v = s.values and s.values[k]
			if v and v[1] then
				local color = M.palette[(i - 1) % #M.palette + 1]
				local x = gx + group * 0.1 + (i - 1) * bw
				local base, top = ys.map(math.max(ys.lo, 0)), ys.map(v[1])
				local tip = ("%s, %s: %s"):format(s.name or "", cat, tick_label(ya, v[1])) .. interval_tip(ya, v[2], v[3])
				c:add(('<rect x="%s" y="%s" width="%s" height="%s" fill="%s"><title>%s</title></rect>'):format(
					num(x), num(math.min(base, top)), num(math.max(bw - 2, 1)), num(math.abs(base - top)), color, esc(tip)))
				if v[2] and v[3] then c:error_bar(x + bw / 2 - 1, ys.map(v[2]), ys.map(v[3]), "#222", 1.2) end
			end
		end
	end
	return c:svg(spec)
end

function M.cdf(spec)
	check(spec, "cdf", "series")
	local xa = spec.x or {}
	local xlo, xhi
	local sorted = {}
	for i, s in ipairs(spec.series) do
		local v = {}
		for _, x in ipairs(s.values or {}) do
			if x == x then v[#v + 1] = x xlo, xhi = extent(xlo, xhi, x) end
		end
		table.sort(v)
		sorted[i] = v
	end
	local c = canvas(spec, names_of(spec.series))
	xa, xlo, xhi = value_range(xa, xlo, xhi, false)
	local ya = { label = spec.y and spec.y.label or "fraction of runs ≤ x" }
	local xs = scale(xa, xlo, xhi, c.x0 + 10, c.x1 - 10, 7)
	local ys = scale(ya, 0, 1, c.y1, c.y0, 5)
	c:frame(spec, xa, ya, xs, ys)
	for i, v in ipairs(sorted) do
		local color = M.palette[(i - 1) % #M.palette + 1]
		if #v > 0 then
			local d = { ("M%s %s"):format(num(xs.map(v[1])), num(ys.map(0))) }
			for j, x in ipairs(v) do
				d[#d + 1] = ("H%sV%s"):format(num(xs.map(x)), num(ys.map(j / #v)))
			end
			c:add(('<path d="%s" fill="none" stroke="%s" stroke-width="2"><title>%s (%d runs)</title></path>')
				:format(table.concat(d), color, esc(spec.series[i].name or ""), #v))
		end
	end
	return c:svg(spec)
end

-- At most `max` points of a long series (every k-th, keeping the last).
local function thin(points, max)
	if #points <= max then return points end
	local out, k = {}, #points / max
	for i = 1, max do out[i] = points[math.floor((i - 1) * k) + 1] end
	out[#out + 1] = points[#points]
	return out
end

function M.timeseries(spec)
	check(spec, "timeseries", "series")
	local xa, ya = spec.x or { label = "time", unit = "s" }, spec.y or {}
	local xlo, xhi, ylo, yhi
	for _, s in ipairs(spec.series) do
		for _, p in ipairs(s.points or {}) do
			xlo, xhi = extent(xlo, xhi, p[1])
			ylo, yhi = extent(ylo, yhi, p[2])
		end
	end
	local c = canvas(spec, names_of(spec.series))
	ya, ylo, yhi = value_range(ya, ylo, yhi, ya.zero ~= false)
	local xs = scale(xa, xlo, xhi, c.x0, c.x1, 7)
	local ys = scale(ya, ylo, yhi, c.y1, c.y0, 6)
	c:frame(spec, xa, ya, xs, ys)
	for i, s in ipairs(spec.series) do
		local color = M.palette[(i - 1) % #M.palette + 1]
		local pts = {}
		for _, p in ipairs(s.points or {}) do if p[2] == p[2] then pts[#pts + 1] = p end end
		table.sort(pts, function(a, b) return a[1] < b[1] end)
		pts = thin(pts, 2000)
		local path = {}
		for j, p in ipairs(pts) do path[j] = ("%s,%s"):format(num(xs.map(p[1])), num(ys.map(p[2]))) end
		if #pts == 1 then
			c:add(('<circle cx="%s" cy="%s" r="3" fill="%s"/>'):format(num(xs.map(pts[1][1])), num(ys.map(pts[1][2])), color))
		elseif #path > 1 then
			c:add(('<polyline points="%s" fill="none" stroke="%s" stroke-width="1.6"><title>%s</title></polyline>')
				:format(table.concat(path, " "), color, esc(s.name or "")))
		end
	end
	return c:svg(spec)
end

-- Rows of bars over time; consecutive rows with the same label are labelled once.
function M.gantt(spec)
	check(spec, "gantt", "rows")
	local xa = spec.x or { label = "time", unit = "s" }
	local xlo, xhi
	for _, r in ipairs(spec.rows) do
		for _, b in ipairs(r.bars or {}) do
			xlo, xhi = extent(xlo, xhi, b.wait or b.start)
			xlo, xhi = extent(xlo, xhi, b.stop)
		end
	end
	local left = 24
	for _, r in ipairs(spec.rows) do left = math.max(left, text_width(r.label or "", 11) + 16) end
	left = math.min(left, 200)
	local rowh = math.max(8, math.min(26, 360 / math.max(#spec.rows, 1)))
	local legend, colors = {}, {}
	for i, l in ipairs(spec.legend or {}) do legend[i], colors[i] = l.name, l.color end
	local s2 = setmetatable({ height = spec.height or (70 + #legend // 4 * 18 + #spec.rows * rowh + 60) }, { __index = spec })
	local c = canvas(s2, legend, left, colors)
	local xs = scale(xa, xlo, xhi, c.x0, c.x1, 7)
	c:frame(spec, xa, { label = "" }, xs, nil)
	for i, r in ipairs(spec.rows) do
		local y = c.y0 + (i - 1) * (c.y1 - c.y0) / #spec.rows
		local h = (c.y1 - c.y0) / #spec.rows
		if r.label and (i == 1 or r.label ~= spec.rows[i - 1].label) then
			c:text(c.x0 - 6, y + h / 2 + 4, r.label, ' text-anchor="end" font-size="11" fill="#333"')
			if i > 1 then
				c:add(('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#bbb"/>'):format(num(c.x0), num(y), num(c.x1), num(y)))
			end
		end
		for _, b in ipairs(r.bars or {}) do
			local color = b.color or (b.failed and "#D55E00" or M.palette[1])
			if b.wait and b.wait < b.start then
				c:add(('<rect x="%s" y="%s" width="%s" height="%s" fill="#ccc"><title>%s waiting %s s</title></rect>'):format(
					num(xs.map(b.wait)), num(y + h * 0.3), num(math.max(xs.map(b.start) - xs.map(b.wait), 0.5)),
					num(h * 0.4), esc(b.label or ""), ("%.3f"):format(b.start - b.wait)))
			end
			c:add(('<rect x="%s" y="%s" width="%s" height="%s" fill="%s" stroke="#fff" stroke-width="0.5"><title>%s</title></rect>'):format(
				num(xs.map(b.start)), num(y + h * 0.1), num(math.max(xs.map(b.stop) - xs.map(b.start), 1)),
				num(h * 0.8), color, esc((b.label or "") .. (" %.3f s"):format(b.stop - b.start))))
		end
	end
	return c:svg(spec)
end

function M.save(path, svg)
	return kx.write_file(path, svg)
end

return M
