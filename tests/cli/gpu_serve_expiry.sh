#!/bin/bash
# Under `kxrun gpu serve`, a partition ends at its time with nobody running
# a command: the daemon reads the ledger at each expiry and ends what still
# runs in it, also a program that escaped its runner and guard (issue 13,
# item 7), whether the partition was made through the daemon or by root on
# the file itself.
. "$ROOT/tests/cli/gpu_lib.sh.inc"
K=$KXRUN
need root setpriv nobody-exec
mkdir -p "$TOP/home" && chown 65534 "$TOP/home"
as_nobody() { HOME=$TOP/home setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
D=$TOP/gpu
need_device
chmod 777 "$TOP"   # the user's program writes its pid there

$K gpu serve 2>"$TOP/serve.err" &
daemon=$!
stop() { kill -TERM "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null; }
trap 'stop; rm -rf "$TOP"' EXIT
wait_for test -S "$D/serve.sock" || die "no socket: $(cat "$TOP/serve.err")"

# escape PARTITION RUN-AS...: runs a program that starts `setsid sleep 81`
# (leaving the process group) in the partition, kills its runner, and checks
# the sleep escaped the guard; sets SLEEP
escape() {
	local id=$1 f=$TOP/sleep.$1
	shift
	"$@" $K gpu run "$id" -- sh -c "setsid sleep 81 & echo \$! >'$f'; wait" 2>>"$TOP/run.err" &
	local runner=$!
	wait_for test -s "$f" || die "$id: the program did not start: $(cat "$TOP/run.err")"
	SLEEP=$(cat "$f")
	kill -KILL "$runner" || die "$id: kill -KILL failed"
	wait "$runner"; [ $? = 137 ] || die "$id: the runner did not die of SIGKILL"
	alive "$SLEEP" || die "$id: precondition: the sleep should have escaped"
}

# through the daemon, a user's partition
as_nobody $K gpu create 0 0.25 3 >/dev/null || die "create through the daemon"
escape partition_0001 as_nobody
USER_SLEEP=$SLEEP
[ "$(ps -o uid= -p "$USER_SLEEP" | tr -d ' ')" = 65534 ] || die "precondition: the user's sleep runs as the user"
# root on the file itself, beside the daemon
$K gpu create 0 0.25 3 >/dev/null || die "root's create"
escape partition_0002 env
ROOT_SLEEP=$SLEEP

# no command from now on: the daemon ends both at their expiry
expires=$(( $(date +%s) + 4 ))
wait_for gone "$USER_SLEEP" || die "the user's escaped program outlived its partition"
wait_for gone "$ROOT_SLEEP" || die "root's escaped program outlived its partition"
[ "$(date +%s)" -ge $((expires - 2)) ] || die "ended before the partitions expired"
out=$($K gpu list) || die "list"
echo "$out" | grep -q "No active partitions" || die "$out"
stop
[ -e "$D/serve.sock" ] && die "socket left behind"
echo ok
