# The command line (docs/MANUAL.md §2): options, arg, exit statuses, error format.
. "$(dirname "$0")/lib.sh"

out=$("$KXRUN" -v) ; expect_match "$out" '^kxrun [0-9.]+ \(Lua 5\.4' "-v"
out=$("$KXRUN" --version) ; expect_match "$out" '^kxrun ' "--version"
out=$("$KXRUN" -h) ; expect_match "$out" 'usage: kxrun' "-h"
out=$("$KXRUN" --help) ; expect_match "$out" '-e CODE' "--help"
out=$("$KXRUN" -e 'print(1 + 1)') ; expect_eq "$out" "2" "-e"
out=$("$KXRUN" -e 'x = 1' -e 'print(x + 1)') ; expect_eq "$out" "2" "two -e in order"
out=$("$KXRUN" -l j=kx -e 'print(type(j.spawn))') ; expect_eq "$out" "function" "-l G=MOD"
out=$("$KXRUN" -l string -e 'print(type(string.format))') ; expect_eq "$out" "function" "-l MOD"

cat > "$T/args.lua" <<'LUA'
print(arg[0], arg[1], arg[2], select("#", ...), ...)
LUA
out=$("$KXRUN" "$T/args.lua" a "b c") ; expect_eq "$out" "$(printf '%s\ta\tb c\t2\ta\tb c' "$T/args.lua")" "arg and ..."
out=$(echo 'print("stdin", ...)' | "$KXRUN" - x) ; expect_eq "$out" "$(printf 'stdin\tx')" "script from stdin"
out=$(echo 'print("piped")' | "$KXRUN") ; expect_eq "$out" "piped" "no script, stdin not a terminal"

# exit statuses
"$KXRUN" -e 'os.exit(7)'; expect_eq "$?" 7 "os.exit(7)"
"$KXRUN" -e 'os.exit(false)'; expect_eq "$?" 1 "os.exit(false)"
"$KXRUN" "$T/missing.lua" 2>"$T/err"; expect_eq "$?" 1 "missing script"
expect_match "$(cat "$T/err")" '^kxrun: cannot open .*missing\.lua' "missing script message"
printf 'local x = = 1\n' > "$T/syntax.lua"
"$KXRUN" "$T/syntax.lua" 2>"$T/err"; expect_eq "$?" 1 "syntax error"
expect_match "$(cat "$T/err")" "^kxrun: .*syntax\.lua:1: unexpected symbol near '='" "syntax error message"
printf 'local function f()\n  error("deep")\nend\nf()\n' > "$T/rt.lua"
"$KXRUN" "$T/rt.lua" 2>"$T/err"; expect_eq "$?" 1 "runtime error"
expect_match "$(head -1 "$T/err")" '^kxrun: .*rt\.lua:2: deep$' "runtime error message"
expect_match "$(cat "$T/err")" 'stack traceback:' "runtime error traceback"
expect_match "$(cat "$T/err")" "rt\.lua:4: in" "traceback names the caller"
"$KXRUN" -x 2>"$T/err"; expect_eq "$?" 1 "unknown option"
expect_match "$(cat "$T/err")" "unrecognized option '-x'" "unknown option message"

# a task that fails while others run: reported, others cancelled, exit 1
cat > "$T/taskerr.lua" <<'LUA'
local closed = false
kx.go(function()
	local c <close> = setmetatable({}, { __close = function() io.stderr:write("closed\n") end })
	kx.sleep(30)
end)
kx.go(function() kx.sleep(0.05); error("task failed here") end)
local p = kx.spawn{ "sleep", "30" }
io.open(arg[1], "w"):write(p.pid):close()
p:wait()
LUA
start=$(date +%s)
"$KXRUN" "$T/taskerr.lua" "$T/pid" 2>"$T/err"; rc=$?
expect_eq "$rc" 1 "task error exit status"
expect_match "$(cat "$T/err")" 'taskerr\.lua:6: task failed here' "task error message"
expect_match "$(cat "$T/err")" 'closed' "other tasks cancelled (their <close> ran)"
[ $(( $(date +%s) - start )) -lt 20 ] || fail "task error did not end the run"
kill -0 "$(cat "$T/pid")" 2>/dev/null && fail "the child of the failed run is still alive"

# a file argument that exists wins over a tool name
mkdir -p "$T/cwd" && printf 'print("file wins")\n' > "$T/cwd/trace"
out=$(cd "$T/cwd" && "$KXRUN" trace) ; expect_eq "$out" "file wins" "file over tool"
# ... but a directory of that name does not hide the tool
mkdir -p "$T/cwd2/gpu"
out=$(cd "$T/cwd2" && KXRUN_STATE_DIR=$T/state "$KXRUN" gpu list) || fail "a directory hid kxrun gpu: $out"
out=$("$KXRUN" "$T/cwd2" 2>&1); expect_match "$out" "cannot open .*cwd2 \(Is a directory\)" "a directory as the script"
# the main chunk ends while another task runs on and collects the garbage:
# the main task's memory must outlive it (freed with its userdata, it was
# read after the free when the last task ended; ASan: heap-use-after-free,
# and "deadlock: the main task waits..." once in ~40 busted runs)
cat > "$T/mainfirst.lua" <<'LUA'
kx.go(function()
	kx.sleep(0.02)
	for _ = 1, 3 do collectgarbage() end
	kx.sleep(0.02)
	print("last task done")
end)
LUA
out=$("$KXRUN" "$T/mainfirst.lua" 2>&1); expect_eq "$?" 0 "main done first: exit status"
expect_eq "$out" "last task done" "main done first: output"
exit 0
