# Sourced by the guest's cases (tests/vm/*.sh): the assertions of
# tests/cli/lib.sh, and helpers for kernel modules.
T=$(mktemp -d /tmp/kxvm-case.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "$*"; exit 77; }
expect_eq() { [ "$1" = "$2" ] || fail "$3: expected [$2], got [$1]"; }
expect_match() { printf '%s' "$1" | grep -Eq -- "$2" || fail "$3: [$1] does not match /$2/"; }

# vm_modprobe NAME: loads a module of the guest kernel declared in the
# case's "# vm-modules:" line, and what it depends on, in order.
vm_modprobe() {
	[ -r "/kx/modules/$1.list" ] || fail "module $1 is not in the initramfs (# vm-modules: $1)"
	while read -r m; do
		n=$(basename "$m" .ko | tr - _)
		[ -d "/sys/module/$n" ] || insmod "$m" || fail "insmod $m"
	done < "/kx/modules/$1.list"
}

# kxvt.ko, built from kmod/ against the guest kernel; a case that loads it
# unloads it on its way out, whatever happens (the next case starts clean).
kxvt_load() {
	[ -e /kx/kmod/kxvt.ko ] || fail "kxvt.ko is not in the initramfs"
	[ -d /sys/module/kxvt ] || insmod /kx/kmod/kxvt.ko "$@" || fail "insmod kxvt.ko $*"
	[ -c /dev/kxvt ] || fail "no /dev/kxvt after insmod"
	trap 'rm -rf "$T"; kxvt_unload quiet' EXIT
}
# Experiments are freed after their last task is (RCU): allow a moment.
kxvt_unload() {
	for i in $(seq 50); do
		[ -d /sys/module/kxvt ] || return 0
		rmmod kxvt 2>/dev/null && return 0
		sleep 0.1
	done
	[ "${1:-}" = quiet ] && return 1
	fail "rmmod kxvt: $(rmmod kxvt 2>&1)"
}
