#!/bin/bash
# At expiry a program running in the partition gets SIGTERM, then SIGKILL
# after the grace; the partition outlives the process that created it and
# disappears at its time.
. "$ROOT/tests/cli/gpu_lib.sh.inc"
K=$KXRUN
ALLOC=$BUILD/tests/gpu_alloc
need_device

# the creator (a kxrun process) is gone at once: the partition stays
$K gpu create 0 0.5 2 >/dev/null || die "create"
$K gpu list | grep -q partition_0001 || die "partition did not outlive its creator"
out=$($K gpu run partition_0001 --grace 5 -- "$ALLOC" 1 1 60 2>"$TOP/err"); rc=$?
[ $rc = 0 ] || die "exit $rc: $out"
echo "$out" | grep -q '^terminated$' || die "program got no SIGTERM: $out"
grep -q "^Partition partition_0001 expired" "$TOP/err" || die "no expiry message: $(cat "$TOP/err")"
$K gpu list | grep -q "No active partitions" || die "still listed after expiry"
[ "$($K gpu available 0)" = "100.00" ] || die "share not returned"

# a program that ignores SIGTERM is killed after the grace
$K gpu create 0 0.5 1 >/dev/null || die "create 2"
start=$(date +%s)
$K gpu run partition_0002 --grace 0.5 -- sh -c 'trap "" TERM; sleep 60; exit 0' 2>/dev/null; rc=$?
[ $rc = 137 ] || die "exit $rc, want 137 (SIGKILL)"
[ $(( $(date +%s) - start )) -lt 30 ] || die "not stopped in time"
# running in an expired partition is refused
expect_fail $K gpu run partition_0002 -- true
echo ok
