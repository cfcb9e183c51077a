# kx.sched over a real redis-server on loopback (password, AOF): every task
# runs exactly once; a worker killed with SIGKILL mid-task loses nothing
# (its task is re-run once, its capacity comes back); a Redis restart
# mid-run loses nothing; wrong password and Redis down give clear errors.
. "$(dirname "$0")/lib.sh"
need redis
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL="redis://:kxpw@127.0.0.1:$PORT/0"
# AOF with fsync left to the OS: a graceful restart keeps everything, and a
# disk busy with other work cannot stall Redis past the short leases used here.
start_redis() {
	redis-server --port "$PORT" --bind 127.0.0.1 --requirepass kxpw --dir "$T" --appendonly yes \
		--appendfsync no --save '' --daemonize yes --logfile "$T/redis.log" >/dev/null || fail "redis-server did not start"
	for _ in $(seq 100); do redis-cli -p "$PORT" -a kxpw ping 2>/dev/null | grep -q PONG && return; sleep 0.05; done
	fail "redis-server did not answer"
}
stop_redis() {
	redis-cli -p "$PORT" -a kxpw shutdown 2>/dev/null
	for _ in $(seq 100); do redis-cli -p "$PORT" -a kxpw ping >/dev/null 2>&1 || return 0; sleep 0.05; done
}
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; redis-cli -p "$PORT" -a kxpw shutdown nosave >/dev/null 2>&1; rm -rf "$T"; }
trap cleanup EXIT
start_redis

# clear errors
out=$("$KXRUN" sched status --redis "redis://:wrong@127.0.0.1:$PORT/0" 2>&1); expect_eq "$?" 1 "wrong password"
expect_match "$out" "WRONGPASS|invalid password" "wrong password message"
out=$("$KXRUN" sched status --redis "redis://:kxpw@127.0.0.1:1/0" 2>&1); expect_eq "$?" 1 "redis down"
expect_match "$out" "[Cc]onnection refused" "redis down message"

"$KXRUN" sched central --redis "$URL" --weigher instances > "$T/central.log" 2>&1 & pids+=($!)
"$KXRUN" sched worker --redis "$URL" --node n1 --capacity-units 2 --cpu-binding shared --heartbeat 0.3 --lease 1.5 > "$T/w1.log" 2>&1 & W1=$!; pids+=($W1)
"$KXRUN" sched worker --redis "$URL" --node n2 --capacity-units 2 --cpu-binding shared --heartbeat 0.3 --lease 1.5 > "$T/w2.log" 2>&1 & pids+=($!)
sleep 0.5

# 1. every task exactly once
cat > "$T/submit.lua" <<'LUA'
local sched = require "kx.sched"
local url, dir, n, cmd = arg[1], arg[2], tonumber(arg[3]), arg[4]
local s = assert(sched.connect(url))
for i = 1, n do s:submit{ "sh", "-c", (cmd:gsub("ID", arg[5] .. i)) .. " >> " .. dir .. "/ran" } end
local recs = s:drain()
local bad = 0
for _, r in ipairs(recs) do if r.exit_code ~= 0 then bad = bad + 1 end end
print(#recs, bad)
LUA
out=$(timeout 60 "$KXRUN" "$T/submit.lua" "$URL" "$T" 20 "sleep 0.05; echo ID" a) || fail "submit/drain"
expect_eq "$out" "$(printf '20\t0')" "20 records, none failed"
expect_eq "$(sort "$T/ran" | uniq | wc -l)" 20 "20 distinct tasks ran"
expect_eq "$(wc -l < "$T/ran")" 20 "each ran once"

# 2. a worker killed mid-task: its tasks come back and run once
: > "$T/ran"
timeout 60 "$KXRUN" "$T/submit.lua" "$URL" "$T" 6 "sleep 1; echo ID" b > "$T/k.out" & S=$!
sleep 0.6
kill -9 $W1
wait $S || fail "drain after SIGKILL"
expect_eq "$(cut -f1 "$T/k.out")" 6 "6 records after the kill"
expect_eq "$(sort "$T/ran" | uniq | wc -l)" 6 "every task of the killed worker ran"
expect_eq "$(wc -l < "$T/ran")" 6 "no task ran twice (the killed worker's task died with it)"
cap=$(redis-cli -p "$PORT" -a kxpw hget kx:sched:node:n2 used 2>/dev/null)
expect_eq "$cap" 0 "capacity restored on the surviving node"

# 3. Redis restarted mid-run
: > "$T/ran"
timeout 90 "$KXRUN" "$T/submit.lua" "$URL" "$T" 10 "sleep 0.3; echo ID" c > "$T/r.out" & S=$!
sleep 0.5
stop_redis
sleep 0.5
start_redis
wait $S || fail "drain across a Redis restart"
expect_eq "$(cut -f1 "$T/r.out")" 10 "10 records across the restart"
expect_eq "$(sort "$T/ran" | uniq | wc -l)" 10 "every task ran across the restart"

# 4. status names a head that no node can hold, without spinning
"$KXRUN" sched submit --redis "$URL" --cpu-units 64 -- true > /dev/null
for _ in $(seq 100); do
	out=$("$KXRUN" sched status --redis "$URL")
	printf '%s' "$out" | grep -q "head blocking" && break
	sleep 0.1
done
expect_match "$out" "head blocking: .* needs 64 units: larger than every node" "blocking head reported"
exit 0
