#!/bin/bash
# make bench: runs every benchmark in bench/ (NAME.lua with kxrun, NAME.sh with
# bash), each printing its figure beside its peer's, measured in the same run.
# A name filter can be given as $1.
set -u
cd "$(dirname "$0")/.."
export KXRUN=${KXRUN:-$PWD/kxrun}
status=0
for b in bench/*.lua bench/*.sh; do
	[ -e "$b" ] || continue
	case $b in bench/run.sh|bench/lib_*|bench/_*) continue ;; esac
	[ -n "${1:-}" ] && [[ "$b" != *"$1"* ]] && continue
	echo "== $b"
	case $b in
	*.lua) "$KXRUN" "$b" || status=1 ;;
	*.sh) bash "$b" || status=1 ;;
	esac
done
exit $status
