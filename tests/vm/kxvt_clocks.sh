#!/bin/sh
# A statically linked member's clocks are virtual however it reads them
# (vDSO, raw system calls, gettimeofday, time, COARSE, BOOTTIME), and its
# waits of 1 ms (nanosleep, absolute clock_nanosleep, poll, select, futex,
# epoll_wait) take 1 ms of virtual time, never less.
# vm-files: build/tests/kxvt_test build/tests/kxvt_clock
# vm-timeout: 400
. /kx/tests/vm/bed/lib.sh
kxvt_load
for how in nanosleep absolute poll select futex epoll; do
	build/tests/kxvt_test clocks build/tests/kxvt_clock $how || fail "clocks while waiting with $how"
done
kxvt_unload
