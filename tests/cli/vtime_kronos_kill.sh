#!/bin/bash
# A Kronos-style orchestrator killed with SIGKILL mid-experiment: its
# tracers' commands (a busy loop, a sleeper) end, the tracers exit 1 saying
# the controller went away, and no cgroup or clock file is left.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
source tests/cli/lib.sh
export KXRUN_VTIME_SOCK=$T/vtime.sock
tag="$$$RANDOM"

alive() {
	ps -eo pid=,stat=,args= | awk -v t="$1" 'index($0, t) && $2 !~ /^Z/ && !/awk/ { print $1 }'
}

cat >"$T/orch.lua" <<EOS
local kronos = require "kx.kronos"
if kronos.initializeExp(2) < 0 then os.exit(3) end
while kronos.synchronizeAndFreeze(20) <= 0 do end
kronos.progressBy(1000000, 50)
local f = io.open("$T/ready", "w") f:close()
while true do kronos.progressBy(1000000, 10) end
EOS
"$KXRUN" "$T/orch.lua" 2>"$T/orch.err" &
orch=$!
"$KXRUN" vtime tracer -c "sh -c 'while :; do :; done # $tag'" -r 1 -w 20 >/dev/null 2>"$T/t1.err" &
t1=$!
"$KXRUN" vtime tracer -c "sleep 1014.$tag" -r 1 -w 20 >/dev/null 2>"$T/t2.err" &
t2=$!
for _ in $(seq 300); do [ -e "$T/ready" ] && break; sleep 0.05; done
[ -e "$T/ready" ] || fail "orchestrator not ready: $(cat "$T/orch.err")"
[ "$(alive "$tag" | wc -l)" -ge 2 ] || fail "the tracers' commands are not running"
kill -9 $orch
wait $t1; rc1=$?
wait $t2; rc2=$?
expect_eq "$rc1" 1 "tracer 1 exit"
expect_eq "$rc2" 1 "tracer 2 exit"
expect_match "$(cat "$T/t1.err")" "controller went away" "tracer 1 message"
for _ in $(seq 100); do [ -z "$(alive "$tag")" ] && break; sleep 0.05; done
[ -z "$(alive "$tag")" ] || fail "left running: $(ps -o pid,stat,args -p "$(alive "$tag" | tr '\n' ,)0")"
for _ in $(seq 100); do ls /dev/shm/kxrun-vtime-$orch-* >/dev/null 2>&1 || break; sleep 0.05; done
ls /dev/shm/kxrun-vtime-$orch-* 2>/dev/null && fail "clock file left"
left=$(find /sys/fs/cgroup -maxdepth 2 -name "kxrun-vtime-$orch-*" 2>/dev/null)
[ -z "$left" ] || fail "cgroup left: $left"
exit 0
