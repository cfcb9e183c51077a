#!/bin/bash
# A controller killed with SIGKILL leaves its dilated processes stopped or
# frozen; `kxrun vtime cleanup` frees them (kills them, removes the cgroup and
# the clock file), for each backend that runs here (signal, cgroup v1
# freezer, cgroup v2 freezer).  Also: --help works.
set -u
cd "$(dirname "$0")/../.."
KXRUN=${KXRUN:-./kxrun}
"$KXRUN" vtime --help | grep -q cleanup || { echo "no help"; exit 1; }
tmp=$(mktemp -d /tmp/kxrun-vtime-cli.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
v2root=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
ran=""
for backend in signal freezer-v1 freezer-v2; do
	case $backend in
	freezer-v1) cgroot=/sys/fs/cgroup/freezer
		if ! why=$(tests/features.sh cgroup1-freezer); then
			echo "freezer-v1: not tested, $why"; continue
		fi ;;
	freezer-v2) cgroot=$v2root
		if ! why=$(tests/features.sh cgroup2); then
			echo "freezer-v2: not tested, $why"; continue
		fi ;;
	*) cgroot=/nonexistent ;;
	esac
	cat >"$tmp/ctl.lua" <<EOS
local vtime = require "kx.vtime"
local exp = assert(vtime.experiment{ step = 1000000, backend = "$backend" })
local p = assert(exp:spawn({ "sleep", "100" }))
exp:freeze()
exp:advance(3)
local f = io.open("$tmp/pid", "w") f:write(p.pid, "\n") f:close()
kx.sleep(100)
EOS
	rm -f "$tmp/pid"
	"$KXRUN" "$tmp/ctl.lua" &
	ctl=$!
	for _ in $(seq 100); do [ -s "$tmp/pid" ] && break; sleep 0.05; done
	pid=$(cat "$tmp/pid") || { echo "controller did not start"; exit 1; }
	kill -9 $ctl; wait $ctl 2>/dev/null
	state=$(awk '{print $3}' /proc/$pid/stat 2>/dev/null)
	[ -n "$state" ] || { echo "$backend: dilated process vanished by itself"; exit 1; }
	ls -d $cgroot/kxrun-vtime-$ctl-* >/dev/null 2>&1 ||
		[ $backend = signal ] || { echo "$backend: no cgroup left?"; exit 1; }
	"$KXRUN" vtime cleanup || { echo "cleanup failed"; exit 1; }
	for _ in $(seq 100); do [ -e /proc/$pid ] || break; sleep 0.02; done
	if [ -e /proc/$pid ] && [ "$(awk '{print $3}' /proc/$pid/stat)" != Z ]; then
		echo "$backend: process $pid still there"; exit 1
	fi
	if ls -d $cgroot/kxrun-vtime-$ctl-* 2>/dev/null; then
		echo "$backend: cgroup left"; exit 1
	fi
	if ls /dev/shm/kxrun-vtime-$ctl-* 2>/dev/null; then
		echo "$backend: clock file left"; exit 1
	fi
	echo "$backend: ok"
	ran="$ran $backend"
done
echo "ran:$ran"
