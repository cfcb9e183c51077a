#!/bin/bash
# Feature probes for the tests: a test may skip only because a feature of
# the machine is absent, and whether it is absent is decided here, by
# probing the feature itself, never by kxrun failing.
#
#   tests/features.sh NAME      exit 0 when NAME is present; else exit 1
#                               and print why it is absent (one line)
#   tests/features.sh --list    every feature and its state
#
# KXRUN_FEATURES_ABSENT="a b" declares features absent, to see what the
# tests do without them.
#
# tests/run.sh probes every recorded skip again at the end: a skip whose
# feature is present here fails the run.
set -u
ROOT=${ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac

absent() { echo "$*"; return 1; }
have() { command -v "$1" >/dev/null 2>&1 || absent "$1 is not installed${2:+ ($2)}"; }
v1() { [ -w "/sys/fs/cgroup/$1/cgroup.procs" ] || absent "no writable cgroup v1 $1 hierarchy at /sys/fs/cgroup/$1"; }

probe() {
	# a feature can be declared absent (to see what the tests do without it)
	case " ${KXRUN_FEATURES_ABSENT:-} " in *" $1 "*)
		absent "declared absent by KXRUN_FEATURES_ABSENT"; return ;; esac
	case $1 in
	root) [ "$(id -u)" = 0 ] || absent "not root" ;;
	btf) [ -r /sys/kernel/btf/vmlinux ] || absent "the kernel has no BTF (/sys/kernel/btf/vmlinux)" ;;
	bpf)   # root, BTF, and the bpf() system call answering (listing programs)
		probe root && probe btf && have bpftool "Debian bpftool" &&
		{ bpftool prog list >/dev/null 2>&1 || absent "bpf(2) refused: $(bpftool prog list 2>&1 | head -1)"; } ;;
	opencl) # the ICD loader lists at least one device (clinfo, not kxrun)
		have clinfo "Debian clinfo" &&
		{ clinfo -l 2>/dev/null | grep -q 'Device #' || absent "the OpenCL ICD loader lists no device (install pocl-opencl-icd)"; } ;;
	cgroup1-freezer) v1 freezer ;;
	cgroup1-cpuset) v1 cpuset ;;
	cgroup1-cpu) v1 cpu ;;
	cgroup1-memory) v1 memory ;;
	locale-en_US)   # a locale whose collation folds case (en_US.UTF-8)
		locale -a 2>/dev/null | grep -qix 'en_US.utf-\?8' ||
			absent "the en_US.UTF-8 locale is not generated (apt-get install locales; locale-gen)" ;;
	cgroup-cpu-binding)   # kx.sched can bind tasks: v1 cpuset and cpu, or a v2 with both controllers
		if v1 cpuset >/dev/null && v1 cpu >/dev/null; then return 0; fi
		local m
		m=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
		[ -n "$m" ] && [ -w "$m/cgroup.procs" ] &&
			grep -qw cpuset "$m/cgroup.controllers" 2>/dev/null && grep -qw cpu "$m/cgroup.controllers" ||
			absent "no writable cgroup v1 cpuset and cpu hierarchies, nor a writable cgroup2 with the cpu and cpuset controllers" ;;
	cgroup2)   # a writable unified hierarchy with cgroup.freeze
		local m
		m=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
		[ -n "$m" ] || { absent "no cgroup2 mount"; return; }
		[ -w "$m/cgroup.procs" ] || { absent "cgroup2 at $m is not writable"; return; }
		local d="$m/kxrun-probe-$$"
		mkdir "$d" 2>/dev/null || { absent "cannot create a cgroup under $m"; return; }
		local ok=0; [ -e "$d/cgroup.freeze" ] && ok=1
		rmdir "$d"
		[ $ok = 1 ] || absent "cgroup2 at $m has no cgroup.freeze (kernel < 5.2)" ;;
	thp)   # transparent huge pages for memory that asks (madvise or always)
		[ -r /sys/kernel/mm/transparent_hugepage/enabled ] || { absent "the kernel has no transparent huge pages"; return; }
		! grep -q '\[never\]' /sys/kernel/mm/transparent_hugepage/enabled ||
			absent "transparent huge pages are off (/sys/kernel/mm/transparent_hugepage/enabled: never)" ;;
	userfaultfd)
		[ -e /proc/sys/vm/unprivileged_userfaultfd ] || { absent "the kernel has no userfaultfd"; return; }
		[ "$(id -u)" = 0 ] || [ "$(cat /proc/sys/vm/unprivileged_userfaultfd)" = 1 ] ||
			absent "userfaultfd needs root or vm.unprivileged_userfaultfd=1" ;;
	netns)
		probe root && have ip "Debian iproute2" || return 1
		local n="kxrun-probe-$$"
		ip netns add "$n" 2>/dev/null || { absent "ip netns add refused: $(ip netns add "$n" 2>&1 | head -1)"; return; }
		ip netns del "$n" ;;
	tmpfs-mount)
		probe root || return 1
		local d; d=$(mktemp -d)
		if mount -t tmpfs -o size=64k kxrun-probe "$d" 2>/dev/null; then umount "$d"; rmdir "$d"
		else rmdir "$d"; absent "cannot mount a tmpfs here"; fi ;;
	setpriv) have setpriv "util-linux" ;;
	nobody-exec)   # the kxrun under test can be run by uid 65534
		probe root && have setpriv "util-linux" || return 1
		setpriv --reuid=65534 --regid=65534 --clear-groups test -x "${KXRUN:-$ROOT/kxrun}" ||
			absent "${KXRUN:-$ROOT/kxrun} is not executable by uid 65534 (a parent directory is not searchable)" ;;
	redis) have redis-server "Debian redis-server" ;;
	ffmpeg) have ffmpeg "Debian ffmpeg" ;;
	python3) [ -x /usr/bin/python3 ] || absent "/usr/bin/python3 is not installed" ;;
	node) have node "Debian nodejs" && { [ -d "$BUILD/node/node_modules/hyparquet" ] || absent "hyparquet not installed in $BUILD/node (make test installs it)"; } ;;
	tty) have script "util-linux" && have tmux "Debian tmux" ;;
	chromium) have chromium "Debian chromium" ;;
	luarocks) have luarocks "Debian luarocks" ;;
	cc) have cc "build-essential" ;;
	cycle-counter)   # a counter user code reads directly (bench/vtime_spin.c)
		case $(uname -m) in
		x86_64|i?86) grep -qw tsc /proc/cpuinfo || absent "the CPU has no time-stamp counter (tsc in /proc/cpuinfo)" ;;
		aarch64) ;;
		*) absent "no cycle counter bench/vtime_spin.c reads on $(uname -m)" ;;
		esac ;;
	qemu)
		have qemu-system-x86_64 "Debian qemu-system-x86" || return 1
		KXVM_DIR=${KXVM_DIR:-$BUILD/vm} "$ROOT/tests/vm/bed/kernel.sh" --probe >/dev/null ||
			absent "$(KXVM_DIR=${KXVM_DIR:-$BUILD/vm} "$ROOT/tests/vm/bed/kernel.sh" --probe)" ;;
	cpu-time)   # CPU clocks count what a program ran: not under QEMU's TCG,
		# whose vCPUs, descheduled by a loaded host, are charged as CPU
		if grep -q "^model name.*QEMU Virtual CPU" /proc/cpuinfo; then
			absent "QEMU TCG emulation: a vCPU descheduled by the host counts as CPU time"
		fi ;;
	kxvt) [ -c /dev/kxvt ] ||   # kxvt.ko loaded: in the VM bed (make test-vm)
		absent "no /dev/kxvt: kxvt.ko is not loaded (this kernel may load no modules; make test-vm runs it)" ;;
	*) echo "unknown feature '$1' (tests/features.sh --list)"; return 2 ;;
	esac
}

FEATURES="root btf bpf opencl cgroup1-freezer cgroup1-cpuset cgroup1-cpu cgroup1-memory cgroup2 thp userfaultfd netns tmpfs-mount setpriv nobody-exec redis ffmpeg python3 node tty chromium luarocks cc cycle-counter qemu kxvt cpu-time"

if [ "${1:-}" = --list ]; then
	for f in $FEATURES; do
		if why=$(probe "$f" 2>&1); then printf '%-16s present\n' "$f"
		else printf '%-16s absent: %s\n' "$f" "$why"; fi
	done
	exit 0
fi
[ $# -eq 1 ] || { echo "usage: tests/features.sh NAME | --list" >&2; exit 2; }
probe "$1"
