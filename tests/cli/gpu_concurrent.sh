#!/bin/bash
# 20 processes create 10% partitions at once: exactly 10 succeed, the device
# is promised exactly 100%, no id is given twice.
. "$ROOT/tests/cli/gpu_lib.sh.inc"
K=$KXRUN
need_device
for i in $(seq 1 20); do
	( $K gpu create 0 0.1 600 >"$TOP/out.$i" 2>"$TOP/err.$i"; echo $? >"$TOP/rc.$i" ) &
done
wait
ok=$(cat "$TOP"/rc.* | grep -c '^0$')
full=$(grep -l '^Not enough available memory' "$TOP"/err.* | wc -l)
[ "$ok" = 10 ] || die "$ok creates succeeded"
[ "$full" = 10 ] || die "$full refused with 'Not enough available memory'"
[ "$($K gpu available 0)" = "0.00" ] || die "available: $($K gpu available 0)"
ids=$($K gpu list | awk '/^ID:/{print $2}')
[ "$(echo "$ids" | wc -l)" = 10 ] || die "list: $ids"
[ "$(echo "$ids" | sort -u | wc -l)" = 10 ] || die "duplicate ids: $ids"
echo ok
