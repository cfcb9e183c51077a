-- A parent for tests/spec/rfork_spec.lua:  kxrun parent.lua FILE [MODE]
-- Builds Lua state (tables, a closure, a coroutine, FILE open at offset 3),
-- prepares, prints "ADDRESS ID KEY HOLDERPID", changes all of that state, and waits
-- for its stdin to close ("children N" then).  A resumed child prints what
-- it sees, one "name value" per line, and exits 0.  MODE "wait": the child
-- first waits for a line on its own stdin; "exit": the parent exits right
-- after printing.  RFORK_TRANSPORT: prepare's transport (tcp when unset);
-- with RDMA the line comes once the holder's agent is ready (or failed).
local rfork = require "kx.rfork"
local path, mode = arg[1], arg[2]

local t = { n = 7, list = {}, nested = { deep = { x = "prepare" } } }
for i = 1, 20000 do t.list[i] = ("item%05d"):format(i) end
local function counter()
	local c = 0
	return function() c = c + 1 return c end
end
local tick = counter()
tick() tick()
local gen = coroutine.wrap(function()
	for i = 1, 1000 do coroutine.yield(i * 10) end
end)
gen() gen()
local f = assert(io.open(path))
f:read(3)

local h = assert(rfork.prepare{ listen = "127.0.0.1:0", transport = os.getenv("RFORK_TRANSPORT") })
if h.child then
	if mode == "wait" then io.read("l") end
	print("transport", h.transport, h.transport_info or "-")
	local sum = 0
	for i = 1, #t.list do sum = sum + #t.list[i] end
	print("child", h.index)
	print("n", t.n)
	print("items", #t.list, sum)
	print("deep", t.nested.deep.x)
	print("tick", tick())
	print("gen", gen())
	print("file", f:read(4))
	-- plain Lua keeps running: allocate, collect
	local big = {}
	for i = 1, 100000 do big[i] = { i } end
	collectgarbage()
	print("alloc", #big)
	io.stdout:flush()
	os.exit(0)
end
while h.rdma == "starting" do kx.sleep(0.01) end
if h.rdma == "failed" then io.stderr:write("parent: the RDMA agent failed: ", h.transport_info, "\n") end
print(h.address, h.id, h.key, h.pid)
io.stdout:flush()
if mode == "exit" then os.exit(0) end

t.n = -1
t.list = nil
t.nested.deep.x = "changed"
for _ = 1, 5 do tick() gen() end
f:read(10)
collectgarbage()
io.read("a")
print("children", h.children)
h:close()
