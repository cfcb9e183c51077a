#!/bin/sh
# kx.rfork beside CRIU (issue 16's peer), in one guest: CRIU 3.17 refuses
# the project's hosts' kernel ("vdso: Unexpected rt vDSO area bounds") and
# runs on the bed's Debian 6.1 once its kernel features are there (socket
# diag, tun, nf_tables modules).  The same state on both sides: a kxrun
# holding SIZE of Lua strings.  kx.rfork: a whole `kxrun rfork resume`
# process whose child prints one line and exits (bench/lib_rfork.lua's
# parent); CRIU: `criu dump` of a kxrun holding that state, then
# `criu restore -d` of it (the dumped process is gone in between, as after
# a migration), and CRIU's lazy restore (criu lazy-pages serving the
# images).  Each REPS times, timed by a kxrun driver (kx.now).
# QEMU TCG: absolute times mean little, the ratio is the figure.
# SIZE: 1G in a guest of 5 GiB or more (KXVM_MEM=6144 make bench-vm
# VM=rfork_criu), else 256M (the parent, the dumped kxrun, its image and the
# restored one share the guest's memory); RFORK_CRIU_SIZE and
# RFORK_BENCH_REPS (5) set SIZE and REPS where the case runs outside the bed.
# vm-mode: bench
# vm-timeout: 1200
# vm-files: bench/lib_rfork.lua tests/vm/rfork_criu.lua /usr/sbin/criu
# vm-modules: unix_diag inet_diag tcp_diag netlink_diag af_packet_diag tun crc32c_generic nf_tables
ROOT=${ROOT:-/kx} KXRUN=${KXRUN:-/kx/kxrun}
. "$ROOT/tests/vm/bed/lib.sh"
cd "$ROOT" || exit 1
REPS=${RFORK_BENCH_REPS:-5}
mem_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
SIZE=${RFORK_CRIU_SIZE:-$([ "$mem_kb" -ge $((5 << 20)) ] && echo 1G || echo 256M)}
for m in unix_diag inet_diag tcp_diag netlink_diag af_packet_diag tun crc32c_generic nf_tables; do
	vm_modprobe $m
done
criu check > "$T/check" 2>&1 || skip "criu check fails in the guest: $(grep Error "$T/check" |
	grep -v "exited, status" | head -2 | tr '\n' ' ')"

mkfifo "$T/p.in"
"$KXRUN" bench/lib_rfork.lua parent "$SIZE" < "$T/p.in" > "$T/p.out" 2> "$T/p.err" &
pp=$!
exec 7> "$T/p.in"
for _ in $(seq 1200); do [ -s "$T/p.out" ] && break; sleep 0.1; done
read -r A I K H < "$T/p.out" || fail "the parent printed no address: $(cat "$T/p.err")"
"$KXRUN" tests/vm/rfork_criu.lua "$A" "$I" "$K" "$SIZE" "$REPS" "$T" || fail "the driver failed"
exec 7>&-
wait "$pp"
