#!/bin/bash
# kxrun gpu run: a partition of N MB lets a program allocate up to N MB and
# refuses the next buffer (CL_MEM_OBJECT_ALLOCATION_FAILURE), also across two
# processes sharing the partition; a crashed member's share comes back.
. "$ROOT/tests/cli/gpu_lib.sh.inc"
K=$KXRUN
ALLOC=$BUILD/tests/gpu_alloc
[ -x "$ALLOC" ] || die "$ALLOC not built"
need_device
$K gpu create 0 0.002 600 >/dev/null || die "create"
N=$($K gpu list | sed -n 's/^  Memory: .* (\([0-9]*\) MB)$/\1/p')
[ "$N" -ge 3 ] || die "partition of $N MB is too small for this test"

out=$($K gpu run partition_0001 -- "$ALLOC" 1 $((N + 1))); rc=$?
[ $rc = 3 ] || die "exit $rc: $out"
echo "$out" | grep -q "^ok $((N - 1))$" || die "did not get $N MB: $out"
echo "$out" | grep -q "^refused $N: CL_MEM_OBJECT_ALLOCATION_FAILURE$" || die "not refused: $out"
# the same through SVM
out=$($K gpu run partition_0001 -- "$ALLOC" --svm 1 $((N + 1))); rc=$?
[ $rc = 3 ] && echo "$out" | grep -q "^refused $N" || die "svm: $rc $out"
# without a partition the program is not limited
"$ALLOC" 1 $((N + 1)) >/dev/null || die "unlimited run refused"

# two processes: one holds 2 MB, the other gets N - 2
$K gpu run partition_0001 -- "$ALLOC" 1 2 60 >"$TOP/holder" &
holder=$!
for _ in $(seq 1 200); do grep -q '^held 2$' "$TOP/holder" && break; sleep 0.05; done
grep -q '^held 2$' "$TOP/holder" || die "holder: $(cat "$TOP/holder")"
$K gpu list | grep -q "^  Memory usage: 2 MB of $N MB$" || die "list usage: $($K gpu list)"
out=$($K gpu run partition_0001 -- "$ALLOC" 1 $N); rc=$?
[ $rc = 3 ] && echo "$out" | grep -q "^refused $((N - 2))" || die "shared limit: $rc $out"
# the holder crashes (SIGKILL to its program): its 2 MB come back.  First
# that the fault happened: the process killed is the program holding them,
# and it died of that SIGKILL.
prog=$(sed -n 's/^pid \([0-9]*\)$/\1/p' "$TOP/holder")
[ -n "$prog" ] && [ "$(readlink "/proc/$prog/exe")" = "$(readlink -f "$ALLOC")" ] ||
	die "the holder's program is not running as gpu_alloc: pid '$prog', $(cat "$TOP/holder")"
kill -KILL "$prog" || die "kill -KILL $prog failed"
wait "$holder"; rc=$?
[ $rc = 137 ] || die "the holder exited $rc, not 137: its program did not die of SIGKILL"
[ -e "/proc/$prog" ] && die "pid $prog is still there after SIGKILL"
out=$($K gpu run partition_0001 -- "$ALLOC" 1 $N) || die "share of the dead member not reclaimed: $out"

# only the owner (or root) runs in a partition; unknown ids fail
expect_fail $K gpu run partition_0042 -- true
[ "$LAST_ERR" = "Partition not found: partition_0042" ] || die "$LAST_ERR"
expect_fail $K gpu run partition_0001 -- /nonexistent/prog
[[ $LAST_ERR == "cannot run /nonexistent/prog"* ]] || die "$LAST_ERR"
expect_fail $K gpu run partition_0001
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	out=$(setpriv --reuid=65534 --regid=65534 --clear-groups $K gpu run partition_0001 -- true 2>&1)
	[ $? = 1 ] && [ "$out" = "Permission denied: partition owned by root" ] || die "other user ran: $out"
fi
# the exit status is the program's
$K gpu run partition_0001 -- sh -c 'exit 7'; [ $? = 7 ] || die "exit status not passed on"
echo ok
