#!/bin/bash
# kxrun vtime run: bad options are usage errors (exit 2) naming the option;
# a run prints the virtual time and exits with the command's status.  Long
# runs and long exp:advance calls show progress (rounds done/total, virtual
# and real time) on a terminal, nothing when piped.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
source tests/cli/lib.sh

usage() { # expected-message args...
	local want=$1; shift
	out=$("$KXRUN" vtime run "$@" 2>&1); rc=$?
	expect_eq "$rc" 2 "exit of vtime run $*"
	expect_match "$out" "$want" "message of vtime run $*"
}
usage "-n ROUNDS must be an integer >= 1 \(got '-1'\)" -n -1 -- true
usage "-n ROUNDS must be an integer >= 1 \(got '0'\)" -n 0 -- true
usage "flag '-n' wants an integer, got '1.5'" -n 1.5 -- true
usage "-s STEP_NS must be an integer > 0 \(got '0'\)" -s 0 -- true
usage "flag '-s' wants an integer, got 'inf'" -s inf -- true
usage "flag '-b' wants one of auto, signal, freezer, freezer-v1, freezer-v2, kmod, got 'warp'" -b warp -- true
usage "unknown flag '-x'" -x 1 -- true
usage "missing CMD" -n 5 --
usage "flag '-n' needs a value" -n

out=$("$KXRUN" vtime run -s 1000000 -n 50 -b signal -- sh -c 'sleep 0.01; exit 3' 2>&1); rc=$?
expect_eq "$rc" 3 "vtime run exit status ($out)"
expect_match "$out" "^virtual [0-9]+ ns after [0-9]+ rounds \(signal\): exit 3$" "vtime run output"

command -v script >/dev/null || fail "script (util-linux) missing: it gives the test a terminal"
busy="sh -c 'while :; do :; done'"
cat >"$T/adv.lua" <<'EOS'
local vtime = require "kx.vtime"
local exp = assert(vtime.experiment{ step = 1000000, backend = "signal" })
assert(exp:spawn{ "sh", "-c", "while :; do :; done" })
exp:freeze()
exp:advance(1500)
exp:stop()
EOS
for how in run advance; do
	if [ $how = run ]; then cmd="$KXRUN vtime run -n 1500 -b signal -- $busy"
	else cmd="$KXRUN $T/adv.lua"; fi
	tty=$(script -qec "$cmd" /dev/null | tr '\r' '\n')
	expect_match "$tty" "vtime( run)?: 1\.500000 s virtual, [0-9.]+ s real, rounds  1500/1500  100%" "$how: progress on a terminal"
	piped=$(eval "$cmd" 2>&1 | od -c)
	case $piped in *'\r'*) fail "$how: progress drawn into a pipe" ;; esac
done
exit 0
