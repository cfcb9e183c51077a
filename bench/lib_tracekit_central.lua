-- A model of Tracekit's central scheduler loop (tools/scheduler/
-- scheduler_central.py, its KEYS cap:* path), for bench/sched_dispatch.lua
-- when no Tracekit checkout is at hand (TRACEKIT_DIR):
-- every cycle reads the head (LINDEX), scans the nodes (KEYS cap:*), reads
-- each node's capacity (GET), writes the chosen node's new capacity (SET),
-- pops the head (LPOP) and pushes it to the node's queue (RPUSH): six kinds
-- of round trip, 5 + nodes per task, racing with the workers; it sleeps
-- 50 ms whenever the head cannot be placed or the queue is empty.
-- Its workers give capacity back with INCRBY cap:<node> when a task ends.
-- Loaded with dofile(); not a benchmark of its own.
local M = {}

M.PREFIX = "tk:"

-- Nodes "cap:<id>" with `capacity` units each (under `prefix`, default the
-- model's own; "" for Tracekit's real scripts).
function M.setup(call, nodes, capacity, prefix)
	for _, id in ipairs(nodes) do call("SET", (prefix or M.PREFIX) .. "cap:" .. id, capacity) end
end

function M.enqueue(call, task)
	call("RPUSH", M.PREFIX .. "q:pending", kx.json.encode(task))
end

-- Runs until stop() is true.  call(...) sends one command and returns the reply.
function M.central(call, stop)
	local P = M.PREFIX
	while not stop() do
		local head = call("LINDEX", P .. "q:pending", 0)
		local placed = false
		if head then
			local t = kx.json.decode(head)
			local keys = call("KEYS", P .. "cap:*")
			table.sort(keys)   -- first fit in node-id order
			for _, k in ipairs(keys) do
				local cap = tonumber(call("GET", k)) or 0
				if cap >= t.cpu_units then
					call("SET", k, cap - t.cpu_units)
					call("LPOP", P .. "q:pending")
					call("RPUSH", P .. "q:" .. k:sub(#P + 5), head)
					placed = true
					break
				end
			end
		end
		if not placed then kx.sleep(0.05) end
	end
end

return M
