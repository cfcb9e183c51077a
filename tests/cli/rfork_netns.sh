#!/bin/bash
# kx.rfork across network namespaces: a parent in namespace A builds state
# (tables, a closure, a suspended coroutine, an open file at an offset),
# prepares listening on its veth address, then changes all of it; three
# children resumed at once in namespace B with `kxrun rfork resume` must see
# the state as it was at prepare, and keep running Lua (kx.sleep, kx.exec:
# the host's reset after resume).  A child resumed after the parent exited
# must fail cleanly: non-zero exit, a message, no hang.
# Skips without root, userfaultfd or network namespaces.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
. tests/cli/lib.sh
. tests/cli/lib_netns.sh

need userfaultfd
netns_setup

seq -f 'line%g' 1 100 >"$T/lines"
cat >"$T/parent.lua" <<'EOS'
local rfork = require "kx.rfork"
local dir, addr = arg[1], arg[2]
local state = { answer = 42, list = {}, nested = { name = "before" } }
for i = 1, 1000 do state.list[i] = i * i end
local function counter()
	local n = 0
	return function() n = n + 1 return n end
end
local next_id = counter()
next_id() next_id()
local co = coroutine.create(function() for i = 1, 10 do coroutine.yield(i) end end)
coroutine.resume(co) coroutine.resume(co)
local f = assert(io.open(dir .. "/lines"))
f:setvbuf("no")   -- the kernel's offset is the file's position
f:read("l") f:read("l")

local h = assert(rfork.prepare{ listen = addr .. ":0" })
if h.child then
	local t0 = kx.now()
	kx.sleep(0.02)
	local _, out = kx.exec{ "echo", "spawned" }
	print("VIEW " .. kx.json.encode{
		answer = state.answer, n = #state.list, last = state.list[1000],
		name = state.nested.name, id = next_id(),
		co = select(2, coroutine.resume(co)), line = f:read("l"),
		slept = kx.now() - t0 >= 0.02, exec = out,
	})
	os.exit(0)
end

-- the parent goes on: none of this may show in the children
state.answer = -1
state.list[1000] = 0
state.nested.name = "after"
next_id()
coroutine.resume(co)
f:read("l")
local tmp = dir .. "/handle.tmp"
local hf = assert(io.open(tmp, "w"))
hf:write(h.address, " ", h.id, " ", h.key, "\n")
hf:close()
assert(os.rename(tmp, dir .. "/handle"))
for _ = 1, 2400 do
	local done = io.open(dir .. "/done")
	if done then done:close() break end
	kx.sleep(0.05)
end
print("PARENT done")
EOS

netns_run "$NS_A" "$KXRUN" "$T/parent.lua" "$T" "$ADDR_A" >"$T/parent.out" 2>&1 &
parent=$!
for _ in $(seq 200); do [ -s "$T/handle" ] && break; sleep 0.05; done
[ -s "$T/handle" ] || { cat "$T/parent.out"; fail "the parent did not prepare"; }
read -r address id key <"$T/handle"
expect_match "$address" "^$ADDR_A:[0-9]+$" "h.address"

pids=()
for i in 1 2 3; do
	netns_run "$NS_B" timeout 120 "$KXRUN" rfork resume "$address" "$id" "$key" \
		>"$T/child$i.out" 2>"$T/child$i.err" &
	pids+=($!)
done
for i in 1 2 3; do
	wait "${pids[$((i - 1))]}"
	rc=$?
	[ $rc -eq 0 ] || { cat "$T/child$i.err"; fail "child $i exited $rc"; }
	view=$(grep '^VIEW ' "$T/child$i.out")
	[ -n "$view" ] || fail "child $i printed no view: $(cat "$T/child$i.out" "$T/child$i.err")"
	expect_match "$view" '"answer":42[,}]' "child $i: state.answer"
	expect_match "$view" '"n":1000[,}]' "child $i: #state.list"
	expect_match "$view" '"last":1000000[,}]' "child $i: state.list[1000]"
	expect_match "$view" '"name":"before"' "child $i: state.nested.name"
	expect_match "$view" '"id":3[,}]' "child $i: the closure's upvalue"
	expect_match "$view" '"co":3[,}]' "child $i: the coroutine's next value"
	expect_match "$view" '"line":"line3"' "child $i: the file's offset"
	expect_match "$view" '"slept":true' "child $i: kx.sleep"
	expect_match "$view" '"exec":"spawned\\n"' "child $i: kx.exec"
done

touch "$T/done"
wait $parent
rc=$?
[ $rc -eq 0 ] || { cat "$T/parent.out"; fail "the parent exited $rc"; }
expect_match "$(cat "$T/parent.out")" "PARENT done" "the parent's end"

# the parent is gone: a late child must fail, say why, and not hang
netns_run "$NS_B" timeout 60 "$KXRUN" rfork resume "$address" "$id" "$key" \
	>"$T/late.out" 2>"$T/late.err"
rc=$?
[ $rc -ne 124 ] || fail "a child of a parent that is gone hung"
[ $rc -ne 0 ] || fail "a child of a parent that is gone exited 0"
[ -s "$T/late.err" ] || fail "a child of a parent that is gone failed without a message"
grep -q '^VIEW ' "$T/late.out" && fail "a child of a parent that is gone ran the parent's code"
echo "ok: 3 children in $NS_B saw the parent's state at prepare; a late child failed: $(head -1 "$T/late.err")"
exit 0
