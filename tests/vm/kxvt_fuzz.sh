#!/bin/sh
# Every ioctl validates its input (each refusal's errno), only root
# (CAP_SYS_ADMIN) opens /dev/kxvt, and 10,000 random ioctls leave the
# kernel log clean (the bed fails the case on any WARNING/BUG/oops).
# vm-files: build/tests/kxvt_test
# vm-timeout: 400
. /kx/tests/vm/bed/lib.sh
kxvt_load
build/tests/kxvt_test checks || fail "ioctl refusals"
chmod 666 /dev/kxvt
out=$(su -s /bin/sh nobody -c "/kx/build/tests/kxvt_test info" 2>&1) &&
	fail "a user without CAP_SYS_ADMIN opened /dev/kxvt: $out"
expect_match "$out" "Operation not permitted" "open as nobody"
chmod 600 /dev/kxvt
build/tests/kxvt_test fuzz 12000 || fail "fuzz"
build/tests/kxvt_test rounds 2 busy 1000 20 > /dev/null || fail "a round after the fuzz"
kxvt_unload
