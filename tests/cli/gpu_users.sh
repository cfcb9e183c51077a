#!/bin/bash
# Several users on one ledger: a second user works in the state directory the
# first made; only the owner or root releases; only root uses --user.
. "$ROOT/tests/cli/gpu_lib.sh.inc"
K=$KXRUN
need root setpriv nobody-exec
NOBODY=$(id -un 65534)
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
need_device

$K gpu create 0 0.3 600 >/dev/null || die "root create"
out=$(as_nobody $K gpu create 0 0.3 600) || die "second user cannot create: $out"
echo "$out" | grep -q "Assigned to user: $NOBODY (Created by: $NOBODY" || die "$out"
as_nobody $K gpu list | grep -q "Owner: root" || die "second user cannot list"
# a partition's usage count is its owner's, also when root runs in it first
$K gpu run partition_0002 -- true || die "root runs in the user's partition"
as_nobody $K gpu run partition_0002 -- true || die "the owner runs in its partition"
[ "$(stat -c '%u %a' "$TOP/gpu/partition_0002.mem")" = "65534 644" ] ||
	die "the user's .mem: $(stat -c '%u %a' "$TOP/gpu/partition_0002.mem")"
setpriv --reuid=65533 --regid=65533 --clear-groups test -w "$TOP/gpu/partition_0002.mem" &&
	die "a third user can write another's partition count"

out=$(as_nobody $K gpu release partition_0001 2>&1); rc=$?
[ $rc = 1 ] && [ "$out" = "Permission denied: partition owned by root" ] || die "release by other: $rc $out"
out=$(as_nobody $K gpu create 0 0.1 60 --user root 2>&1); rc=$?
[ $rc = 1 ] && [ "$out" = "Permission denied: only administrators can create partitions for other users" ] ||
	die "--user by non-root: $rc $out"

# root creates for someone else (the team set-up of the guide)
out=$($K gpu create 0 0.2 600 --user "$NOBODY") || die "root --user"
echo "$out" | grep -q "Assigned to user: $NOBODY (Created by: root" || die "$out"
as_nobody $K gpu release partition_0003 >/dev/null || die "owner cannot release what root made for them"
$K gpu release partition_0002 >/dev/null || die "root cannot release another's"
out=$($K gpu create 0 0.1 60 --user no-such-user-kx 2>&1); [ $? = 1 ] && [[ $out == "Unknown user"* ]] || die "$out"
[ "$($K gpu available 0)" = "70.00" ] || die "available: $($K gpu available 0)"
# only the owner or root ends the programs running in a partition
start_program partition_0001 "$TOP/sh1" 'sleep 80'
out=$(as_nobody $K gpu release --force partition_0001 2>&1)
[ $? = 1 ] && [ "$out" = "Permission denied: partition owned by root" ] || die "other user's force: $out"
alive "$SH" || die "another user's release ended the program"
$K gpu release --force partition_0001 >/dev/null || die "root's release --force"
wait "$RUNNER"; [ $? = 143 ] || die "the program did not end by SIGTERM"
echo ok
