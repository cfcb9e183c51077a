-- kx.sched.scripts: the server-side steps of the Redis backend.  Each runs
-- as one EVAL (Redis runs scripts atomically), so a dispatch decision -
-- head check, capacity reservation, move to the node's queue, counters - can
-- never race with a worker finishing or another central.  Redis Lua is 5.1.
--
-- Keys under the prefix P (ARGV[1]):
--   pending          list of task JSON, FIFO (head = index 0)
--   known            set of submitted task ids (a retried submit is a no-op)
--   nodes            set of node ids (no KEYS scans)
--   node:<id>        hash capacity, parallel, used, running
--   alive:<id>       heartbeat, expires after the lease
--   q:<id>           tasks placed on the node, not yet taken
--   inflight:<id>    tasks the node's worker took (BLMOVE from q:<id>)
--   done             hash task id -> record JSON
--   fin:<client>     ids of the client's tasks that ended (drain wakes on it)
--   dead             malformed tasks, with the reason
--   blocking         the head that cannot be placed, and why
--   wake             one-element list the central blocks on (BLPOP)
local policy = require "kx.sched.policy"

local M = {}

-- Task JSON nested deeper than this goes to `dead` (see dispatch).
local MAX_DEPTH = 32

-- Shared by the scripts that give tasks back (reaper, worker start, leave).
local GIVE_BACK = [[
local function wake(P)
	redis.call('LPUSH', P .. 'wake', 1)
	redis.call('LTRIM', P .. 'wake', 0, 0)
end

-- Tasks of `list` go back to the head of pending in their order, before
-- `extra` (tasks already collected); when `lost` the run was lost and
-- counts as an attempt: at max_attempts the task is recorded as failed.
local function collect(P, list, lost, max_attempts, out, reason)
	local items = redis.call('LRANGE', list, 0, -1)
	for _, raw in ipairs(items) do
		local ok, t = pcall(cjson.decode, raw)
		if not ok or type(t) ~= 'table' then
			redis.call('RPUSH', P .. 'dead', cjson.encode({ task = raw, reason = 'not a task object' }))
		elseif lost and t.id ~= nil and redis.call('HEXISTS', P .. 'done', tostring(t.id)) == 1 then
			-- its completion is recorded: never run it again
		else
			if lost then t.attempts = (tonumber(t.attempts) or 0) + 1 end
			if lost and t.attempts >= max_attempts then
				t.error = reason .. '; failed after ' .. t.attempts .. ' attempts'
				t.exit_code = -1
				redis.call('HSET', P .. 'done', tostring(t.id), cjson.encode(t))
				redis.call('RPUSH', P .. 'fin:' .. tostring(t.client), tostring(t.id))
			else
				t.node = nil
				out[#out + 1] = cjson.encode(t)
			end
		end
	end
	redis.call('DEL', list)
end

local function push_head(P, out)
	for i = #out, 1, -1 do redis.call('LPUSH', P .. 'pending', out[i]) end
end
]]

-- One placement, shared by the central's dispatch and by submit: the live
-- nodes, the checks a head must pass, and putting it on a node's queue.
-- The choice is kx.sched.policy's, whose text is embedded here.
local PLACE = "local policy = (function()\n" .. policy.SOURCE .. "\nend)()\n" .. [[
-- tasks are flat objects: anything nested this deep is not one (and
-- would exceed the JSON depth a worker's decoder accepts)
local MAX_DEPTH = ]] .. MAX_DEPTH .. [[

local function too_deep(v, d)
	if type(v) ~= 'table' then return false end
	if d > MAX_DEPTH then return true end
	for _, x in pairs(v) do
		if too_deep(x, d + 1) then return true end
	end
	return false
end

-- The task in JSON text `head`, or nil and why it is not one.
local function check(head)
	local ok, t = pcall(cjson.decode, head)
	if not ok then return nil, 'not JSON: ' .. tostring(t) end
	if type(t) ~= 'table' then return nil, 'not a JSON object' end
	if too_deep(t, 1) then return nil, 'nested deeper than ' .. MAX_DEPTH .. ' levels (a task is a flat object)' end
	if t.id == nil then return nil, 'no id' end
	if type(t.argv) ~= 'table' or #t.argv == 0 then return nil, 'argv must be a non-empty array' end
	if type(t.cpu_units) ~= 'number' or t.cpu_units < 1 or t.cpu_units ~= math.floor(t.cpu_units) then
		return nil, 'cpu_units must be an integer >= 1'
	end
	for _, a in ipairs(t.argv) do
		if type(a) ~= 'string' and type(a) ~= 'number' then return nil, 'argv must be an array of strings' end
	end
	return t
end

-- The live nodes' state, for policy.pick.
local function live_nodes(P)
	local st = {}
	for _, id in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
		if redis.call('EXISTS', P .. 'alive:' .. id) == 1 then
			local h = redis.call('HMGET', P .. 'node:' .. id, 'capacity', 'parallel', 'running', 'used')
			st[#st + 1] = { id = id, capacity = tonumber(h[1]) or 0, parallel = tonumber(h[2]) or 0,
				running = tonumber(h[3]) or 0, used = tonumber(h[4]) or 0 }
		end
	end
	return st
end

-- Counters go back to the hashes once, at the end (still one atomic step).
local function flush(P, st)
	for _, s in ipairs(st) do
		if s.dirty then
			redis.call('HSET', P .. 'node:' .. s.id, 'used', s.used, 'running', s.running)
		end
	end
end

-- ms since the epoch, to the microsecond, from the server's clock.
local function now_ms()
	local now = redis.call('TIME')
	return tonumber(now[1]) * 1000 + tonumber(now[2]) / 1000
end

-- Task t (JSON text head) goes on node `best`'s queue with node and
-- ts_dispatch; its log line (id, node, cpu_units, cap_left, input, output,
-- profile) is appended to `log` when given.
local function put(P, best, head, t, ts, log)
	best.used, best.running, best.dirty = best.used + t.cpu_units, best.running + 1, true
	if t.node ~= nil or t.ts_dispatch ~= nil then
		t.node, t.ts_dispatch = best.id, ts
		redis.call('RPUSH', P .. 'q:' .. best.id, cjson.encode(t))
	else
		-- the task as submitted plus node and ts_dispatch (no re-encoding: the
		-- head is a JSON object, so it ends with '}')
		redis.call('RPUSH', P .. 'q:' .. best.id, string.match(head, '^(.*)}%s*$') .. ',"node":' ..
			cjson.encode(best.id) .. ',"ts_dispatch":' .. string.format('%.3f', ts) .. '}')
	end
	if log then
		log[#log + 1] = cjson.encode({ id = t.id, node = best.id, cpu_units = t.cpu_units,
			cap_left = best.capacity - best.used, input = t.input, output = t.output, profile = t.profile })
	end
end

local function wake(P)
	redis.call('LPUSH', P .. 'wake', 1)
	redis.call('LTRIM', P .. 'wake', 0, 0)
end
]]

-- A submitted task goes to the tail of pending.  When pending is empty the
-- task is its head, and a central runs (it publishes its weigher, order and
-- log wish in `central` while it does), the task is placed here and now, as
-- that central would place it next: one script instead of a wake-up of the
-- central and another script (the same decision; a task that does not fit,
-- or is not a task, is left to the central).  Decisions made here are
-- logged for the central in `log`.
-- ARGV: P, id, task JSON -> 1 (queued, or a retried submit) | 2 (placed)
M.submit = PLACE .. [[
local P, head = ARGV[1], ARGV[3]
if redis.call('SADD', P .. 'known', ARGV[2]) == 0 then return 1 end
local central = redis.call('GET', P .. 'central')
if central and redis.call('LLEN', P .. 'pending') == 0 then
	local ok, c = pcall(cjson.decode, central)
	local t = check(head)
	if ok and type(c) == 'table' and t and policy.weighers[c.weigher] ~= nil and policy.orders[c.order] ~= nil then
		local st = live_nodes(P)
		local i = policy.pick(st, t.cpu_units, c.weigher, c.order)
		if i then
			local log = c.log and {} or nil
			put(P, st[i], head, t, now_ms(), log)
			flush(P, st)
			if log then
				redis.call('RPUSH', P .. 'log', log[1])
				wake(P)
			end
			return 2
		end
	end
end
redis.call('RPUSH', P .. 'pending', head)
wake(P)
return 1
]]

-- ARGV: P, weigher (a name of policy.weighers), order (min | max)
--   [, max = 1 [, log = 0 [, lease_ms = 0]]]
-- Places heads one after the other, at most `max`, each decision whole
-- before the next (a batch saves round trips, not atomicity).  With
-- lease_ms > 0 the central's policy is published in `central` for that long
-- (submit places a task that finds pending empty by it).
-- -> {"empty", "", 0, n, log} | {"dead", reason, 0, n, log}
--  | {"wait", id, ever, n, log, largest, units} | {"placed", id, node, n, log} (the last
-- one); n = tasks placed by this call; log (with log = 1) one JSON line per
-- placement, those submit made first: id, node, cpu_units, cap_left, input,
-- output, profile
M.dispatch = PLACE .. [[
local P, w, order = ARGV[1], ARGV[2], ARGV[3]
local max = tonumber(ARGV[4]) or 1
local want_log = ARGV[5] == '1'
local lease = tonumber(ARGV[6]) or 0
if policy.weighers[w] == nil or policy.orders[order] == nil then
	return redis.error_reply('unknown weigher or order: ' .. tostring(w) .. ', ' .. tostring(order))
end
if lease > 0 then
	redis.call('SET', P .. 'central', cjson.encode({ weigher = w, order = order, log = want_log }), 'PX', lease)
end
local log = {}
if want_log then log = redis.call('LRANGE', P .. 'log', 0, -1) end
redis.call('DEL', P .. 'log')
local st = live_nodes(P)
local n, last = 0, nil
local ts = now_ms()
while n < max do
	local head = redis.call('LINDEX', P .. 'pending', 0)
	if not head then
		flush(P, st)
		redis.call('DEL', P .. 'blocking')
		return { 'empty', '', 0, n, log }
	end
	local t, reason = check(head)
	if reason then
		flush(P, st)
		redis.call('LPOP', P .. 'pending')
		redis.call('RPUSH', P .. 'dead', cjson.encode({ task = head, reason = reason }))
		return { 'dead', reason, 0, n, log }
	end
	local i, largest = policy.pick(st, t.cpu_units, w, order)
	if not i then
		flush(P, st)
		local ever = largest >= t.cpu_units
		redis.call('SET', P .. 'blocking', cjson.encode({ id = t.id, cpu_units = t.cpu_units,
			profile = t.profile, largest = largest,
			reason = ever and 'waiting for capacity' or "larger than every node's capacity" }))
		return { 'wait', tostring(t.id), ever and 1 or 0, n, log, largest, t.cpu_units }
	end
	redis.call('LPOP', P .. 'pending')
	put(P, st[i], head, t, ts, want_log and log or nil)
	n = n + 1
	last = { 'placed', tostring(t.id), st[i].id, n, log }
end
flush(P, st)
redis.call('DEL', P .. 'blocking')
return last
]]

M.register = GIVE_BACK .. [[
local P, id = ARGV[1], ARGV[2]
local node = P .. 'node:' .. id
local back = {}
collect(P, P .. 'inflight:' .. id, true, tonumber(ARGV[8]), back, 'worker restarted')
if ARGV[6] == '1' then
	collect(P, P .. 'q:' .. id, false, 0, back, '')
end
push_head(P, back)
if ARGV[7] == '1' then
	for _, raw in ipairs(redis.call('LRANGE', P .. 'q:' .. id, 0, -1)) do
		redis.call('RPUSH', P .. 'dead', cjson.encode({ task = raw, reason = 'cleared by clear_queue on ' .. id }))
	end
	redis.call('DEL', P .. 'q:' .. id)
end
-- counters from what is really queued for the node: stale values of an
-- earlier run never hold capacity
local used, running = 0, 0
for _, raw in ipairs(redis.call('LRANGE', P .. 'q:' .. id, 0, -1)) do
	local ok, t = pcall(cjson.decode, raw)
	if ok and type(t) == 'table' then
		used = used + (tonumber(t.cpu_units) or 0)
		running = running + 1
	end
end
redis.call('HSET', node, 'capacity', ARGV[3], 'parallel', ARGV[4], 'used', used, 'running', running)
redis.call('SADD', P .. 'nodes', id)
redis.call('SET', P .. 'alive:' .. id, 1, 'PX', ARGV[5])
wake(P)
return #back
]]

-- ARGV: P, node, lease_ms -> 1 | 0 (the node was reaped: register again)
M.heartbeat = [[
local P, id = ARGV[1], ARGV[2]
if redis.call('SISMEMBER', P .. 'nodes', id) == 0 then return 0 end
redis.call('SET', P .. 'alive:' .. id, 1, 'PX', ARGV[3])
return 1
]]

-- Shared by finish and bury: the node's entry for task `tid` at attempt
-- `attempt` (the exact text `raw` when the caller has it), taken out of
-- inflight:<node> with the node's counters given back.  Nil when the node
-- no longer has that attempt (it was reaped and the task given back).
local TAKE = [[
local function take(P, id, tid, attempt, raw)
	local list = P .. 'inflight:' .. id
	local found
	if raw ~= '' and redis.call('LREM', list, 1, raw) == 1 then
		found = raw
	else
		for _, item in ipairs(redis.call('LRANGE', list, 0, -1)) do
			local ok, t = pcall(cjson.decode, item)
			if ok and type(t) == 'table' and tostring(t.id) == tid
				and (tonumber(t.attempts) or 0) == attempt then
				redis.call('LREM', list, 1, item)
				found = item
				break
			end
		end
	end
	if not found then return nil end
	local ok, t = pcall(cjson.decode, found)
	local units = ok and type(t) == 'table' and tonumber(t.cpu_units) or 0
	local node = P .. 'node:' .. id
	if redis.call('EXISTS', node) == 1 then
		redis.call('HINCRBY', node, 'used', -units)
		redis.call('HINCRBY', node, 'running', -1)
	end
	return found, ok and type(t) == 'table' and t or nil
end
local function ended(P, tid, client, rec)
	redis.call('HSET', P .. 'done', tid, rec)
	redis.call('RPUSH', P .. 'fin:' .. client, tid)
	redis.call('LPUSH', P .. 'wake', 1)
	redis.call('LTRIM', P .. 'wake', 0, 0)
end
]]

-- The record, first thing when a command ends, in one step: only while
-- the node still holds this attempt of the task (fencing: a node that was
-- reaped, or a stale copy of a re-run task, records nothing).
-- ARGV: P, node, task id, attempt, client, record JSON [, raw task as taken]
-- -> 1 | 0 (not this node's any more: the result is dropped)
M.finish = TAKE .. [[
local P, id, tid, attempt, client = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
if not take(P, id, tid, attempt, ARGV[7] or '') then return 0 end
ended(P, tid, client, ARGV[6])
return 1
]]

-- A task a worker cannot run as given (its JSON, as the worker's decoder
-- reads it, is not a task): to `dead` with the reason, and recorded as
-- failed for its client when it has an id.
-- ARGV: P, node, raw task, reason -> 1 | 0
M.bury = TAKE .. [[
local P, id, raw, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local found, t = take(P, id, '', -1, raw)
if not found then return 0 end
redis.call('RPUSH', P .. 'dead', cjson.encode({ task = raw, reason = reason }))
if t and t.id ~= nil then
	ended(P, tostring(t.id), tostring(t.client or ''), cjson.encode({ id = t.id, node = id,
		exit_code = -1, error = 'dead letter: ' .. reason, ts_enqueue = t.ts_enqueue,
		profile = t.profile, client = t.client }))
end
return 1
]]

-- ARGV: P, max_attempts [, node to leave]: nodes whose heartbeat expired
-- (or the one leaving) give their tasks back and leave the set.  A task
-- already recorded (its completion written, e.g. by the recorder of a
-- worker that died) is never given back.
-- -> number of tasks given back
M.reap = GIVE_BACK .. [[
local P, max_attempts, leaving = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local total = 0
for _, id in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
	if id == leaving or (not leaving and redis.call('EXISTS', P .. 'alive:' .. id) == 0) then
		local back = {}
		collect(P, P .. 'inflight:' .. id, true, max_attempts, back, 'node ' .. id .. ' lost')
		collect(P, P .. 'q:' .. id, false, 0, back, '')
		push_head(P, back)
		total = total + #back
		redis.call('DEL', P .. 'node:' .. id, P .. 'alive:' .. id)
		redis.call('SREM', P .. 'nodes', id)
		wake(P)
	end
end
return total
]]

-- Tracekit's per-node queues (its dispatcher without --pending): the task
-- goes straight to q:<node>, counted on the node as the central counts.
-- ARGV: P, node, id, task JSON, cpu_units -> 1 (0: a retried submit)
M.place = [[
local P, id, tid = ARGV[1], ARGV[2], ARGV[3]
if redis.call('SADD', P .. 'known', tid) == 0 then return 0 end
redis.call('RPUSH', P .. 'q:' .. id, ARGV[4])
redis.call('HINCRBY', P .. 'node:' .. id, 'used', tonumber(ARGV[5]))
redis.call('HINCRBY', P .. 'node:' .. id, 'running', 1)
return 1
]]

-- ARGV: P, ids... -> the ids Redis does not know (lost with its data)
M.lost = [[
local P = ARGV[1]
local out = {}
for i = 2, #ARGV do
	if redis.call('SISMEMBER', P .. 'known', ARGV[i]) == 0 then out[#out + 1] = ARGV[i] end
end
return out
]]

-- ARGV: P -> JSON of the whole state (for status)
M.status = [[
local P = ARGV[1]
local nodes = {}
local ids = redis.call('SMEMBERS', P .. 'nodes')
table.sort(ids)
for i, id in ipairs(ids) do
	local h = redis.call('HMGET', P .. 'node:' .. id, 'capacity', 'parallel', 'running', 'used')
	nodes[i] = { id = id, capacity = tonumber(h[1]) or 0, parallel = tonumber(h[2]) or 0,
		running = tonumber(h[3]) or 0, used = tonumber(h[4]) or 0,
		alive = redis.call('EXISTS', P .. 'alive:' .. id) == 1,
		queued = redis.call('LLEN', P .. 'q:' .. id),
		taken = redis.call('LRANGE', P .. 'inflight:' .. id, 0, -1) }
end
local blocking = redis.call('GET', P .. 'blocking')
return cjson.encode({ pending = redis.call('LLEN', P .. 'pending'), nodes = nodes,
	done = redis.call('HLEN', P .. 'done'), dead = redis.call('LLEN', P .. 'dead'),
	blocking = blocking and cjson.decode(blocking) or false })
]]

return M
