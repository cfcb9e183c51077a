# SIGTERM/SIGINT: every process group kxrun started is terminated; 143/130.
. "$(dirname "$0")/lib.sh"

cat > "$T/kids.lua" <<'LUA'
local p = kx.spawn{ "sh", "-c", "sleep 60 & echo $! > " .. arg[1] .. ".grandchild; sleep 60" }
io.open(arg[1], "w"):write(p.pid):close()
kx.sleep(60)
LUA
for sig in TERM INT; do
	rm -f "$T/pid" "$T/pid.grandchild"
	"$KXRUN" "$T/kids.lua" "$T/pid" &
	k=$!
	for _ in $(seq 100); do [ -s "$T/pid.grandchild" ] && break; sleep 0.05; done
	[ -s "$T/pid.grandchild" ] || fail "script did not start its children"
	kill -$sig $k
	wait $k; rc=$?
	[ $sig = TERM ] && expect_eq "$rc" 143 "exit status on SIGTERM"
	[ $sig = INT ] && expect_eq "$rc" 130 "exit status on SIGINT"
	sleep 0.1
	kill -0 "$(cat "$T/pid")" 2>/dev/null && fail "child alive after SIG$sig"
	kill -0 "$(cat "$T/pid.grandchild")" 2>/dev/null && fail "grandchild alive after SIG$sig"
done

# a busy Lua loop is interrupted too
"$KXRUN" -e 'io.stdout:write("go\n"); io.stdout:flush(); while true do end' > "$T/busy" &
k=$!
for _ in $(seq 100); do [ -s "$T/busy" ] && break; sleep 0.05; done
kill -INT $k; wait $k; expect_eq "$?" 130 "busy loop interrupted"

# ... also inside coroutines nested in the main task, by the first SIGINT
"$KXRUN" -e 'coroutine.wrap(function() coroutine.wrap(function()
	io.stdout:write("go\n"); io.stdout:flush(); while true do end end)() end)()' > "$T/busy2" &
k=$!
for _ in $(seq 100); do [ -s "$T/busy2" ] && break; sleep 0.05; done
kill -INT $k
for _ in $(seq 40); do kill -0 $k 2>/dev/null || break; sleep 0.05; done
kill -0 $k 2>/dev/null && { kill -KILL $k; fail "nested busy loop survived the first SIGINT"; }
wait $k; expect_eq "$?" 130 "nested busy loop interrupted"

# a script's own handler replaces the default
out=$("$KXRUN" -e 'kx.signal("TERM", function(n) print("got " .. n); os.exit(0) end)
	kx.exec{"kill", "-TERM", io.open("/proc/self/stat"):read("a"):match("^(%d+)")}
	kx.sleep(5)')
expect_eq "$out" "got TERM" "user TERM handler"
exit 0
