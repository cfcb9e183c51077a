#!/bin/sh
# kxvt.ko drives rounds: busy members end each share by their budget, idle
# ones (pause) as blocked, virtual-sleep loops either way; with and without
# the clock trap; 1 to 32 members; the CPU a member uses is what its shares
# are charged.
# vm-files: build/tests/kxvt_test build/tests/vtime_clock
# vm-timeout: 400
. /kx/tests/vm/bed/lib.sh
kxvt_load
for args in "1 busy 1000 50" "4 busy 1000 50" "8 idle 100 100" "32 idle 100 50" \
	"4 sleep 1000 50 clocks" "4 busy 1000 50 clocks"; do
	out=$(build/tests/kxvt_test rounds $args) || { echo "$out"; fail "rounds $args"; }
	echo "rounds $args: $out"
done
# every CPU ns a member uses is charged to one of its shares (2 %)
build/tests/vtime_clock 1 spin > /dev/null
for step in 1000 10000; do
	build/tests/kxvt_test cpu $step build/tests/vtime_clock 100 spin | grep -v "^start\|^end\|^cpu" ||
		fail "CPU charged in shares of $step us"
done
kxvt_unload
