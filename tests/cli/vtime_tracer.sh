#!/bin/bash
# kxrun vtime tracer: usage errors exit 2 with a message; a tracer with no
# experiment listening gives up after -w seconds with a clear message (exit 1);
# -f runs every command of a file under one tracer.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
source tests/cli/lib.sh
export KXRUN_VTIME_SOCK=$T/vtime.sock

"$KXRUN" vtime tracer --help | grep -q -- "-f, --file FILE" || fail "tracer --help"
"$KXRUN" vtime --help | grep -q "tracer" || fail "vtime --help names tracer"

usage() { # expected-message args...
	local want=$1; shift
	out=$("$KXRUN" vtime tracer "$@" 2>&1); rc=$?
	expect_eq "$rc" 2 "exit of tracer $*"
	expect_match "$out" "$want" "message of tracer $*"
}
usage "unknown flag '-x'" -c true -r 1 -x 3
usage "give one of -c CMD or -f FILE" -r 1
usage "give one of -c CMD or -f FILE" -c true -f /dev/null -r 1
usage "REL_SPEED must be a number > 0" -c true -r 0
usage "REL_SPEED must be a number > 0" -c true -r -2
usage "flag '--speed' is required" -c true
usage "flag '-r' wants a number, got 'fast'" -c true -r fast
usage "needs a value" -c true -r
usage "flag '-t' wants an integer, got 'x'" -c true -r 1 -t x
usage "TIMELINE must be an integer >= 0" -c true -r 1 -t -1
usage "unterminated quote" -c "echo 'a" -r 1
printf '# only a comment\n\n' >"$T/empty"
usage "holds no command" -f "$T/empty" -r 1

# nobody listening: gives up after -w seconds
start=$(date +%s.%N)
out=$("$KXRUN" vtime tracer -c true -r 1 -w 0.3 2>&1); rc=$?
took=$(echo "$(date +%s.%N) - $start" | bc)
expect_eq "$rc" 1 "exit without an experiment"
expect_match "$out" "no experiment is listening on $T/vtime.sock after 0.3 s" "message without an experiment"
[ "$(echo "$took < 10" | bc)" = 1 ] || fail "took $took s to give up"

# -f: both commands of the file run under one tracer; a tracer started
# before the experiment waits for it
cat >"$T/cmds" <<EOC
# two commands
sh -c 'echo first'
sh -c "echo second; exit 4"
EOC
cat >"$T/orch.lua" <<EOS
local kronos = require "kx.kronos"
kx.sleep(0.3)  -- the tracer is already waiting
assert(kronos.initializeExp(1, { backend = "signal" }) == 1)
assert(kronos.synchronizeAndFreeze(20) == 1)
local t = kronos.tracers()[1]
assert(#t.pids == 2, "two processes under the tracer")
kronos.progressBy(1000000, 100)
kx.sleep(0.2)
kronos.stopExp()
EOS
"$KXRUN" vtime tracer -f "$T/cmds" -r 1.5 -i 4 >"$T/out" 2>"$T/err" &
tr=$!
"$KXRUN" "$T/orch.lua" || fail "orchestrator failed"
wait $tr; rc=$?
expect_eq "$rc" 4 "tracer -f exit status (first non-zero)"
expect_eq "$(sort "$T/out" | tr '\n' ' ')" "first second " "tracer -f output"
[ -S "$T/vtime.sock" ] && fail "socket left after stopExp"
exit 0
