#!/bin/bash
# Releasing a partition while programs run in it (issue 13, item 8): refused
# with a message naming them, and the memory is not promised again; with
# --force they get SIGTERM, then SIGKILL after the grace, and then the
# partition is released.  Programs that left the process group are found.
. "$ROOT/tests/cli/gpu_lib.sh.inc"
K=$KXRUN
need_device

$K gpu create 0 1.0 600 >/dev/null || die "create"
start_program partition_0001 "$TOP/sh1" 'sleep 77'
wait_for pgrep -P "$SH" -x sleep >/dev/null || die "no sleep under sh $SH"
SLEEP=$(pgrep -P "$SH" -x sleep)
expect_fail $K gpu release partition_0001
[[ $LAST_ERR == "Partition partition_0001 has programs running in it: "* ]] || die "$LAST_ERR"
[[ $LAST_ERR == *"sh (pid $SH)"* && $LAST_ERR == *"sleep (pid $SLEEP)"* ]] || die "not named: $LAST_ERR"
[[ $LAST_ERR == *"(--force)" ]] || die "no hint: $LAST_ERR"
alive "$SH" && alive "$SLEEP" || die "a refused release ended the program"
# never promised twice: the device is still 100% used
expect_fail $K gpu create 0 1.0 60
[[ $LAST_ERR == "Not enough available memory"* ]] || die "$LAST_ERR"
[ "$($K gpu available 0)" = "0.00" ] || die "available: $($K gpu available 0)"
$K gpu list | grep -q '^ID: partition_0001$' || die "not listed"

out=$($K gpu release --force partition_0001) || die "release --force: $out"
[ "$out" = "Released partition partition_0001" ] || die "release --force printed: $out"
gone "$SH" && gone "$SLEEP" || die "release --force left the program running"
wait "$RUNNER"; rc=$?
[ $rc = 143 ] || die "the run exited $rc, not 143 (SIGTERM)"
grep -q "^Partition partition_0001 was released: the command was stopped$" "$TOP/run.err" ||
	die "the run did not say why: $(cat "$TOP/run.err")"
out=$($K gpu create 0 1.0 60) || die "create 0 1.0 after the release: $out"
[[ $out == "Created partition partition_0002 "* ]] || die "$out"

# a program that ignores SIGTERM is killed once the grace is over
start_program partition_0002 "$TOP/sh2" 'trap "" TERM; sleep 77'
start=$(date +%s%N)
$K gpu release --force --grace 1 partition_0002 >/dev/null || die "release --force --grace 1"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ $ms -ge 1000 ] || die "released after $ms ms, before the grace"
gone "$SH" || die "SIGKILL after the grace did not come"
wait "$RUNNER"; [ $? = 137 ] || die "the run did not end by SIGKILL"

# a program that left the process group (setsid) is still one of its programs
$K gpu create 0 0.5 600 >/dev/null || die "create 3"
$K gpu run partition_0003 -- sh -c 'setsid sleep 79 & echo $! >"$0"' "$TOP/sid" || die "run setsid"
SID=$(cat "$TOP/sid")
alive "$SID" || die "precondition: the setsid sleep runs"
[ "$(ps -o pgid= -p "$SID" | tr -d ' ')" = "$SID" ] || die "precondition: it leads its own group"
expect_fail $K gpu release partition_0003
[[ $LAST_ERR == *"sleep (pid $SID)"* ]] || die "the escaped program is not named: $LAST_ERR"
$K gpu release --force partition_0003 >/dev/null || die "release --force 3"
gone "$SID" || die "the escaped program outlived the release"

echo ok
