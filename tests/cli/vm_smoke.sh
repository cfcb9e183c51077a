#!/bin/bash
# The VM test bed's smoke run (the tests/vm/*.sh cases marked
# "# vm-mode: smoke"): boots Debian's 6.1 kernel in QEMU (TCG), loads
# kxvt.ko, runs a dilated experiment on backend = "kmod", unloads it, and
# fails on any kernel WARNING/BUG/oops.  The whole bed: make test-vm.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
. tests/cli/lib.sh
need qemu
: "${BUILD:=build}"
[ -e "$BUILD/kmod/kxvt.ko" ] || fail "$BUILD/kmod/kxvt.ko is not built (make kmod)"
out=$(BUILD=$BUILD KXRUN=$KXRUN tests/vm/bed/run.sh --mode smoke --quiet 2>&1)
rc=$?
echo "$out"
[ $rc = 0 ] || fail "the VM smoke run failed (exit $rc)"
expect_match "$(echo "$out" | tail -1)" '^[1-9][0-9]* passed, 0 failed' "summary"
