-- kx.sched.embedded: the scheduler in-process, for one machine, no server.
-- The same policy as the Redis dispatch script (kx.sched.policy, one text)
-- decides; the central and the workers are tasks that wait on events,
-- never on a timer.
local policy = require "kx.sched.policy"

local E = {}
E.__index = E

function E.new()
	return setmetatable({
		pending = {}, head = 1, tail = 0,  -- FIFO of tasks
		nodes = {}, by_id = {},
		changed = kx.event(),   -- submit, finish, node joined, close
		finished = kx.event(),  -- a task ended
		records = {}, outstanding = 0, next_id = 0, closing = false,
		blocking = nil,
	}, E)
end

-- Queues a task: at the tail of pending, or (node given: Tracekit's
-- per-node queues) straight to that node's queue.
function E:push(task, node)
	local n = node and self.by_id[node]
	if node and not n then
		error(("no worker for node '%s' in this process"):format(node), 3)
	end
	self.next_id = self.next_id + 1
	task.id = task.id or self.next_id
	self.outstanding = self.outstanding + 1
	if n then
		n.running, n.used = n.running + 1, n.used + task.cpu_units
		task.node, task.ts_dispatch = n.id, kx.time() * 1000
		n.queue[#n.queue + 1] = task
		n.wake:notify()
		return task.id
	end
	self.tail = self.tail + 1
	self.pending[self.tail] = task
	self.changed:notify()
	return task.id
end

function E:pending_length()
	return self:queue_length()
end

function E:backlog(node)
	local n = self.by_id[node]
	return n and #n.queue or 0
end

function E:queue_length()
	return self.tail - self.head + 1
end

function E:add_node(node)
	if self.by_id[node.id] then
		error(("a worker for node '%s' already runs in this process"):format(node.id), 3)
	end
	node.running, node.used, node.alive = 0, 0, true
	node.queue, node.wake = {}, kx.event()
	self.by_id[node.id] = node
	self.nodes[#self.nodes + 1] = node
	table.sort(self.nodes, function(a, b) return policy.id_less(a.id, b.id) end)
	self.changed:notify()
end

-- One dispatch step: the head to a node, or nothing (and why).
function E:dispatch_head(weigher, order)
	local task = self.pending[self.head]
	if not task then return false end
	local i, largest = policy.pick(self.nodes, task.cpu_units, weigher, order)
	if not i then
		self.blocking = { id = task.id, cpu_units = task.cpu_units, profile = task.profile, largest = largest,
			reason = largest >= task.cpu_units and "waiting for capacity" or "larger than every node's capacity" }
		if largest < task.cpu_units then self.finished:notify() end   -- drain may be waiting for it
		return false
	end
	self.blocking = nil
	self.pending[self.head] = nil
	self.head = self.head + 1
	local node = self.nodes[i]
	node.running = node.running + 1
	node.used = node.used + task.cpu_units
	task.node, task.ts_dispatch = node.id, kx.time() * 1000
	node.queue[#node.queue + 1] = task
	node.wake:notify()
	return true
end

function E:central(weigher, order)
	while not self.closing do
		while self:dispatch_head(weigher, order) do end
		self.changed:wait()
	end
end

-- The launcher of a worker: one process is the whole system, so no lock
-- and no recorder.
function E.launcher()
	return assert(require("kx.sched.launch").start{})
end

-- A worker's node hands tasks to run(task, record) as they arrive, each in
-- its own task; record(rec) is called the moment the command ends.
-- Returns at close.
function E:work(node, run)
	self:add_node(node)
	local running = {}
	-- tasks put straight on the node's queue bypass the central: the worker
	-- keeps to its capacity and slots (what the central placed always fits)
	local busy = { n = 0, units = 0 }
	local function fits(task)
		return busy.n == 0 or ((node.parallel <= 0 or busy.n < node.parallel)
			and busy.units + task.cpu_units <= node.capacity)
	end
	while not self.closing or #node.queue > 0 do
		while #node.queue > 0 and fits(node.queue[1]) do
			local task = table.remove(node.queue, 1)
			busy.n, busy.units = busy.n + 1, busy.units + task.cpu_units
			running[task.id] = kx.go(function()
				run(task, function(rec)
					busy.n, busy.units = busy.n - 1, busy.units - task.cpu_units
					node.running = node.running - 1
					node.used = node.used - task.cpu_units
					rec.node = node.id
					self:finish(task, rec)
					if node.on_end then node.on_end(task, rec, true) end
					node.wake:notify()
				end)
				running[task.id] = nil
			end)
		end
		if self.closing and #node.queue == 0 then break end
		node.wake:wait()
	end
	for _, t in pairs(running) do t:wait() end
	node.alive = false
end

function E:finish(task, rec)
	for k, v in pairs(task) do if rec[k] == nil then rec[k] = v end end
	self.records[#self.records + 1] = rec
	self.outstanding = self.outstanding - 1
	self.changed:notify()
	self.finished:notify()
end

-- Every record, or nil and why when the head can never start: it is
-- larger than every node and nothing runs that could change that.
function E:drain()
	while self.outstanding > 0 do
		local b = self.blocking
		if b and #self.nodes > 0 and b.largest < b.cpu_units and self:queue_length() == self.outstanding then
			local big
			for _, n in ipairs(self.nodes) do
				if n.alive and (not big or n.capacity > big.capacity) then big = n end
			end
			return nil, ("deadlock: task %s: %s needs %d units, the largest node has %d (%s); it can never start")
				:format(b.id, b.profile or "a command", b.cpu_units, b.largest, big and big.id or "none")
		end
		self.finished:wait()
	end
	table.sort(self.records, function(a, b) return a.id < b.id end)
	return self.records
end

function E:status()
	local nodes = {}
	for i, n in ipairs(self.nodes) do
		nodes[i] = { id = n.id, capacity = n.capacity, used = n.used, running = n.running,
			parallel = n.parallel, alive = n.alive }
	end
	return { backend = "embedded", pending = self:queue_length(), running = self.outstanding - self:queue_length(),
		done = #self.records, nodes = nodes, blocking = self.blocking }
end

function E:close()
	self.closing = true
	self.changed:notify()
	for _, n in ipairs(self.nodes) do n.wake:notify() end
end

return E
