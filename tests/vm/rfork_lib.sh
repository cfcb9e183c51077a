# Sourced by the kx.rfork cases of the VM bed (tests/vm/rfork_*.sh), after
# bed/lib.sh; not a case itself.  A write to a child that was killed fails
# (EPIPE) instead of killing the case.
trap '' PIPE
# vm-mode: lib
#
# A case lists it and what it uses:
#   # vm-modules: crc32_generic rdma_rxe
#   # vm-files: tests/vm/rfork_lib.sh tests/rfork/parent.lua /usr/bin/rdma
#       /usr/lib/x86_64-linux-gnu/libibverbs.so.1
#       /usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so
#       /etc/libibverbs.d/rxe.driver

# Soft-RoCE on lo: rxe0, port 1 ACTIVE, GID ::ffff:127.0.0.1.  With
# RFORK_NIC=1 (a machine with a real RDMA NIC, outside the VM): nothing,
# the machine's device is used.
rxe_up() {
	[ -n "${RFORK_NIC:-}" ] && { ulimit -l unlimited 2>/dev/null; return 0; }
	vm_modprobe crc32_generic   # before rdma_rxe: "failed to init crc32 algorithm"
	vm_modprobe rdma_rxe
	ulimit -l unlimited
	[ -e /sys/class/infiniband/rxe0 ] || rdma link add rxe0 type rxe netdev lo ||
		fail "rdma link add rxe0 type rxe netdev lo"
	i=0
	while ! grep -q ACTIVE /sys/class/infiniband/rxe0/ports/1/state 2>/dev/null; do
		i=$((i + 1)); [ $i -lt 50 ] || fail "rxe0 port 1 is not ACTIVE"
		sleep 0.1
	done
}
rxe_down() {
	[ -n "${RFORK_NIC:-}" ] && return 0
	rdma link delete rxe0 2>/dev/null
	i=0
	while [ -e /sys/class/infiniband/rxe0 ]; do
		i=$((i + 1)); [ $i -lt 50 ] || fail "rxe0 is still there"
		sleep 0.1
	done
}

# parent_start NAME [MODE]: tests/rfork/parent.lua in the background
# (RFORK_TRANSPORT from the caller), its stdin a fifo held open by fd 7..;
# sets A I K HOLDER from its first line.
parent_start() {
	printf 'abcdefghijklmnopqrstuvwxyz' > "$T/$1.data"
	mkfifo "$T/$1.in"
	/kx/kxrun /kx/tests/rfork/parent.lua "$T/$1.data" ${2:-} < "$T/$1.in" > "$T/$1.out" \
		2> "$T/$1.err" &
	PARENT=$!
	exec 7> "$T/$1.in"
	i=0
	while [ ! -s "$T/$1.out" ]; do
		i=$((i + 1))
		[ $i -lt 600 ] || fail "parent $1 printed nothing: $(cat "$T/$1.err")"
		kill -0 $PARENT 2>/dev/null || fail "parent $1 exited: $(cat "$T/$1.err")"
		sleep 0.1
	done
	read -r A I K HOLDER < "$T/$1.out"
}
# parent_stop: closes its stdin; it prints "children N" and exits.
parent_stop() {
	exec 7>&-
	wait_bounded $PARENT 60 "the parent"
	wait $PARENT
}

# wait_bounded PID SECONDS WHAT: fails, showing where every process
# sleeps, when PID is still there after SECONDS.
wait_bounded() {
	i=0
	while kill -0 "$1" 2>/dev/null && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]; do
		i=$((i + 1))
		if [ $i -gt $(($2 * 10)) ]; then
			for d in /proc/[0-9]*; do
				c=$(tr '\0' ' ' < "$d/cmdline" 2>/dev/null)
				[ -n "$c" ] && echo "${d#/proc/} $(cut -d' ' -f3,4 "$d/stat") $(cat "$d/wchan" 2>/dev/null) $c"
			done
			fail "$3 (pid $1) still there after $2 s"
		fi
		sleep 0.1
	done
}

# check_child OUT: the prepare-time state, as tests/spec/rfork_spec.lua
# checks it over TCP.
check_child() {
	expect_match "$1" "$(printf 'n\t7')" "child's t.n"
	expect_match "$1" "$(printf 'items\t20000\t180000')" "child's t.list"
	expect_match "$1" "$(printf 'deep\tprepare')" "child's nested table"
	expect_match "$1" "$(printf 'tick\t3')" "child's closure"
	expect_match "$1" "$(printf 'gen\t30')" "child's coroutine"
	expect_match "$1" "$(printf 'file\tdefg')" "child's file offset"
	expect_match "$1" "$(printf 'alloc\t100000')" "child's Lua keeps running"
}

# children_of PID: the pids whose parent is PID (the holder's RDMA agent).
children_of() {
	for d in /proc/[0-9]*; do
		[ "$(cut -d' ' -f4 "$d/stat" 2>/dev/null)" = "$1" ] && echo "${d#/proc/}"
	done
}

# resume_waiting NAME ARGS...: kxrun rfork resume ARGS in the background
# (CHILD), stdin from a fifo held by fd 8, until it waits in the parent's
# image for a line on that fifo (tests/rfork/parent.lua "wait" mode: before
# it reads its tables).
resume_waiting() {
	n=$1; shift
	mkfifo "$T/$n.in"
	KXRUN_RFORK_STATS=1 /kx/kxrun rfork resume "$@" < "$T/$n.in" > "$T/$n.out" 2> "$T/$n.err" &
	CHILD=$!
	exec 8> "$T/$n.in"
	i=0
	while ! grep -q "switching at" "$T/$n.err" 2>/dev/null ||
	      ! grep -q "pipe_read" /proc/$CHILD/wchan 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt 600 ] || fail "$n did not resume: $(cat "$T/$n.err")"
		sleep 0.1
	done
}
