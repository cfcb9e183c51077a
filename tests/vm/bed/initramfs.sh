#!/bin/bash
# Packs the guest's initramfs for tests/vm/bed/run.sh:
#   /bin/busybox (busybox-static) and /init (tests/vm/bed/init)
#   /kx: kxrun (as $KXRUN), build/lib/*.so, kmod/kxvt.ko, the cases
#        tests/vm/*.sh selected for the mode, tests/vm/bed/lib.sh
#   what the cases declare in their header lines:
#     # vm-files: PATH...      repository paths (land under /kx) or absolute
#                              host paths (land at the same path); folders
#                              whole; ELF files bring the libraries ldd lists
#     # vm-modules: NAME...    modules of the guest kernel, with what they
#                              depend on (loaded by vm_modprobe in lib.sh)
#     # vm-debs: PACKAGE...    Debian packages unpacked into the guest (not
#                              installed on the host), with apt-get download
#
#   initramfs.sh OUT MODE CASE...
# Run from the repository root; KXRUN, BUILD, KXVM_DIR from run.sh.
set -euo pipefail
out=$1 mode=$2
shift 2
: "${BUILD:=build}" "${KXVM_DIR:=build/vm}" "${KXRUN:=./kxrun}"
rel=$(KXVM_DIR=$KXVM_DIR tests/vm/bed/kernel.sh --release) ||
	{ echo "initramfs.sh: no guest kernel (tests/vm/bed/kernel.sh)" >&2; exit 1; }
ktree=$KXVM_DIR/kernel/$rel
stage=$(mktemp -d "$KXVM_DIR/stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
chmod 755 "$stage" # the guest's /: every user may enter it
declare -A seen=()

is_elf() { [ "$(head -c 4 "$1" 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ]; }

# put SRC DEST: one file (symlinks followed) and, for an ELF, its libraries.
put() {
	local src=$1 dst=$2
	[ -n "${seen[$dst]:-}" ] && return 0
	seen[$dst]=1
	mkdir -p "$stage$(dirname "$dst")"
	cp -L "$src" "$stage$dst"
	if is_elf "$src"; then
		local lib
		for lib in $(ldd "$src" 2>/dev/null | grep -o '/[^ ]*' || true); do
			[ -e "$lib" ] && put "$lib" "$lib"
		done
	fi
}

# add PATH: a repository path (-> /kx/PATH) or an absolute host path.
add() {
	local p=$1 dst f
	case $p in /*) dst=$p ;; *) dst=/kx/$p ;; esac
	[ -e "$p" ] || { echo "initramfs.sh: $p (declared by a case) does not exist" >&2; exit 1; }
	if [ -d "$p" ]; then
		while IFS= read -r f; do put "$f" "$dst${f#"$p"}"; done < <(find "$p" -type f -o -type l)
	else
		put "$p" "$dst"
	fi
}

# Module NAME and what it depends on, in load order, as guest paths.
mod_index=""
mod_path() {
	[ -n "$mod_index" ] || mod_index=$(find "$ktree/lib/modules/$rel/kernel" -name '*.ko')
	echo "$mod_index" | grep -E "/$(echo "$1" | sed 's/[-_]/[-_]/g')\.ko$" | head -1
}
mod_closure() {
	local ko deps d
	ko=$(mod_path "$1")
	[ -n "$ko" ] || { echo "initramfs.sh: no module $1 in kernel $rel" >&2; exit 1; }
	deps=$(readelf -p .modinfo "$ko" 2>/dev/null | sed -n 's/.*depends=//p' | tr ',' ' ')
	for d in $deps; do mod_closure "$d"; done
	echo "${ko#"$ktree"}"
}
add_module() {
	local list=$stage/kx/modules/$1.list m
	mkdir -p "$stage/kx/modules"
	mod_closure "$1" | awk '!s[$0]++' > "$list"
	while IFS= read -r m; do put "$ktree$m" "$m"; done < "$list"
}

add_deb() {
	local debs=$KXVM_DIR/debs deb
	mkdir -p "$debs"
	deb=$(ls "$debs/$1"_*.deb 2>/dev/null | head -1 || true)
	if [ -z "$deb" ]; then
		( cd "$debs" && apt-get download -q "$1" 2>&1 | grep -v '_apt' >&2 ) || true
		deb=$(ls "$debs/$1"_*.deb 2>/dev/null | head -1 || true)
	fi
	[ -n "$deb" ] || { echo "initramfs.sh: could not download $1" >&2; exit 1; }
	dpkg-deb -x "$deb" "$stage"
}

# -- the base --------------------------------------------------------------
put "$(command -v busybox)" /bin/busybox
put tests/vm/bed/init /init
chmod 755 "$stage/init"
put tests/vm/bed/lib.sh /kx/tests/vm/bed/lib.sh
put "$KXRUN" /kx/kxrun
for f in "$BUILD"/lib/*.so; do [ -e "$f" ] && put "$f" "/kx/build/lib/$(basename "$f")"; done
[ -e "$BUILD/kmod/kxvt.ko" ] && put "$BUILD/kmod/kxvt.ko" /kx/kmod/kxvt.ko
mkdir -p "$stage"/{etc,proc,sys,dev,tmp,run,root,mnt}
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$stage/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$stage/etc/group"
echo "$rel" > "$stage/kx/kernel-release"

# -- the cases -------------------------------------------------------------
header() { sed -n "s/^# $1: *//p" "$2" | tr '\n' ' '; }
chosen=()
for c in tests/vm/*.sh; do
	name=$(basename "$c" .sh)
	modes=$(header vm-mode "$c")
	[[ " ${modes:-test} " == *" $mode "* ]] || continue
	if [ $# -gt 0 ]; then
		want=0
		for w in "$@"; do [[ "$name" == *"$w"* ]] && want=1; done
		[ $want = 1 ] || continue
	fi
	chosen+=("$name")
	put "$c" "/kx/tests/vm/$name.sh"
	missing=""
	for f in $(header vm-files "$c"); do [ -e "$f" ] || missing="$missing $f"; done
	if [ -n "$missing" ]; then # the guest fails this case, the others run
		echo "initramfs.sh: $name needs what is not here:$missing" >&2
		echo "$missing" > "$stage/kx/tests/vm/$name.missing"
		continue
	fi
	for f in $(header vm-files "$c"); do add "$f"; done
	for m in $(header vm-modules "$c"); do add_module "$m"; done
	for d in $(header vm-debs "$c"); do add_deb "$d"; done
done
[ ${#chosen[@]} -gt 0 ] || { echo "initramfs.sh: no case of mode '$mode' matches: $*" >&2; exit 1; }
printf '%s\n' "${chosen[@]}" > "$stage/kx/cases"

( cd "$stage" && find . | LC_ALL=C sort | busybox cpio -o -H newc 2>/dev/null ) |
	gzip -1 > "$out.tmp"
mv "$out.tmp" "$out"
echo "initramfs: ${#chosen[@]} case(s), $(du -k "$out" | cut -f1) KiB compressed" >&2
