#!/bin/bash
# No dilated experiment hangs: programs behind shell shims (subshells,
# pipelines, nested scripts, then exec), step 1 ms, two busy loops on the
# host.  30 experiments in `make test`, 60 in `make test-long`; each has a
# 20 s limit and prints its tree's state when it hangs (tests/vtime/soak.lua).
# Afterwards nothing of it may remain: no process of its experiments, no
# kxrun-vtime cgroup or clock file of its controller.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
source tests/cli/lib.sh
need python3
source tests/vtime/backends.sh
n=30
[ "${KXRUN_TEST_LONG:-}" = 1 ] && n=60
timeout -k 5 $((n * 25)) "$KXRUN" tests/vtime/soak.lua $n 20 "$backends" >"$T/out" 2>&1 &
ctl=$!
wait $ctl
rc=$?
cat "$T/out"
[ $rc -eq 0 ] || fail "soak exit $rc"
grep -q "^$n experiments ended" "$T/out" || fail "soak did not finish"
left=$(find /sys/fs/cgroup -maxdepth 2 -name "kxrun-vtime-$ctl-*" 2>/dev/null)
[ -z "$left" ] || fail "cgroups left: $left"
ls /dev/shm/kxrun-vtime-$ctl-* 2>/dev/null && fail "clock files left"
procs=$(grep -l "KXRUN_VTIME_SHM=/dev/shm/kxrun-vtime-$ctl-" /proc/[0-9]*/environ 2>/dev/null)
[ -z "$procs" ] || fail "dilated processes left: $procs"
exit 0
