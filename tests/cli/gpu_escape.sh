#!/bin/bash
# A partition's programs cannot outlive it (issue 13, item 7).  Killing the
# runner (kill -9 of `kxrun gpu run`) takes its program and what the program
# started along at once; and what escapes even that (a process that left the
# group with setsid) is ended by whatever next reads the ledger once the
# partition expired.
# (`kxrun gpu serve` does the same on its own: gpu_serve_expiry.sh.)
. "$ROOT/tests/cli/gpu_lib.sh.inc"
K=$KXRUN
need_device

# 1. the case: a program that ignores SIGTERM, its runner killed
$K gpu create 0 0.5 600 >/dev/null || die "create"
start_program partition_0001 "$TOP/sh1" 'trap "" TERM; sleep 77'
wait_for pgrep -P "$SH" -x sleep >/dev/null || die "no sleep under sh $SH"
SLEEP=$(pgrep -P "$SH" -x sleep)
kill -KILL "$RUNNER" || die "kill -KILL of the runner $RUNNER failed"
wait "$RUNNER"; rc=$?
[ $rc = 137 ] || die "the runner exited $rc, not 137: it did not die of SIGKILL"
wait_for gone "$SH" || die "sh $SH outlived its runner"
wait_for gone "$SLEEP" || die "sleep $SLEEP outlived its runner"
$K gpu release partition_0001 >/dev/null || die "release after the runner died"

# 2. what left the process group (setsid, as daemons do) escapes the guard
# when the runner is killed; it runs on while the partition lives, and the
# first command after the expiry ends it
$K gpu create 0 0.5 3 >/dev/null || die "create 2"
start_program partition_0002 "$TOP/sh2" "setsid sleep 78 & echo \$! >'$TOP/sh2.sleep'; wait"
wait_for test -s "$TOP/sh2.sleep" || die "no setsid sleep"
SLEEP=$(cat "$TOP/sh2.sleep")
kill -KILL "$RUNNER" || die "kill -KILL of the runner $RUNNER failed"
wait "$RUNNER"; [ $? = 137 ] || die "the runner did not die of SIGKILL"
wait_for gone "$SH" || die "sh outlived its runner"
alive "$SLEEP" || die "precondition: the setsid sleep $SLEEP should have escaped the guard"
$K gpu list | grep -q '^ID: partition_0002$' || die "partition_0002 not listed"
alive "$SLEEP" || die "a live partition's program was ended"
expires=$(( $(date +%s) + 4 ))
while [ "$(date +%s)" -lt "$expires" ]; do sleep 0.2; done
alive "$SLEEP" || die "precondition: the escaped sleep should still run (nobody read the ledger)"
out=$($K gpu list) || die "list after expiry"
wait_for gone "$SLEEP" || die "sleep $SLEEP outlived the partition's expiry and a read of the ledger"
echo "$out" | grep -q "partition_0002" && die "still listed: $out"
[ "$($K gpu available 0)" = "100.00" ] || die "share not returned: $($K gpu available 0)"
echo ok
