#!/bin/bash
# kx.rfork's mechanism without Lua (build/tests/rfork_basic): a parent's
# prepare-time memory, open file and signal dispositions reach a resumed
# child although the parent changes them, by TCP or the holder's local
# unix socket, resumed as a zygote's fork or not; a changed binary, a
# second thread and a missing userfaultfd permission are refused with a
# clear message.
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$ROOT/tests/cli/lib.sh"
BASIC=$ROOT/${BUILD:-build}/tests/rfork_basic
[ -x "$BASIC" ] || fail "$BASIC not built (make test builds it)"
need userfaultfd
chmod 755 "$T"
cp "$BASIC" "$T/rb"
printf '0123456789abcdef' > "$T/data"

# start_parent MB: the parent in the background, stdin held open on fd 7
start_parent() {
	rm -f "$T/in" "$T/out"
	mkfifo "$T/in"
	"$T/rb" parent "$1" "$T/data" < "$T/in" > "$T/out" 2> "$T/perr" &
	PARENT=$!
	exec 7> "$T/in"
	for _ in $(seq 100); do [ -s "$T/out" ] && break; sleep 0.05; done
	read -r ADDR ID KEY < "$T/out" || fail "the parent printed no address: $(cat "$T/perr")"
}
stop_parent() { exec 7>&-; wait "$PARENT"; }

# (the child also checks it has the parent's signal dispositions, not the
# resuming process's: SIGHUP ignored there)
start_parent 16
out=$(RFORK_IGNORE_HUP=1 timeout 60 "$BASIC" resume "$ADDR" "$ID" "$KEY" 2> "$T/cerr")
rc=$?
expect_eq "$rc" 0 "child exit status ($(cat "$T/cerr"))"
expect_eq "$out" "child 1 ok" "child output"
# resumed as a zygote's fork is (rf_resume_warm: only the parent's other
# dispositions are set)
out=$(RFORK_IGNORE_HUP=1 RFORK_WARM=1 timeout 60 "$BASIC" resume "$ADDR" "$ID" "$KEY" \
	2> "$T/cerr")
expect_eq "$?" 0 "warm child exit status ($(cat "$T/cerr"))"
expect_eq "$out" "child 2 ok" "warm child output"
stop_parent
expect_match "$(tail -1 "$T/out")" "^parent: 2 children$" "parent's count"

# the parent's executable replaced by another file after prepare
start_parent 1
rm -f "$T/rb" && cp /bin/true "$T/rb"
out=$(timeout 60 "$BASIC" resume "$ADDR" "$ID" "$KEY" 2>&1)
expect_eq "$?" 2 "resume against a changed binary"
expect_match "$out" "rb differs from the parent's \(build-id\)" "message"
stop_parent
cp "$BASIC" "$T/rb"

# a child on the holder's host says hello over the holder's unix socket
# (named after the user and the snapshot id), not TCP: the port does not
# matter then
start_parent 1
grep -q "@kxrun-rfork-holder/$(id -u)/$ID\$" /proc/net/unix ||
	fail "no unix socket of the holder in /proc/net/unix"
out=$(timeout 60 "$BASIC" resume 127.0.0.1:1 "$ID" "$KEY" 2> "$T/cerr")
expect_eq "$?" 0 "resume by the local hello ($(cat "$T/cerr"))"
expect_eq "$out" "child 1 ok" "child output"
stop_parent

# a layout cached before (a zygote's) that misses a mapping made since: the
# maps are read again
start_parent 1
out=$(RFORK_WARM=1 RFORK_STALE_LAYOUT=1 timeout 60 "$BASIC" resume "$ADDR" "$ID" "$KEY" \
	2> "$T/cerr")
expect_eq "$?" 0 "resume with a stale cached layout ($(cat "$T/cerr"))"
expect_eq "$out" "child 1 ok" "child output"
stop_parent

# a resuming process with a second thread: its threads would run on the
# parent's memory
start_parent 1
out=$(RFORK_THREAD=1 timeout 60 "$BASIC" resume "$ADDR" "$ID" "$KEY" 2>&1)
expect_eq "$?" 2 "resume from a process with two threads"
expect_match "$out" "must be single-threaded" "message"
stop_parent

# no permission for userfaultfd: an unprivileged user where it is root-only
if [ "$(id -u)" = 0 ] && [ "$(cat /proc/sys/vm/unprivileged_userfaultfd)" = 0 ] &&
   command -v setpriv >/dev/null; then
	start_parent 1
	out=$(timeout 60 setpriv --reuid=65534 --regid=65534 --clear-groups \
		"$T/rb" resume "$ADDR" "$ID" "$KEY" 2>&1)
	expect_eq "$?" 2 "unprivileged resume"
	expect_match "$out" "userfaultfd not permitted.*vm.unprivileged_userfaultfd" "message"
	stop_parent
else
	echo "note: userfaultfd permission case not run (needs root and vm.unprivileged_userfaultfd=0)"
fi
echo ok
