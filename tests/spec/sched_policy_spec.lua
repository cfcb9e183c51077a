-- kx.sched's policy (kx.sched.policy, one text for both backends) on states
-- whose right node was worked out by hand (the reasoning is beside each
-- case), checked three ways: the policy as the embedded backend calls it,
-- and the Redis dispatch script run here under a stub redis.call (the same
-- text Redis runs; the real-server run is in sched_redis_spec.lua).
local policy = require "kx.sched.policy"
local scripts = require "kx.sched.scripts"

-- node(id, capacity, parallel, running, used [, alive])
local function node(id, capacity, parallel, running, used, alive)
	return { id = id, capacity = capacity, parallel = parallel, running = running, used = used,
		alive = alive ~= false }
end

-- Each: nodes, the head's units, weigher, order, and the node it must go
-- to (false: none now) with `largest` when none.
local CASES = {
	{ name = "first fit takes the smallest id among feasible nodes, whatever the listing order",
	  -- n1 has 4 - 3 = 1 free unit < 2; n2 and n3 have 4 free; first fit
	  -- in id order: n2 before n3.
	  nodes = { node("n3", 4, 0, 0, 0), node("n1", 4, 0, 1, 3), node("n2", 4, 0, 0, 0) },
	  units = 2, weigher = "", order = "min", want = "n2" },
	{ name = "a node without a free slot is not feasible, whatever its capacity",
	  -- a: parallel 2 with 2 running -> no slot though 6 units are free;
	  -- b: capacity-only (parallel 0), 2 free >= 1.
	  nodes = { node("a", 8, 2, 2, 2), node("b", 2, 0, 0, 0) },
	  units = 1, weigher = "", order = "min", want = "b" },
	{ name = "instances min: fewest running, ties to the smaller id",
	  -- running a 3, b 1, c 1: min is 1, shared by b and c -> b.
	  nodes = { node("c", 8, 0, 1, 4), node("a", 8, 0, 3, 2), node("b", 8, 0, 1, 6) },
	  units = 1, weigher = "instances", order = "min", want = "b" },
	{ name = "instances max: most running",
	  nodes = { node("c", 8, 0, 1, 4), node("a", 8, 0, 3, 2), node("b", 8, 0, 1, 6) },
	  units = 1, weigher = "instances", order = "max", want = "a" },
	{ name = "vcpu min: least used units",
	  -- used a 2, b 6, c 4 -> a.
	  nodes = { node("a", 8, 0, 3, 2), node("b", 8, 0, 1, 6), node("c", 8, 0, 1, 4) },
	  units = 1, weigher = "vcpu", order = "min", want = "a" },
	{ name = "vcpu max: ties go to the larger id, as Tracekit's reversed sort of (metric, id)",
	  -- used a 4, b 4, c 1: max is 4, shared by a and b; Tracekit sorts
	  -- (4,'b') > (4,'a') first when reversed -> b.
	  nodes = { node("a", 8, 0, 1, 4), node("b", 8, 0, 1, 4), node("c", 8, 0, 1, 1) },
	  units = 1, weigher = "vcpu", order = "max", want = "b" },
	{ name = "vcpu max only among nodes that can hold the head",
	  -- 3 units: b has 8 - 6 = 2 free (out); a (used 2) and c (used 4)
	  -- hold it; the most used of those is c.
	  nodes = { node("a", 8, 0, 3, 2), node("b", 8, 0, 1, 6), node("c", 8, 0, 1, 4) },
	  units = 3, weigher = "vcpu", order = "max", want = "c" },
	{ name = "a head that fits no node now waits (head-of-line blocking)",
	  -- 4 units: n1 has 1 free, n2 2; n1's capacity 4 could hold it later.
	  nodes = { node("n1", 4, 0, 1, 3), node("n2", 2, 0, 0, 0) },
	  units = 4, weigher = "", order = "min", want = false, largest = 4 },
	{ name = "a head larger than every node can never start",
	  nodes = { node("n1", 4, 0, 1, 3), node("n2", 2, 0, 0, 0) },
	  units = 5, weigher = "", order = "min", want = false, largest = 4 },
	{ name = "a node whose heartbeat is gone counts for nothing, not even as the largest",
	  nodes = { node("big", 16, 0, 0, 0, false), node("n1", 2, 0, 0, 0) },
	  units = 4, weigher = "", order = "min", want = false, largest = 2 },
	{ name = "ids compare byte by byte: 'N' (0x4e) sorts before 'n' (0x6e)",
	  -- an en_US collation would put node-a first (case folded); bytes put
	  -- Node-z first.
	  nodes = { node("node-b", 4, 0, 0, 0), node("Node-z", 4, 0, 0, 0), node("node-a", 4, 0, 0, 0) },
	  units = 1, weigher = "", order = "min", want = "Node-z" },
	{ name = "ids compare byte by byte: n10 before n9, a prefix before its extensions",
	  nodes = { node("n9", 4, 0, 0, 0), node("n10", 4, 0, 0, 0), node("n1", 4, 0, 1, 4), node("n1x", 4, 0, 0, 0) },
	  units = 1, weigher = "", order = "min", want = "n10" },
	{ name = "instances min ties compare ids by bytes too",
	  nodes = { node("b", 4, 0, 0, 0), node("B", 4, 0, 0, 0), node("a", 4, 0, 1, 1) },
	  units = 1, weigher = "instances", order = "min", want = "B" },
}

-- Redis's side of the dispatch script, for a state of nodes and pending
-- task JSON strings: the commands the script uses, on plain tables.
local function stub_redis(state)
	local kv, lists, hashes, sets = state.kv, state.lists, state.hashes, state.sets
	local function list(k) lists[k] = lists[k] or {} return lists[k] end
	local cmds = {
		SMEMBERS = function(k) local out = {} for m in pairs(sets[k] or {}) do out[#out + 1] = m end return out end,
		EXISTS = function(k) return (kv[k] or lists[k] or hashes[k]) and 1 or 0 end,
		HMGET = function(k, ...)
			local out = {}
			for i, f in ipairs{ ... } do out[i] = hashes[k] and hashes[k][f] and tostring(hashes[k][f]) or false end
			return out
		end,
		HSET = function(k, ...)
			local a = { ... }
			hashes[k] = hashes[k] or {}
			for i = 1, #a, 2 do hashes[k][a[i]] = tostring(a[i + 1]) end
			return 1
		end,
		TIME = function() local t = kx.time() return { tostring(math.floor(t)), tostring(math.floor(t % 1 * 1e6)) } end,
		LINDEX = function(k, i) return list(k)[i + 1] or false end,
		LPOP = function(k) return table.remove(list(k), 1) or false end,
		RPUSH = function(k, ...) for _, v in ipairs{ ... } do table.insert(list(k), v) end return #list(k) end,
		LPUSH = function(k, ...) for _, v in ipairs{ ... } do table.insert(list(k), 1, v) end return #list(k) end,
		LTRIM = function(k, a, b)
			assert(a == 0 and b == 0, "stub redis: LTRIM k 0 0 only")
			lists[k] = { list(k)[1] }
			return "OK"
		end,
		LLEN = function(k) return #list(k) end,
		LRANGE = function(k, a, b)
			assert(a == 0 and b == -1, "stub redis: LRANGE k 0 -1 only")
			return { table.unpack(list(k)) }
		end,
		DEL = function(...) for _, k in ipairs{ ... } do kv[k], lists[k], hashes[k] = nil, nil, nil end return 1 end,
		-- (the expiry of SET k v PX ms is not modelled)
		SET = function(k, v) kv[k] = v return "OK" end,
		GET = function(k) return kv[k] or false end,
		SADD = function(k, m)
			sets[k] = sets[k] or {}
			if sets[k][m] then return 0 end
			sets[k][m] = true
			return 1
		end,
	}
	return {
		call = function(cmd, ...)
			local f = assert(cmds[cmd], "stub redis: no " .. cmd)
			return f(...)
		end,
		error_reply = function(msg) return { err = msg } end,
	}
end

-- Runs a script's text (dispatch unless named) as Redis would, with ARGV,
-- on a stub.
local function run_script(state, argv, name)
	local env = {
		redis = stub_redis(state), ARGV = argv, KEYS = {},
		cjson = { encode = kx.json.encode, decode = kx.json.decode },
		pairs = pairs, ipairs = ipairs, tonumber = tonumber, tostring = tostring, type = type,
		pcall = pcall, string = string, math = math, table = table,
	}
	local fn = assert(load(scripts[name or "dispatch"], "=" .. (name or "dispatch"), "t", env))
	return fn()
end

local P = "kx:sched:"

local function state_of(case)
	local st = { kv = {}, lists = {}, hashes = {}, sets = { [P .. "nodes"] = {} } }
	for _, n in ipairs(case.nodes) do
		st.sets[P .. "nodes"][n.id] = true
		if n.alive then st.kv[P .. "alive:" .. n.id] = "1" end
		st.hashes[P .. "node:" .. n.id] = { capacity = tostring(n.capacity), parallel = tostring(n.parallel),
			running = tostring(n.running), used = tostring(n.used) }
	end
	st.lists[P .. "pending"] = { kx.json.encode{ id = "t1", argv = { "true" }, cpu_units = case.units } }
	return st
end

describe("kx.sched policy", function()
	for _, case in ipairs(CASES) do
		it(case.name, function()
			local i, largest = policy.pick(case.nodes, case.units, case.weigher, case.order)
			assert.are.equal(case.want or nil, i and case.nodes[i].id or nil, "policy.pick")
			if not case.want then assert.are.equal(case.largest, largest, "largest live node") end
			-- the Redis dispatch script on the same state
			local st = state_of(case)
			local r = run_script(st, { P, case.weigher, case.order, "1" })
			if case.want then
				assert.are.same({ "placed", "t1", case.want, 1 }, { r[1], r[2], r[3], r[4] })
				local q = st.lists[P .. "q:" .. case.want]
				assert.are.equal(1, #q)
				local h = st.hashes[P .. "node:" .. case.want]
				local n
				for _, x in ipairs(case.nodes) do if x.id == case.want then n = x end end
				assert.are.equal(tostring(n.used + case.units), h.used)
				assert.are.equal(tostring(n.running + 1), h.running)
			else
				assert.are.equal("wait", r[1])
				local b = kx.json.decode(st.kv[P .. "blocking"])
				assert.are.equal(case.largest, b.largest)
				assert.are.equal(case.units <= case.largest and "waiting for capacity"
					or "larger than every node's capacity", b.reason)
			end
			-- submit on the same state, pending empty and a central's policy
			-- published: the same node at once, or queued for the central
			st = state_of(case)
			local task = table.remove(st.lists[P .. "pending"])
			st.kv[P .. "central"] = kx.json.encode{ weigher = case.weigher, order = case.order, log = false }
			r = run_script(st, { P, "t1", task }, "submit")
			assert.are.equal(case.want and 2 or 1, r, "submit's answer")
			if case.want then
				assert.are.equal(1, #st.lists[P .. "q:" .. case.want], "submit placed it")
				assert.are.equal(0, #st.lists[P .. "pending"])
				assert.are.equal(tostring(case.units + (function()
					for _, x in ipairs(case.nodes) do if x.id == case.want then return x.used end end
				end)()), st.hashes[P .. "node:" .. case.want].used)
			else
				assert.are.same({ task }, st.lists[P .. "pending"], "submit left it to the central")
			end
		end)
	end

	it("has one table of weigher and order names, used by the API and the script", function()
		for _, name in ipairs{ "", "none", "first-fit" } do
			assert.are.equal("", policy.weigher(name))
		end
		assert.are.equal("", policy.weigher(nil))
		assert.are.equal("instances", policy.weigher("instances"))
		assert.are.equal("vcpu", policy.weigher("vcpu"))
		assert.is_nil(policy.weigher("fastest"))
		assert.is_nil(policy.weigher("Instances"))
		assert.are.equal("min", policy.order(nil))
		assert.are.equal("max", policy.order("max"))
		for _, bad in ipairs{ "ma", "maximum", "MAX", "", 1 } do
			assert.is_nil(policy.order(bad), tostring(bad))
		end
		-- a name the table does not have is refused by the script as well
		local st = state_of(CASES[1])
		local r = run_script(st, { P, "fastest", "min", "1" })
		assert.matches("unknown weigher", r.err)
		r = run_script(st, { P, "", "maximum", "1" })
		assert.matches("unknown weigher or order", r.err)
		-- and by the API
		local s = assert(require("kx.sched").connect())
		assert.has_error(function() s:central{ weigher = "fastest" } end)
		assert.has_error(function() s:central{ order = "maximum" } end)
		s:close()
	end)

	it("computes capacity from the allocation ratio (floor, at least 1)", function()
		-- 1.25 x 2 cores = 2.5 -> 2; 1.5 x 4 = 6; an explicit capacity wins;
		-- 0.1 x 2 = 0.2 -> at least 1; 1.1 x 10 = 11 exactly, not 10.99...
		assert.are.equal(2, policy.capacity(nil, 1.25, 2))
		assert.are.equal(6, policy.capacity(0, 1.5, 4))
		assert.are.equal(6, policy.capacity(6, 1.5, 4))
		assert.are.equal(1, policy.capacity(0, 0.1, 2))
		assert.are.equal(11, policy.capacity(0, 1.1, 10))
	end)

	it("places a batch of heads in FIFO order and stops at the first that does not fit", function()
		-- n1 has 3 units: heads of 1, 2 fit (3 used), the third (1) waits
		-- though a fourth (also 1) is behind it: strict FIFO.
		local st = state_of{ nodes = { node("n1", 3, 0, 0, 0) }, units = 1 }
		st.lists[P .. "pending"] = {}
		for i, u in ipairs{ 1, 2, 1, 1 } do
			table.insert(st.lists[P .. "pending"], kx.json.encode{ id = "t" .. i, argv = { "true" }, cpu_units = u })
		end
		local r = run_script(st, { P, "", "min", "64", "1" })
		assert.are.same({ "wait", "t3", 1, 2 }, { r[1], r[2], r[3], r[4] })
		assert.are.equal(2, #r[5])
		local first = kx.json.decode(r[5][1])
		assert.are.same({ "t1", "n1", 1, 2 }, { first.id, first.node, first.cpu_units, first.cap_left })
		assert.are.equal(0, kx.json.decode(r[5][2]).cap_left)
		assert.are.equal(2, #st.lists[P .. "pending"])
	end)

	it("places a submitted task at once only as the central would: an empty queue, a central's policy", function()
		local function fresh()
			local st = state_of{ nodes = { node("n1", 2, 0, 0, 0), node("n2", 2, 0, 1, 1) }, units = 1 }
			st.lists[P .. "pending"] = {}
			return st
		end
		local task = kx.json.encode{ id = "t9", argv = { "true" }, cpu_units = 1, input = "in.mp4" }
		-- no central: the task waits in pending (and wakes a central to come)
		local st = fresh()
		assert.are.equal(1, run_script(st, { P, "t9", task }, "submit"))
		assert.are.same({ task }, st.lists[P .. "pending"])
		assert.are.same({ 1 }, st.lists[P .. "wake"])
		-- a retried submit is a no-op
		assert.are.equal(1, run_script(st, { P, "t9", task }, "submit"))
		assert.are.equal(1, #st.lists[P .. "pending"])
		-- a head already waits: behind it (strict FIFO), though n1 has room
		st = fresh()
		st.kv[P .. "central"] = kx.json.encode{ weigher = "instances", order = "min", log = false }
		st.lists[P .. "pending"] = { kx.json.encode{ id = "t0", argv = { "true" }, cpu_units = 9 } }
		assert.are.equal(1, run_script(st, { P, "t9", task }, "submit"))
		assert.are.equal(2, #st.lists[P .. "pending"])
		assert.are.equal(task, st.lists[P .. "pending"][2])
		-- a central publishes its policy with each dispatch; submit then
		-- places by it (instances min: n1, no task running) and leaves the
		-- decision's line for the central, which prints it first
		st = fresh()
		local r = run_script(st, { P, "instances", "min", "64", "1", "3000" })
		assert.are.equal("empty", r[1])
		assert.are.same({ weigher = "instances", order = "min", log = true }, kx.json.decode(st.kv[P .. "central"]))
		assert.are.equal(2, run_script(st, { P, "t9", task }, "submit"))
		local placed = kx.json.decode(st.lists[P .. "q:n1"][1])
		assert.are.same({ "t9", "n1" }, { placed.id, placed.node })
		assert.is_number(placed.ts_dispatch)
		r = run_script(st, { P, "instances", "min", "64", "1", "3000" })
		assert.are.equal(1, #r[5])
		local line = kx.json.decode(r[5][1])
		assert.are.same({ "t9", "n1", 1, 1, "in.mp4" }, { line.id, line.node, line.cpu_units, line.cap_left, line.input })
		assert.is_nil(st.lists[P .. "log"], "the central took the line")
		-- a task that is not one is left for the central to bury
		st = fresh()
		st.kv[P .. "central"] = kx.json.encode{ weigher = "", order = "min", log = false }
		assert.are.equal(1, run_script(st, { P, "t8", '{"id":"t8","argv":[]}' }, "submit"))
		r = run_script(st, { P, "", "min", "64", "0", "3000" })
		assert.are.same({ "dead", "argv must be a non-empty array" }, { r[1], r[2] })
	end)
end)
