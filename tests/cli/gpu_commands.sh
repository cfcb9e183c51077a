#!/bin/bash
# kxrun gpu create/list/available/release/stats/help: Chronos's outputs, and
# every bad input answered with exit 1 and a message on stderr only.
. "$ROOT/tests/cli/gpu_lib.sh.inc"
K=$KXRUN
need_device

out=$($K gpu available 0) || die "available failed"
[ "$out" = "100.00" ] || die "available printed '$out'"
[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || die "available printed more than one line"

out=$($K gpu create 0 0.5 3600) || die "create failed: $out"
echo "$out" | grep -Eq '^Created partition partition_0001 on device 0 \(.+\) with [0-9]+ MB for 3600 seconds$' ||
	die "create printed: $out"
echo "$out" | grep -Eq "^Assigned to user: $(id -un) \(Created by: $(id -un), PID: [0-9]+\)$" ||
	die "create printed: $out"
[ "$(echo "$out" | awk '/partition_/{print $3}')" = partition_0001 ] || die "guide's awk idiom"
[ "$($K gpu available 0)" = "50.00" ] || die "available after create"
$K gpu create 0 0.25 60 >/dev/null || die "second create"
[ "$($K gpu available 0)" = "25.00" ] || die "available after second create"

out=$($K gpu list) || die "list failed"
[ "$(echo "$out" | sed -n 1p)" = "Active partitions:" ] || die "list header: $out"
[ "$(echo "$out" | grep -c '^ID: partition_')" = 2 ] || die "list: $out"
echo "$out" | grep -q '^  Memory: 50% (' || die "list memory: $out"
echo "$out" | grep -Eq '^  Time remaining: (35[0-9][0-9]|3600) seconds$' || die "list time: $out"
echo "$out" | grep -Eq "^  Owner: $(id -un) \(PID: [0-9]+\)$" || die "list owner: $out"
[ "$($K gpu list | grep 'ID:' | awk '{print $2}' | head -1)" = partition_0001 ] || die "guide's CI idiom"

out=$($K gpu stats) || die "stats failed"
echo "$out" | grep -q '^Device statistics:$' || die "stats: $out"
echo "$out" | grep -q '^    Usage: 75.00%$' || die "stats usage: $out"
echo "$out" | grep -q '^    Active partitions: 2$' || die "stats count: $out"

# bad input
expect_fail $K gpu create 7 0.1 60;   [[ $LAST_ERR == "Invalid device index: 7"* ]] || die "$LAST_ERR"
expect_fail $K gpu create x 0.1 60;   [[ $LAST_ERR == "Invalid device index: x" ]] || die "$LAST_ERR"
expect_fail $K gpu create 0 0 60;     [[ $LAST_ERR == "Invalid memory fraction"* ]] || die "$LAST_ERR"
expect_fail $K gpu create 0 1.5 60;   [[ $LAST_ERR == "Invalid memory fraction"* ]] || die "$LAST_ERR"
expect_fail $K gpu create 0 -0.1 60;  [[ $LAST_ERR == "Invalid memory fraction"* ]] || die "$LAST_ERR"
expect_fail $K gpu create 0 0.1 0;    [[ $LAST_ERR == "Invalid duration"* ]] || die "$LAST_ERR"
expect_fail $K gpu create 0 0.1 -5;   [[ $LAST_ERR == "Invalid duration"* ]] || die "$LAST_ERR"
expect_fail $K gpu create 0 0.1 99999999999; [[ $LAST_ERR == "Invalid duration"* ]] || die "$LAST_ERR"
expect_fail $K gpu create 0 0.3 60;   [[ $LAST_ERR == "Not enough available memory"* ]] || die "$LAST_ERR"
expect_fail $K gpu create 0 0.1;      [[ $LAST_ERR == "Usage:"* ]] || die "$LAST_ERR"
expect_fail $K gpu release partition_0099; [ "$LAST_ERR" = "Partition not found: partition_0099" ] || die "$LAST_ERR"
expect_fail $K gpu available 9
expect_fail $K gpu available
expect_fail $K gpu frobnicate
expect_fail $K gpu

out=$($K gpu release partition_0001) || die "release failed"
[ "$out" = "Released partition partition_0001" ] || die "release printed: $out"
[ "$($K gpu available 0)" = "75.00" ] || die "available after release"
expect_fail $K gpu release partition_0001

$K gpu help | grep -q '^Usage: kxrun gpu' || die "help"
$K gpu --help | grep -q 'create <device> <memory> <duration>' || die "--help"
$K gpu create --help | grep -q '^Usage: kxrun gpu' || die "create --help"
echo ok
