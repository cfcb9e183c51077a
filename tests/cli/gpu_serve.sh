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
need opencl
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
# the user's program runs in its partition with the usage file the daemon made
out=$(as_nobody $K gpu run partition_0002 -- "$BUILD/tests/gpu_alloc" 1 2); rc=$?
[ $rc = 0 ] || die "run through the daemon: $rc $out"
as_nobody $K gpu release partition_0002 >/dev/null || die "owner release through the daemon"
$K gpu release partition_0001 >/dev/null || die "root release beside the daemon"

stop
[ -e "$D/serve.sock" ] && die "socket left behind"
out=$(as_nobody $K gpu list 2>&1); [ $? = 1 ] && [[ $out == *"kxrun gpu serve"*"not running"* ]] || die "no daemon: $out"
echo ok
