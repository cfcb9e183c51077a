-- Shared by the rfork specs: a parent script of tests/rfork/ in its own
-- kxrun, and what its children print.
local ROOT = os.getenv("ROOT") or "."
local KXRUN = os.getenv("KXRUN") or (ROOT .. "/kxrun")
local M = {}

-- Starts tests/rfork/SCRIPT with the arguments; returns the process, its
-- {address =, id =, key =} and its holder's pid (nil if it prints none).
function M.start(script, ...)
	local argv = { KXRUN, ROOT .. "/tests/rfork/" .. script, ... }
	argv.stdin, argv.stdout = "pipe", "pipe"
	local p = assert(kx.spawn(argv))
	local line = assert(p.stdout:read("l"), "the parent printed nothing")
	local address, id, key, holder = line:match("^(%S+)\t(%x+)\t(%x+)\t?(%d*)$")
	assert(address, "unexpected parent line: " .. line)
	return p, { address = address, id = id, key = key }, tonumber(holder)
end

-- Closes the parent's stdin (it closes its handle and ends); what else it
-- printed.
function M.stop(p)
	p.stdin:close()
	local rest = p.stdout:read("a")
	p:wait()
	return rest
end

-- "name\tvalue" lines -> {name = value}
function M.parse(out)
	local t = {}
	for k, v in out:gmatch("(%S+)\t([^\n]*)\n") do t[k] = v end
	return t
end

-- A child of parent.lua saw the state the parent had at prepare (its
-- parsed output): the counter, 20,000 items, a deep table, its timers'
-- and generators' state, a file's position, a big allocation.
function M.check_state(t)
	local assert = require "luassert"   -- busted's, as in a spec
	assert.equal("1", t.child)
	assert.equal("7", t.n)
	local want = 0
	for i = 1, 20000 do want = want + #("item%05d"):format(i) end
	assert.equal("20000\t" .. want, t.items)
	assert.equal("prepare", t.deep)
	assert.equal("3", t.tick)
	assert.equal("30", t.gen)
	assert.equal("defg", t.file)
	assert.equal("100000", t.alloc)
end

return M
