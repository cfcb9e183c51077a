#!/bin/bash
# A damaged ledger is reported and left as it is, never silently reset.
. "$ROOT/tests/cli/gpu_lib.sh.inc"
K=$KXRUN
need_device
$K gpu create 0 0.4 600 >/dev/null || die "create"
L=$TOP/gpu/ledger
size=$(stat -c %s "$L")
printf 'X' | dd of="$L" bs=1 seek=$((size - 60)) conv=notrunc status=none
cp "$L" "$TOP/damaged"
expect_fail $K gpu list
[[ $LAST_ERR == "ledger corrupted: $L: "*"checksum mismatch"* ]] || die "$LAST_ERR"
expect_fail $K gpu create 0 0.1 60
expect_fail $K gpu available 0
expect_fail $K gpu release partition_0001
cmp -s "$L" "$TOP/damaged" || die "the damaged ledger was rewritten"
truncate -s 100 "$L"
expect_fail $K gpu list
[[ $LAST_ERR == *"shorter than its header"* ]] || die "$LAST_ERR"
# moving it away starts afresh, as the message says
mv "$L" "$TOP/gpu/ledger.bad"
$K gpu list | grep -q "No active partitions" || die "fresh ledger"
echo ok
