-- kx.sched.policy: Tracekit's scheduling policy, written once.  The text in
-- SOURCE is plain Lua 5.1 (Redis's script language) that also runs as Lua
-- 5.4: the embedded backend loads it here, and the Redis dispatch script
-- (kx.sched.scripts) embeds the same text, so both backends decide through
-- one piece of code.
--
-- Strict FIFO is the callers' part (they only ever offer the head).  A node
-- is feasible when alive, with a free slot (parallel > 0) and remaining
-- capacity >= the task's units.  Without a weigher the feasible node with
-- the smallest id wins (first fit over nodes in id order); with one, the
-- node of least (order max: most) running tasks (`instances`) or used units
-- (`vcpu`).  Ties go as Tracekit's sort of (metric, id) goes: to the smaller
-- id with min, to the larger id with max (its sort is reversed whole).  Ids
-- compare byte by byte: Redis's Lua compares strings with strcoll, which
-- depends on the server's locale.
local SOURCE = [==[
local M = {}

-- Every accepted weigher name -> the node field it ranks by (false: first
-- fit).  "" is Tracekit's default; "none" and "first-fit" say the same.
M.weighers = { [""] = false, none = false, ["first-fit"] = false,
	instances = "running", vcpu = "used" }
-- Every accepted order -> whether larger is better.
M.orders = { min = false, max = true }

-- a < b comparing bytes (never the locale's collation).
function M.id_less(a, b)
	if a == b then return false end
	local n = #a
	if #b < n then n = #b end
	for i = 1, n do
		local x, y = string.byte(a, i), string.byte(b, i)
		if x ~= y then return x < y end
	end
	return #a < #b
end

function M.feasible(n, units)
	if n.alive == false then return false end
	local parallel = n.parallel or 0
	if parallel > 0 and (n.running or 0) >= parallel then return false end
	return n.capacity - (n.used or 0) >= units
end

-- The node for a head task of `units` among nodes {id, capacity, parallel,
-- running, used, alive}: its index, or nil and the largest capacity of a
-- live node (0 without one): a head larger than that can never start.
-- weigher and order must be names from the tables above.
function M.pick(nodes, units, weigher, order)
	local field = M.weighers[weigher or ""]
	local larger = M.orders[order or "min"]
	local best, best_v, largest = nil, nil, 0
	for i = 1, #nodes do
		local n = nodes[i]
		if n.alive ~= false and n.capacity > largest then largest = n.capacity end
		if M.feasible(n, units) then
			local v = field and (n[field] or 0) or 0
			local better
			if not best then
				better = true
			elseif v ~= best_v then
				if larger then better = v > best_v else better = v < best_v end
			elseif larger and field then
				better = M.id_less(nodes[best].id, n.id)
			else
				better = M.id_less(n.id, nodes[best].id)
			end
			if better then best, best_v = i, v end
		end
	end
	if best then return best end
	return nil, largest
end

-- capacity if > 0, else floor(allocation_ratio x cores), at least 1.
function M.capacity(capacity, ratio, cores)
	if capacity and capacity > 0 then return capacity end
	local c = math.floor(ratio * cores + 1e-9)
	if c < 1 then c = 1 end
	return c
end

return M
]==]

local M = assert(load(SOURCE, "=kx.sched.policy (kx/sched/policy.lua)"))()
M.SOURCE = SOURCE

-- The canonical weigher for a name ("" for first fit), or nil and why.
function M.weigher(name)
	if name == nil then return "" end
	if type(name) == "string" and M.weighers[name] ~= nil then
		return M.weighers[name] and name or ""
	end
	return nil, ("unknown weigher '%s' (instances, vcpu, or none for first fit)"):format(tostring(name))
end

function M.order(name)
	if name == nil then return "min" end
	if type(name) == "string" and M.orders[name] ~= nil then return name end
	return nil, ("order must be min or max, got %s"):format(tostring(name))
end

return M
