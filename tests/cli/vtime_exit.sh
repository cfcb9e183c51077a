#!/bin/bash
# kxrun's exit ends everything its experiments ran, however it detached
# (left behind by its parent, setsid, double fork into a new session), and
# removes their cgroups and clock files: at the end of the script, on a
# script error, on SIGINT and on SIGTERM; for each backend that runs here.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
source tests/cli/lib.sh

source tests/vtime/backends.sh

# Live (not zombie) sleeps whose argument ends in .$1
sleeps() {
	ps -eo pid=,stat=,args= | awk -v t="$1" \
		'$3 == "sleep" && $4 ~ ("^100[3-7][.]" t "$") && $2 !~ /^Z/ { print $1 }'
}

for backend in $backends; do
	for how in end error INT TERM; do
		tag="$$$RANDOM"
		cat >"$T/exp.lua" <<EOF
local vtime = require "kx.vtime"
local exp = assert(vtime.experiment{ step = 1000000, backend = "$backend" })
local w = " sleep 0.02; exit 0"
assert(exp:spawn({ "sh", "-c", "sleep 1003.$tag &" .. w }))
assert(exp:spawn({ "sh", "-c", "setsid sleep 1004.$tag &" .. w }))
assert(exp:spawn({ "sh", "-c", "(setsid sh -c 'sleep 1005.$tag &' &);" .. w }))
assert(exp:spawn({ "sh", "-c", "sleep 1006.$tag & sleep 1007.$tag" }))
exp:freeze()
-- rounds until the five sleeps run (a loaded host or an ASan kxrun needs
-- more than 200 ms of virtual time for the double forks; 5 s of it was
-- not enough once in a loaded make test), for 60 s at most
local t0 = kx.now()
while kx.now() - t0 < 60 do
	exp:advance(50)
	local _, n = kx.exec{ "pgrep", "-c", "-f", "^sleep 100[3-7][.]$tag\$" }
	if tonumber(n) == 5 then break end
end
local f = io.open("$T/ready", "w") f:write(exp.cgroup or "", "\n") f:close()
-- the test counts the sleeps, then lets it go on (end, error) or signals it
while not io.open("$T/go") do kx.sleep(0.02) end
if "$how" == "error" then error("boom") end
if "$how" ~= "end" then kx.sleep(100) end
EOF
		rm -f "$T/ready" "$T/go"
		"$KXRUN" "$T/exp.lua" >"$T/out" 2>&1 &
		ctl=$!
		# a check failing below ends the script as SIGTERM would (left
		# waiting for $T/go, it kept its experiment frozen; killed with
		# everything else by the runner, nobody thawed the cgroup)
		trap 'kill -TERM $ctl 2>/dev/null; wait $ctl 2>/dev/null; rm -rf "$T"' EXIT
		# as long as the script may advance (60 s) and then some: a
		# 15 s wait failed once in a fresh clone's make test
		for _ in $(seq 1400); do [ -e "$T/ready" ] && break; sleep 0.05; done
		[ -e "$T/ready" ] || { cat "$T/out"; fail "$backend/$how: the script did not get ready"; }
		n=$(sleeps "$tag" | wc -l)
		[ "$n" -eq 5 ] || fail "$backend/$how: $n of the 5 sleeps started"
		touch "$T/go"
		case $how in INT|TERM) sleep 0.2; kill -$how $ctl ;; esac
		wait $ctl
		rc=$?
		case $how in
		end) want=0 ;; error) want=1 ;; INT) want=130 ;; TERM) want=143 ;;
		esac
		[ $rc -eq $want ] || { cat "$T/out"; fail "$backend/$how: exit $rc, not $want"; }
		left=$(sleeps "$tag")
		[ -z "$left" ] || fail "$backend/$how: left running: $(ps -o pid,stat,args -p "$(echo $left | tr ' ' ,)")"
		cg=$(cat "$T/ready")
		[ -z "$cg" ] || [ ! -e "$cg" ] || fail "$backend/$how: cgroup $cg left"
		ls /dev/shm/kxrun-vtime-$ctl-* 2>/dev/null && fail "$backend/$how: clock file left"
		echo "$backend/$how: ok"
	done
done
trap 'rm -rf "$T"' EXIT
exit 0
