#!/bin/sh
# kxvt.ko loads, makes /dev/kxvt (root only), answers, and unloads.
# vm-mode: test smoke
# vm-files: build/tests/kxvt_test
. /kx/tests/vm/bed/lib.sh
kxvt_load
expect_eq "$(stat -c %a /dev/kxvt)" 600 "mode of /dev/kxvt"
out=$(build/tests/kxvt_test info) || fail "INFO ioctl"
expect_match "$out" '^api 1 ' "kxvt_test info"
kxvt_unload
[ -e /dev/kxvt ] && fail "/dev/kxvt is still there after rmmod"
exit 0
