#!/bin/bash
# A controller killed with SIGKILL leaves no dilated process running, for
# each backend that runs here: its supervisor ends them (a busy loop, a
# sleeper, a child that left the process group) and removes the cgroup and
# the clock file, naming them on stderr.  When the supervisor is killed
# too, `kxrun vtime cleanup` ends what is left and names it, and so does
# the next kxrun that starts an experiment.  Also: --help works.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
source tests/cli/lib.sh
"$KXRUN" vtime --help | grep -q cleanup || fail "no help"

source tests/vtime/backends.sh

# Live (not zombie) processes whose command line holds $1.
alive() {
	ps -eo pid=,stat=,args= | awk -v t="$1" 'index($0, t) && $2 !~ /^Z/ && !/awk/ { print $1 }'
}

# Starts a controller with a busy loop, a sleeper and a setsid child (the
# loops' children carry $tag), waits until they run; sets ctl, sup, cg.
start() {
	cat >"$T/ctl.lua" <<EOF
local vtime = require "kx.vtime"
local exp = assert(vtime.experiment{ step = 1000000, backend = "$1" })
assert(exp:spawn({ "sh", "-c", "sleep 1011.$tag & while :; do :; done" }))
assert(exp:spawn({ "sleep", "1012.$tag" }))
assert(exp:spawn({ "sh", "-c", "setsid sleep 1013.$tag & while :; do :; done" }))
exp:freeze()
for _ = 1, 4 do exp:advance(25) end
local f = io.open("$T/ready", "w") f:write(exp.cgroup or "", "\n") f:close()
while true do exp:advance(10) end
EOF
	rm -f "$T/ready"
	"$KXRUN" "$T/ctl.lua" 2>"$T/err" &
	ctl=$!
	for _ in $(seq 200); do [ -s "$T/ready" ] && break; sleep 0.05; done
	[ -s "$T/ready" ] || fail "$1: controller did not start: $(cat "$T/err")"
	cg=$(cat "$T/ready")
	sup=$(alive "vtime supervise $ctl ")
	[ -n "$sup" ] || fail "$1: no supervisor for controller $ctl"
	[ "$(alive ".$tag" | wc -l)" -ge 3 ] || fail "$1: the sleeps did not start"
}

# Waits up to 5 s until nothing of controller $ctl is left.
gone() {
	for _ in $(seq 100); do
		[ -z "$(alive ".$tag")" ] &&
			! ls /dev/shm/kxrun-vtime-$ctl-* >/dev/null 2>&1 &&
			{ [ -z "$cg" ] || [ ! -e "$cg" ]; } && return 0
		sleep 0.05
	done
	return 1
}

for backend in $backends; do
	# 1. the supervisor ends everything at once
	tag="$$$RANDOM"
	start $backend
	kill -9 $ctl; wait $ctl 2>/dev/null
	gone || fail "$backend: left after SIGKILL: $(ps -o pid,stat,args -p "$(alive ".$tag" | tr '\n' ,)0") cgroup [$cg] $(ls /dev/shm | grep "kxrun-vtime-$ctl-")"
	grep -q "killed controller $ctl: ended process" "$T/err" || fail "$backend: supervisor named nothing: $(cat "$T/err")"
	[ -z "$cg" ] || grep -q "killed controller $ctl: removed cgroup $cg" "$T/err" || fail "$backend: cgroup not named"
	[ -z "$(alive "vtime supervise $ctl ")" ] || fail "$backend: supervisor still running"

	# 2. supervisor killed first: `kxrun vtime cleanup` ends the rest, or
	# the next kxrun that starts an experiment (any kxrun does: one started
	# meanwhile elsewhere on the machine may have done it, then try again)
	for cleaner in cleanup next; do
		for try in 1 2 3 4 5; do
			tag="$$$RANDOM"
			start $backend
			kill -9 $sup; kill -9 $ctl; wait $ctl 2>/dev/null
			[ -n "$(alive ".$tag")" ] && break
			[ $try = 5 ] && fail "$backend/$cleaner: cleaned by someone else 5 times"
		done
		if [ $cleaner = cleanup ]; then
			out=$("$KXRUN" vtime cleanup 2>&1) || fail "$backend: cleanup failed: $out"
			echo "$out" | grep -q "ended process .* (dead controller $ctl)" || fail "$backend: cleanup named no process: $out"
			echo "$out" | grep -q "removed clock file /dev/shm/kxrun-vtime-$ctl-0 (dead controller $ctl)" || fail "$backend: cleanup named no clock file: $out"
			[ -z "$cg" ] || echo "$out" | grep -q "removed cgroup $cg" || fail "$backend: cleanup named no cgroup: $out"
			echo "$out" | tail -1 | grep -Eq "^removed [0-9]+ cgroup\(s\)$" || fail "$backend: no summary line: $out"
		else
			out=$("$KXRUN" -e 'require("kx.vtime").experiment{ step = 1e6, backend = "signal" }:stop()' 2>&1)
			echo "$out" | grep -q "dead controller $ctl: ended process" || fail "$backend: the next kxrun named nothing: $out"
		fi
		gone || fail "$backend/$cleaner: left: $(alive ".$tag") [$cg]"
	done
	echo "$backend: ok"
done
exit 0
