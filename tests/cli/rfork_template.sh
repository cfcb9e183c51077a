#!/bin/bash
# rfork.spawn's children forked from a template (bindings/rfork/template.c)
# while the template or the zygote is SIGKILLed at random moments, on a
# loaded host (two busy loops): every spawn must give one child (one
# line: a child forked by a forker killed before the caller had its pid
# once ran beside the one asked of the next forker), which saw the
# parent's memory (the sum of the bytes it reads); none may hang, and
# nothing may be left (no template, pager or zygote of this run) once the
# caller has ended.
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$ROOT/tests/cli/lib.sh"
need userfaultfd

cat > "$T/parent.lua" <<'LUA'
local rfork = require "kx.rfork"
local big = ("k"):rep(4096):rep(4096)   -- 16 MiB
local h = assert(rfork.prepare{ listen = "127.0.0.1:0" })
if h.child then
	local sum = 0
	for i = 1, #big, 4096 * 41 do sum = sum + big:byte(i) end
	print("sum", sum)
	os.exit(0)
end
print(h.address, h.id, h.key)
io.stdout:flush()
io.read("a")
LUA
cat > "$T/spawner.lua" <<'LUA'
local rfork = require "kx.rfork"
local A, I, K, n, c = arg[1], arg[2], arg[3], tonumber(arg[4]), tonumber(arg[5])
local self = io.open("/proc/self/stat"):read("l"):match("^(%d+)")
local function child_named(name)   -- this kxrun's own, if one runs
	local f = io.open(("/proc/%s/task/%s/children"):format(self, self))
	local kids = f:read("a")
	f:close()
	for pid in kids:gmatch("%d+") do
		local cf = io.open("/proc/" .. pid .. "/comm")
		if cf and cf:read("l") == name then cf:close() return pid end
		if cf then cf:close() end
	end
end
local want = ("sum\t%d\n"):format(string.byte("k") * math.ceil(4096 * 4096 / (4096 * 41)))
local left, ok, kills, bad = n, 0, 0, {}
local tasks = {}
for i = 1, c do
	tasks[i] = kx.go(function()
		while left > 0 do
			left = left - 1
			local p, err = rfork.spawn{ address = A, id = I, key = K, stdout = "pipe" }
			if not p then
				bad[#bad + 1] = "spawn failed: " .. err
			else
				local out = p.stdout:read("a")
				local st = p:wait(30)
				if st and st.code == 0 and out == want then ok = ok + 1
				else bad[#bad + 1] = kx.json.encode(st or { timeout = true }) .. " " .. out end
			end
		end
	end)
end
local killer = kx.go(function()
	while left > 0 do
		kx.sleep(0.02 + math.random() * 0.05)
		local t = child_named(math.random() < 0.7 and "kxrun-template" or "kxrun-zygote")
		if t and kx.exec{ "kill", "-KILL", t } == 0 then kills = kills + 1 end
	end
end)
for _, t in ipairs(tasks) do assert(t:wait()) end
killer:wait()
print("ok", ok, "kills", kills)
for i = 1, math.min(#bad, 5) do print("bad", bad[i]) end
LUA

for _ in 1 2; do timeout 120 sh -c 'while :; do :; done' & BUSY+=("$!"); done
mkfifo "$T/in"
"$KXRUN" "$T/parent.lua" < "$T/in" > "$T/addr" 2> "$T/perr" &
PARENT=$!
exec 7> "$T/in"
cleanup() { kill "${BUSY[@]}" 2> /dev/null; exec 7>&-; wait; rm -rf "$T"; }
trap cleanup EXIT
until_true() { for _ in $(seq 200); do "$@" && return 0; sleep 0.05; done; return 1; }
until_true test -s "$T/addr" || fail "the parent did not prepare: $(cat "$T/perr")"
read -r A I K < "$T/addr"

timeout 120 "$KXRUN" "$T/spawner.lua" "$A" "$I" "$K" 300 8 > "$T/out" 2> "$T/err" &
SPAWNER=$!
wait "$SPAWNER" || fail "the spawner failed ($?): $(cat "$T/out" "$T/err")"
kill "${BUSY[@]}" 2> /dev/null
out=$(cat "$T/out")
expect_match "$out" "^ok	300	kills	[0-9]+$" "every child saw the parent's memory"
kills=$(sed -n 's/^ok	300	kills	//p' "$T/out")
[ "$kills" -ge 2 ] || fail "the template was killed $kills times only"
# nothing of the caller's is left: its zygote, templates and their pager
gone() { ! ps -eo comm=,args= | grep -Eq "^kxrun-(template|zygote|pager)"; }
until_true gone || fail "left behind: $(ps -eo pid=,comm= | grep -E 'kxrun-(template|zygote|pager)')"
exec 7>&-
wait "$PARENT" || fail "the parent failed: $(cat "$T/perr")"
echo "ok: 300 children, templates and zygotes killed $kills times, each child once and with the parent's memory, nothing left"
