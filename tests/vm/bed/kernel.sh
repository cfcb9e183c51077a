#!/bin/sh
# Fetches Debian's own kernel for the VM test bed: the image that
# linux-image-amd64 depends on, its modules, and the matching headers
# (linux-headers-<release>, -common, linux-kbuild-6.1 of the same version).
# The packages are not installed: `apt-get download` + `dpkg-deb -x` into
# $KXVM_DIR/kernel/<release>/, so this machine's boot (kernel, initramfs,
# bootloader hooks) is never touched.
#
#   kernel.sh            fetch if missing; print the release on stdout
#   kernel.sh --release  print the release if fetched (exit 1 and nothing if not)
#   kernel.sh --probe    the same, or print why there is none (exit 1)
#
# KXVM_DIR (default build/vm) holds the .debs (debs/) and the trees;
# KXVM_KERNEL=<release> (e.g. 6.1.0-57-amd64) pins another ABI.
set -eu
: "${KXVM_DIR:=build/vm}"
DEBS="$KXVM_DIR/debs"
mkdir -p "$KXVM_DIR"
say() { echo "kernel.sh: $*" >&2; }

current() { # the release fetched last, if its tree is complete
	[ -r "$KXVM_DIR/kernel/current" ] || return 1
	rel=$(cat "$KXVM_DIR/kernel/current")
	[ -n "${KXVM_KERNEL:-}" ] && [ "$rel" != "$KXVM_KERNEL" ] && return 1
	[ -e "$KXVM_DIR/kernel/$rel/.complete" ] || return 1
	echo "$rel"
}

case "${1:-}" in --release) current; exit ;; esac
if [ "${1:-}" = "--probe" ]; then
	current && exit 0
	echo "no kernel for the VM bed in $KXVM_DIR/kernel (make deps, or tests/vm/bed/kernel.sh)"
	exit 1
fi
current && exit 0

command -v apt-get >/dev/null || { say "apt-get is missing: the bed fetches Debian's kernel packages"; exit 1; }
rel=${KXVM_KERNEL:-}
if [ -z "$rel" ]; then
	rel=$(apt-cache depends linux-image-amd64 2>/dev/null |
	      sed -n 's/^ *Depends: linux-image-\([0-9].*-amd64\)$/\1/p' | head -1)
	[ -n "$rel" ] || { say "apt-cache knows no linux-image-amd64 (apt-get update?)"; exit 1; }
fi
ver=$(apt-cache show --no-all-versions "linux-image-$rel" 2>/dev/null |
      sed -n 's/^Version: //p' | head -1)
[ -n "$ver" ] || { say "no package linux-image-$rel"; exit 1; }
base=${rel%-amd64}                          # 6.1.0-57
series=$(echo "$base" | cut -d. -f1-2)      # 6.1: linux-kbuild-6.1
say "fetching linux-image-$rel $ver and its headers (about 85 MB, once)"
mkdir -p "$DEBS"
# apt-get download writes into the current directory; the _apt sandbox
# cannot write there when it belongs to root, which is harmless.
( cd "$DEBS" && apt-get download -q \
	"linux-image-$rel=$ver" "linux-headers-$rel=$ver" \
	"linux-headers-$base-common=$ver" "linux-kbuild-$series=$ver" 2>&1 |
	grep -v 'couldn.t be accessed by user ._apt' >&2 ) || true
tree="$KXVM_DIR/kernel/$rel"
abs="$(cd "$KXVM_DIR" && pwd)/kernel/$rel"
rm -rf "$tree.tmp"
mkdir -p "$tree.tmp"
for p in "linux-image-$rel" "linux-headers-$rel" "linux-headers-$base-common" \
         "linux-kbuild-$series"; do
	deb=$(ls "$DEBS/${p}_${ver}_"*.deb 2>/dev/null | head -1)
	[ -n "$deb" ] || { say "download of $p $ver failed"; rm -rf "$tree.tmp"; exit 1; }
	dpkg-deb -x "$deb" "$tree.tmp"
done
# The headers' Makefile includes the -common tree by its absolute
# /usr/src path: point it at ours.
sed -i "s|/usr/src/linux-headers-$base-common|$abs/usr/src/linux-headers-$base-common|" \
	"$tree.tmp/usr/src/linux-headers-$rel/Makefile"
rm -rf "$tree"
mv "$tree.tmp" "$tree"
touch "$tree/.complete"
echo "$rel" > "$KXVM_DIR/kernel/current"
say "kernel $rel ready in $tree"
echo "$rel"
