#!/bin/bash
# kxrun gpu serve: root owns the ledger (0600); other users go through its
# socket and are identified by the kernel (SO_PEERCRED), not by what they say.
. "$ROOT/tests/cli/gpu_lib.sh.inc"
K=$KXRUN
need root setpriv nobody-exec
NOBODY=$(id -un 65534)
# PoCL wants a writable cache under $HOME
mkdir -p "$TOP/home" && chown 65534 "$TOP/home"
as_nobody() { HOME=$TOP/home setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
D=$TOP/gpu
need_device
$K gpu create 0 0.2 600 >/dev/null || die "root create before serve"

$K gpu serve 2>"$TOP/serve.err" &
daemon=$!
for _ in $(seq 1 100); do [ -S "$D/serve.sock" ] && break; sleep 0.05; done
[ -S "$D/serve.sock" ] || die "no socket: $(cat "$TOP/serve.err")"
stop() { kill -TERM "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null; }
trap 'stop; rm -rf "$TOP"' EXIT
[ "$(stat -c %a "$D/ledger")" = 600 ] || die "ledger mode $(stat -c %a "$D/ledger")"
[ "$(stat -c %a "$D")" = 755 ] || die "dir mode $(stat -c %a "$D")"
as_nobody test -w "$D/ledger" && die "other users can still write the ledger"

out=$(as_nobody $K gpu create 0 0.3 600) || die "create through the daemon: $out"
echo "$out" | grep -q "Assigned to user: $NOBODY (Created by: $NOBODY, PID: $daemon)" && die "pid is the daemon's"
echo "$out" | grep -q "Assigned to user: $NOBODY (Created by: $NOBODY, PID: [0-9]*)" || die "$out"
[ "$(as_nobody $K gpu available 0)" = "50.00" ] || die "available through the daemon"
as_nobody $K gpu list | grep -q "Owner: root" || die "list through the daemon"
out=$(as_nobody $K gpu release partition_0001 2>&1); [ $? = 1 ] && [ "$out" = "Permission denied: partition owned by root" ] || die "$out"
out=$(as_nobody $K gpu create 0 0.1 60 --user root 2>&1); [ $? = 1 ] &&
	[ "$out" = "Permission denied: only administrators can create partitions for other users" ] || die "$out"
# the usage files the daemon makes are their owner's: another user cannot
# reset a partition's count (issue 13, item 9)
$K gpu run partition_0001 -- true || die "root's run beside the daemon"
[ "$(stat -c '%u %a' "$D/partition_0001.mem")" = "0 644" ] || die "root's .mem: $(stat -c '%u %a' "$D/partition_0001.mem")"
[ "$(stat -c '%u %a' "$D/partition_0002.mem")" = "65534 644" ] || die "the user's .mem: $(stat -c '%u %a' "$D/partition_0002.mem")"
as_nobody test -w "$D/partition_0001.mem" && die "a user can write root's partition count"
as_nobody test -w "$D/partition_0002.mem" || die "the owner cannot write its partition count"
setpriv --reuid=65533 --regid=65533 --clear-groups test -w "$D/partition_0002.mem" &&
	die "a third user can write another's partition count"
setpriv --reuid=65533 --regid=65533 --clear-groups sh -c ": >'$D/partition_0002.mem'" 2>/dev/null &&
	die "a third user truncated another's partition count"
[ "$(stat -c %s "$D/partition_0002.mem")" -gt 0 ] || die "the count was truncated"
# the user's program runs in its partition with the usage file the daemon made
out=$(as_nobody $K gpu run partition_0002 -- "$BUILD/tests/gpu_alloc" 1 2); rc=$?
[ $rc = 0 ] || die "run through the daemon: $rc $out"
# a release through the daemon while the user's program runs: refused,
# naming it; by force the daemon (root) ends it
chmod 777 "$TOP"
as_nobody $K gpu run partition_0002 -- sh -c "echo \$\$ >'$TOP/sh'; exec sleep 82" 2>/dev/null &
runner=$!
wait_for test -s "$TOP/sh" || die "the user's program did not start"
prog=$(cat "$TOP/sh")
out=$(as_nobody $K gpu release partition_0002 2>&1); rc=$?
[ $rc = 1 ] && [[ $out == *"has programs running in it: sleep (pid $prog)"* ]] || die "release through the daemon: $rc $out"
alive "$prog" || die "a refused release ended the program"
as_nobody $K gpu release --force partition_0002 >/dev/null || die "owner release --force through the daemon"
gone "$prog" || die "release --force through the daemon left the program"
wait "$runner"; [ $? = 143 ] || die "the user's run did not end by SIGTERM"
$K gpu release partition_0001 >/dev/null || die "root release beside the daemon"

stop
[ -e "$D/serve.sock" ] && die "socket left behind"
out=$(as_nobody $K gpu list 2>&1); [ $? = 1 ] && [[ $out == *"kxrun gpu serve"*"not running"* ]] || die "no daemon: $out"
echo ok
