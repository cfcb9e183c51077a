# kx.sched over a real redis-server on loopback (password, AOF), through the
# CLI as a Tracekit user types it: every task runs exactly once; a worker
# killed with SIGKILL while it holds a task loses nothing (the task is
# re-run once, its capacity comes back, its cgroups go); Redis restarted
# while a task is in flight loses nothing, and the outage is reported once,
# then every 10 s; wrong password and Redis down give clear errors;
# ?password= URLs and NODE_ID work; a head larger than every node is named
# (by status, and once by the central).
# Each fault is checked to have happened before recovery is checked.
. "$(dirname "$0")/lib.sh"
need redis
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL="redis://:kxpw@127.0.0.1:$PORT/0"
R() { redis-cli -p "$PORT" -a kxpw --no-auth-warning "$@"; }
# AOF with fsync left to the OS: a graceful restart keeps everything, and a
# disk busy with other work cannot stall Redis past the short leases used here.
# A child of this shell (not daemonized), so that stopping it reaps it.
start_redis() {
	redis-server --port "$PORT" --bind 127.0.0.1 --requirepass kxpw --dir "$T" --appendonly yes \
		--appendfsync no --save '' --logfile "$T/redis.log" >/dev/null 2>&1 &
	RPID=$!
	for _ in $(seq 100); do R ping 2>/dev/null | grep -q PONG && return; sleep 0.05; done
	fail "redis-server did not answer"
}
# Fails unless Redis really went.
stop_redis() {
	R shutdown >/dev/null 2>&1
	wait "$RPID" 2>/dev/null
	R ping >/dev/null 2>&1 && fail "redis-server did not stop"
	RPID=
}
in_flight() { R llen "kx:sched:inflight:$1" 2>/dev/null; }
pids=()
cleanup() {
	[ -n "${KEEP:-}" ] && cp -r "$T" /tmp/sched-redis-kept
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
	R shutdown nosave >/dev/null 2>&1
	[ -n "${RPID:-}" ] && wait "$RPID" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
start_redis

# clear errors
out=$("$KXRUN" sched status --redis "redis://:wrong@127.0.0.1:$PORT/0" 2>&1); expect_eq "$?" 1 "wrong password"
expect_match "$out" "WRONGPASS|invalid password" "wrong password message"
out=$("$KXRUN" sched status --redis "redis://:kxpw@127.0.0.1:1/0" 2>&1); expect_eq "$?" 1 "redis down"
expect_match "$out" "[Cc]onnection refused" "redis down message"
out=$("$KXRUN" sched status --redis "redis://:kxpw@127.0.0.1:abc/0" 2>&1); expect_eq "$?" 1 "bad port"
expect_match "$out" "bad port 'abc'" "bad port message"
# Tracekit's URL form
out=$("$KXRUN" sched status --redis "redis://127.0.0.1:$PORT/0?password=kxpw" 2>&1) || fail "?password= URL: $out"
expect_match "$out" "pending: 0" "status through a ?password= URL"

"$KXRUN" sched central --redis "$URL" --weigher instances > "$T/central.log" 2>&1 & pids+=($!)
"$KXRUN" sched worker --redis "$URL" --node n1 --capacity-units 2 --cpu-binding shared --heartbeat 0.3 --lease 1.5 > "$T/w1.log" 2>&1 & W1=$!; pids+=($W1)
NODE_ID=n2 "$KXRUN" sched worker --redis "$URL" --capacity-units 2 --cpu-binding shared --heartbeat 0.3 --lease 1.5 > "$T/w2.log" 2>&1 & pids+=($!)
for _ in $(seq 200); do [ "$(R scard kx:sched:nodes)" = 2 ] && break; sleep 0.05; done
expect_eq "$(R smembers kx:sched:nodes | sort | tr '\n' ' ')" "n1 n2 " "NODE_ID names the second worker's node"

# 1. every task exactly once; the central and workers log each decision and task
cat > "$T/submit.lua" <<'LUA'
local sched = require "kx.sched"
local url, dir, n, cmd = arg[1], arg[2], tonumber(arg[3]), arg[4]
local s = assert(sched.connect(url))
for i = 1, n do s:submit{ "sh", "-c", (cmd:gsub("ID", arg[5] .. i)) .. " >> " .. dir .. "/ran" } end
local recs = assert(s:drain())
local bad = 0
for _, r in ipairs(recs) do if r.exit_code ~= 0 then bad = bad + 1 end end
print(#recs, bad)
LUA
out=$(timeout 60 "$KXRUN" "$T/submit.lua" "$URL" "$T" 20 "sleep 0.05; echo ID" a) || fail "submit/drain"
expect_eq "$out" "$(printf '20\t0')" "20 records, none failed"
expect_eq "$(sort "$T/ran" | uniq | wc -l)" 20 "20 distinct tasks ran"
expect_eq "$(wc -l < "$T/ran")" 20 "each ran once"
expect_eq "$(grep -c '^dispatch -> node=n[12] .*cpu_units=1 cap_left=[01]$' "$T/central.log")" 20 "one central line per decision"
expect_eq "$(cat "$T/w1.log" "$T/w2.log" | grep -c '^task ok: ')" 20 "one 'task ok' line per task"
expect_eq "$(cat "$T/w1.log" "$T/w2.log" | grep -c '^EXEC: sh -c ')" 20 "one EXEC line per task"

# 2. a worker killed while it holds a task: the task comes back and runs once
: > "$T/ran"
timeout 60 "$KXRUN" "$T/submit.lua" "$URL" "$T" 6 "sleep 1; echo ID" b > "$T/k.out" & S=$!
for _ in $(seq 200); do [ "$(in_flight n1)" -gt 0 ] && break; sleep 0.02; done
held=$(in_flight n1)
[ "$held" -gt 0 ] || fail "precondition: worker n1 never held a task"
LAUNCHER=$(cat /proc/$W1/task/$W1/children | tr ' ' '\n' | head -1)
[ -n "$LAUNCHER" ] || fail "precondition: worker n1 has no launcher"
kill -9 $W1 || fail "kill -9 of worker n1 failed"
wait $W1; expect_eq "$?" 137 "worker n1 died of SIGKILL"
wait $S || fail "drain after SIGKILL"
expect_eq "$(cut -f1 "$T/k.out")" 6 "6 records after the kill"
expect_eq "$(sort "$T/ran" | uniq | wc -l)" 6 "every task of the killed worker ran"
expect_eq "$(wc -l < "$T/ran")" 6 "no task ran twice (the killed worker's task died with it)"
expect_eq "$(R hget kx:sched:node:n2 used)" 0 "capacity restored on the surviving node"
# what the SIGKILL left: the launcher removed the worker's task cgroups and went
for _ in $(seq 100); do kill -0 "$LAUNCHER" 2>/dev/null || break; sleep 0.05; done
kill -0 "$LAUNCHER" 2>/dev/null && fail "the killed worker's launcher is still running"
left=$(ls -d /sys/fs/cgroup/*/kxrun-sched-"$LAUNCHER"-* 2>/dev/null)
expect_eq "$left" "" "no task cgroup of the killed worker left"

# 3. Redis restarted while a task is in flight: nothing lost, the outage
# reported once, then every 10 s
: > "$T/ran"
timeout 120 "$KXRUN" "$T/submit.lua" "$URL" "$T" 4 "sleep 0.5; echo ID" c > "$T/r.out" 2> "$T/r.err" & S=$!
for _ in $(seq 200); do [ "$(in_flight n2)" -gt 0 ] && break; sleep 0.02; done
[ "$(in_flight n2)" -gt 0 ] || fail "precondition: nothing in flight before the restart"
stop_redis
R ping >/dev/null 2>&1 && fail "precondition: redis still answers"
sleep 11
start_redis
wait $S || fail "drain across a Redis restart"
expect_eq "$(cut -f1 "$T/r.out")" 4 "4 records across the restart"
expect_eq "$(sort "$T/ran" | uniq | wc -l)" 4 "every task ran across the restart"
expect_eq "$(wc -l < "$T/ran")" 4 "none ran twice across the restart"
n=$(grep -c "unreachable" "$T/w2.log")
expect_eq "$n" 2 "the worker warned once when Redis went and once 10 s later"
expect_match "$(cat "$T/w2.log")" "is back after" "the worker said Redis is back"

# 4. status names a head that no node can hold, without spinning
"$KXRUN" sched submit --redis "$URL" --cpu-units 64 -- true > /dev/null
for _ in $(seq 100); do
	out=$("$KXRUN" sched status --redis "$URL")
	printf '%s' "$out" | grep -q "head blocking" && break
	sleep 0.1
done
expect_match "$out" "head blocking: .* needs 64 units: larger than every node" "blocking head reported"
for _ in $(seq 100); do grep -q "^blocked: " "$T/central.log" && break; sleep 0.1; done
expect_match "$(grep '^blocked: ' "$T/central.log")" \
	"^blocked: head task [^ ]+ needs 64 units, the largest node has 2: it cannot start until a larger node comes$" \
	"the central names the head, its size and the largest node"
expect_eq "$(grep -c '^blocked: ' "$T/central.log")" 1 "the central says it once"

# 5. kxrun sched run names a task larger than every node (embedded, one node)
mkdir -p "$T/in" && : > "$T/in/a.mp4"
out=$(timeout 60 "$KXRUN" sched run --inputs "$T/in" --outputs "$T/out" --mix hevc1080p=1 --total 1 \
	--capacity-units 2 --cpu-binding shared --quiet 2>&1); expect_eq "$?" 1 "run with a task larger than every node"
expect_match "$out" "hevc1080p needs 4 units, the largest node has 2" "deadlock message"

# 6. --pulse-interval is seconds (Tracekit's unit), "ms" says milliseconds
start=$(date +%s%N)
"$KXRUN" sched dispatch --redis "redis://:kxpw@127.0.0.1:$PORT/0?prefix=pulse" --inputs "$T/in" --outputs "$T/out" \
	--pending --mix light1c=1 --total 2 --pulse-size 1 --pulse-interval 0.6 > "$T/d.out" || fail "dispatch in pulses"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$ms" -ge 600 ] || fail "--pulse-interval 0.6 took $ms ms"
expect_match "$(cat "$T/d.out")" "\[pending-pulse\] enqueued pulse=1, total=2" "Tracekit's pulse lines"
exit 0
