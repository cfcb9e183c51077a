#!/bin/bash
# Without any OpenCL platform: a clear message for the commands that need
# OpenCL, and the ledger commands still work.  Once the devices are known,
# create/list/available/release never start OpenCL.
. "$ROOT/tests/cli/gpu_lib.sh.inc"
K=$KXRUN
EMPTY=$TOP/no-vendors; mkdir -p "$EMPTY"
noocl() { OCL_ICD_VENDORS=$EMPTY "$@"; }

expect_fail noocl $K gpu devices
[[ $LAST_ERR == "no OpenCL platform found"* ]] || die "devices: $LAST_ERR"
expect_fail noocl $K gpu stats
[[ $LAST_ERR == "no OpenCL platform found"* ]] || die "stats: $LAST_ERR"
expect_fail noocl $K gpu create 0 0.5 60
[[ $LAST_ERR == "no OpenCL platform found"* ]] || die "create: $LAST_ERR"
out=$(noocl $K gpu list) || die "list without OpenCL"
echo "$out" | grep -q "No active partitions" || die "$out"
noocl $K gpu help >/dev/null || die "help without OpenCL"

# learn the devices once (PoCL), then work without OpenCL at all
need_device
noocl $K gpu create 0 0.5 60 >/dev/null || die "create from cached facts"
[ "$(noocl $K gpu available 0)" = "50.00" ] || die "available from cached facts"
noocl $K gpu list | grep -q partition_0001 || die "list"
noocl $K gpu release partition_0001 >/dev/null || die "release"
# stats falls back to the cached facts with a warning on stderr
out=$(noocl $K gpu stats 2>"$TOP/err") || die "stats with cached facts"
echo "$out" | grep -q "^Device 0: " || die "$out"
grep -q "no OpenCL platform" "$TOP/err" || die "stats gave no warning"
echo ok
