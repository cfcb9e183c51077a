#!/bin/sh
# make bench-vm: kx.vtime's backends in one guest (QEMU TCG, 2 vCPUs):
#   - round cost at step 100 us, 1..512 idle and busy members, kmod vs
#     signal vs freezer (tests/vm/bench_rounds.lua), and the module alone
#     (kxvt_test rounds: no Lua controller);
#   - fidelity on kmod: bench/vtime_fidelity.lua (loaded/alone);
#   - slowdown of 8 CPU-bound members on 2 vCPUs: bench/vtime_slowdown.lua.
# Under TCG a guest instruction costs tens of host ones and a vCPU the host
# deschedules counts as guest CPU time: read the ratios, not the times.
# vm-mode: bench
# vm-timeout: 2400
# vm-files: tests/vm/bench_rounds.lua build/tests/kxvt_test build/bench/vtime_spin
# vm-files: bench/vtime_fidelity.lua bench/vtime_slowdown.lua /usr/bin/sleep /usr/bin/dash /usr/bin/nproc
. /kx/tests/vm/bed/lib.sh
kxvt_load
# busybox is static, which the user-space backends refuse: Debian's first
mkdir -p "$T/bin" && ln -s /usr/bin/dash "$T/bin/sh" && ln -s /usr/bin/sleep "$T/bin/sleep"
export PATH="$T/bin:$PATH"
ulimit -n 65536   # the user-space backends hold descriptors per process
build/bench/vtime_spin 1000 > /dev/null; sleep 0.01   # TCG translates them once
echo "== the guest's load average at the start: $(cat /proc/loadavg 2>/dev/null)"
# fidelity and slowdown first: the round costs leave hundreds of processes
# dying, which would run beside them
echo "== fidelity"
$KXRUN bench/vtime_fidelity.lua 50000000 kmod 5 || fail "fidelity on kmod"
$KXRUN bench/vtime_fidelity.lua 50000000 signal 5 || fail "fidelity on signal"
echo "== slowdown"
$KXRUN bench/vtime_slowdown.lua 20000000 kmod || fail "slowdown on kmod"
$KXRUN bench/vtime_slowdown.lua 20000000 signal || fail "slowdown on signal"
echo "== the module alone (kxvt_test rounds N idle 100 us): us of real time per round"
for n in 1 8 32 128 512; do
	echo "   $n idle: $(build/tests/kxvt_test rounds $n idle 100 300)"
done
for n in 1 8 32; do
	echo "   $n busy: $(build/tests/kxvt_test rounds $n busy 100 100)"
done
echo "== kx.vtime round cost, kmod vs signal vs freezer"
$KXRUN tests/vm/bench_rounds.lua 0.5 || fail "bench_rounds"
