#!/bin/bash
# kxrun called `chronos` (a link, as Chronos installs its command) is
# `kxrun gpu`: the Chronos user guide's commands and scripts run as written.
. "$ROOT/tests/cli/gpu_lib.sh.inc"
need_device
mkdir -p "$TOP/bin" "$TOP/cwd/gpu"   # a ./gpu directory must not matter
ln -s "$KXRUN" "$TOP/bin/chronos"
export PATH=$TOP/bin:$PATH
cd "$TOP/cwd" || die "cd"

chronos stats | grep -q '^Device statistics:$' || die "chronos stats"
[ "$(chronos available 0)" = "100.00" ] || die "chronos available 0"
out=$(chronos create 0 0.5 3600) || die "chronos create: $out"
[[ $out == "Created partition partition_0001 on device 0 ("* ]] || die "create: $out"
chronos list | grep -q '^ID: partition_0001$' || die "chronos list"
# the guide's CI pipeline and batch script idioms
PARTITION_ID=$(chronos list | grep "ID:" | awk '{print $2}' | head -1)
[ "$PARTITION_ID" = partition_0001 ] || die "CI idiom: '$PARTITION_ID'"
PARTITION_ID=$(chronos create 0 0.25 60 2>&1 | grep "partition_" | awk '{print $3}')
[ "$PARTITION_ID" = partition_0002 ] || die "batch idiom: '$PARTITION_ID'"
chronos release partition_0001 | grep -q "^Released partition partition_0001$" || die "release"
expect_fail chronos release partition_0001
[ "$LAST_ERR" = "Partition not found: partition_0001" ] || die "$LAST_ERR"
chronos help | grep -q 'create <device> <memory> <duration>' || die "chronos help"
chronos --help | grep -q 'create <device> <memory> <duration>' || die "chronos --help"
expect_fail chronos
expect_fail chronos -e 'print(1)'   # kxrun's own options are not chronos's
echo ok
