#!/bin/bash
# The VM test bed: boots Debian's own kernel (tests/vm/bed/kernel.sh) in
# qemu-system-x86_64 -accel tcg with an initramfs of busybox, kxrun, kxvt.ko
# and the cases of a mode (tests/vm/bed/initramfs.sh), streams the guest's
# console, and ends with "N passed, N failed, N skipped" and the suite's
# exit status: 0 when every case passed or skipped; 1 when one failed, the
# guest panicked or hung (no result before the time limit).
#
#   run.sh [--mode test|smoke|bench] [--timeout S] [--quiet] [CASE...]
#
# CASE: substrings of case names (tests/vm/NAME.sh).  --quiet prints only
# the case lines and the summary.  Environment: KXRUN (the kxrun to pack,
# default ./kxrun), BUILD, KXVM_DIR (build/vm), KXVM_MEM (MiB, 1536),
# KXVM_SMP (vCPUs, 2), KXVM_APPEND (more kernel arguments).
set -uo pipefail
cd "$(dirname "$0")/../../.."
mode=test timeout="" quiet=0
while [ $# -gt 0 ]; do
	case $1 in
	--mode) mode=$2; shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	--quiet) quiet=1; shift ;;
	-h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	--*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
done
case $mode in test) : "${timeout:=1800}" ;; smoke) : "${timeout:=150}" ;; *) : "${timeout:=2400}" ;; esac
: "${BUILD:=build}" "${KXVM_DIR:=build/vm}" "${KXRUN:=./kxrun}" "${KXVM_MEM:=1536}" "${KXVM_SMP:=2}"
export BUILD KXVM_DIR KXRUN
command -v qemu-system-x86_64 >/dev/null ||
	{ echo "run.sh: qemu-system-x86_64 is missing (make deps installs qemu-system-x86)" >&2; exit 1; }
rel=$(tests/vm/bed/kernel.sh) || { echo "run.sh: no guest kernel" >&2; exit 1; }
img=$KXVM_DIR/kernel/$rel/boot/vmlinuz-$rel
initrd=$KXVM_DIR/initramfs-$mode-$$.cpio.gz
log=$KXVM_DIR/console-$mode-$$.log
trap 'rm -f "$initrd" "$log"' EXIT
tests/vm/bed/initramfs.sh "$initrd" "$mode" "$@" || exit 1

# The guest's console on stdout as it comes (escape sequences and carriage
# returns of the firmware removed); the machine ends with the guest's
# poweroff, a panic (-no-reboot), or the time limit.
echo "kxvm: booting $rel (qemu TCG, $KXVM_SMP vCPUs, $KXVM_MEM MiB), time limit $timeout s" >&2
start=$(date +%s)
timeout -k 5 "$timeout" qemu-system-x86_64 -accel tcg -smp "$KXVM_SMP" -m "$KXVM_MEM" \
	-nodefaults -display none -no-reboot -serial stdio ${KXVM_QEMU_ARGS:-} \
	-kernel "$img" -initrd "$initrd" \
	-append "console=ttyS0 quiet panic=-1 kxvm.mode=$mode ${KXVM_APPEND:-}" </dev/null 2>&1 |
	sed -u 's/\r//g; s/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1bc//g' | tee "$log" |
	if [ $quiet = 1 ]; then grep --line-buffered -E '^(vm-case .*: [A-Zo]|kxvm:)'; else cat; fi
qrc=${PIPESTATUS[0]}
took=$(( $(date +%s) - start ))

passed=$(grep -c '^vm-case .*: ok' "$log")
failed=$(grep -c '^vm-case .*: FAILED' "$log")
skipped=$(grep -c '^vm-case .*: SKIPPED' "$log")
status=$(sed -n 's/^kxvm: exit \([0-9]*\)$/\1/p' "$log" | tail -1)
if [ -z "$status" ]; then
	running=$(sed -n 's/^vm-case \(.*\): running$/\1/p' "$log" | tail -1)
	if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
		echo "kxvm: the guest did not finish within $timeout s${running:+ (in case $running)}"
	elif grep -q 'Kernel panic' "$log"; then
		echo "kxvm: the guest kernel panicked${running:+ (in case $running)}"
	else
		echo "kxvm: the guest ended without a result (qemu exit $qrc)${running:+ (in case $running)}"
	fi
	failed=$((failed + 1))
	status=1
	# where it stood: the console's last lines (--quiet showed none of them)
	[ $quiet = 1 ] && tail -n 40 "$log" | sed 's/^/kxvm console: /'
fi
echo "kxvm: $took s"
echo "$passed passed, $failed failed, $skipped skipped"
exit "$status"
