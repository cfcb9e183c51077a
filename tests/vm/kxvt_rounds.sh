#!/bin/sh
# kxvt.ko drives rounds: busy members end each share by their budget, idle
# ones (pause) as blocked, virtual-sleep loops either way; with and without
# the clock trap; 1 to 32 members.
# vm-files: build/tests/kxvt_test
# vm-timeout: 400
. /kx/tests/vm/bed/lib.sh
kxvt_load
for args in "1 busy 1000 50" "4 busy 1000 50" "8 idle 100 100" "32 idle 100 50" \
	"4 sleep 1000 50 clocks" "4 busy 1000 50 clocks"; do
	out=$(build/tests/kxvt_test rounds $args) || { echo "$out"; fail "rounds $args"; }
	echo "rounds $args: $out"
done
kxvt_unload
