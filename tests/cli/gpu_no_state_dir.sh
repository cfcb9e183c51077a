#!/bin/bash
# A user who cannot make the state directory (no /var/lib/kxrun yet, and not
# root) lists nothing instead of failing "cannot create"; creating says why.
. "$ROOT/tests/cli/gpu_lib.sh.inc"
K=$KXRUN
need root setpriv nobody-exec
mkdir -p "$TOP/home" && chown 65534 "$TOP/home"   # PoCL's cache
S=$TOP/state; mkdir -m 755 "$S"   # root's: the other user cannot make $S/gpu
as_nobody() { HOME=$TOP/home KXRUN_STATE_DIR=$S setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
need_device

out=$(as_nobody $K gpu list) || die "list without a state directory: $out"
[ "$out" = "$(printf 'Active partitions:\n-----------------\nNo active partitions')" ] || die "list: $out"
[ -e "$S/gpu" ] && die "the user made $S/gpu"
[ "$(as_nobody $K gpu available 0)" = "100.00" ] || die "available 0"
expect_fail as_nobody $K gpu create 0 0.5 60
[[ $LAST_ERR == "cannot create $S/gpu: Permission denied"* ]] || die "create: $LAST_ERR"
expect_fail as_nobody $K gpu release partition_0001
[ "$LAST_ERR" = "Partition not found: partition_0001" ] || die "release: $LAST_ERR"
expect_fail as_nobody $K gpu run partition_0001 -- true
[ "$LAST_ERR" = "Partition not found: partition_0001" ] || die "run: $LAST_ERR"
as_nobody $K gpu stats | grep -q '^    Active partitions: 0$' || die "stats"
[ -e "$S/gpu" ] && die "the user made $S/gpu"

# the machine's default, where root never made it (left as it was)
if [ ! -e /var/lib/kxrun ] && ! as_nobody test -w /var/lib; then
	out=$(as_nobody env -u KXRUN_STATE_DIR $K gpu list) || die "default dir: $out"
	echo "$out" | grep -q '^No active partitions$' || die "default dir: $out"
	[ -e /var/lib/kxrun ] && die "/var/lib/kxrun was made"
fi
# root makes it on first use
KXRUN_STATE_DIR=$S $K gpu list >/dev/null && [ -d "$S/gpu" ] || die "root did not make $S/gpu"
echo ok
