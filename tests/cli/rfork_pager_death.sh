#!/bin/bash
# A resumed child whose pager dies must not run on: the kernel would fill
# every page not fetched yet with zeros (its userfaultfd is gone).  Each
# child holds a watch on its pager (resume.c: watch_pager) that kills it
# when the pager ends, however.  Checked with the shared pager (two
# children of one build/tests/rfork_basic "hold 64" parent, waiting on
# their stdin, then its pager SIGKILLed) and with a private one: every
# child ends by SIGKILL at once, none reads a page; a child that ends by
# itself is not disturbed by its pager's normal end.
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$ROOT/tests/cli/lib_rfork_hold.sh"
hold_parent 64
export KXRUN_RFORK_STATS=1

# start N [ENV...]: a child waiting on the fifo $T/cN for how much to read
start() {
	local n=$1
	shift
	mkfifo "$T/c$n"
	env "$@" "$BASIC" resume "$ADDR" "$ID" "$KEY" < "$T/c$n" > "$T/o$n" 2> "$T/e$n" &
	eval "C$n=\$!"
	PIDS+=("$!")
	eval "exec $((10 + n))> \"\$T/c$n\""
	until_true grep -q "switching at" "$T/e$n" || fail "child $n did not resume: $(cat "$T/e$n")"
}
pager_pid() {   # the pager of the child whose stderr is $1
	ps -eo pid=,comm= | awk '$2 == "kxrun-pager" { print $1 }' | while read -r p; do
		# the pager holds the child's stderr
		for fd in /proc/"$p"/fd/*; do
			[ "$(readlink "$fd")" = "$(readlink -f "$1")" ] && echo "$p" && break
		done
	done | head -1
}
# ended N: child N ended by SIGKILL without reading a page
killed() {
	local n=$1 pid
	eval "pid=\$C$n"
	until_true eval '! kill -0 "$pid" 2> /dev/null || [ "$(cut -d" " -f3 /proc/$pid/stat 2> /dev/null)" = Z ]' ||
		fail "child $n still runs after its pager was killed"
	wait "$pid"
	expect_eq "$?" 137 "child $n's status (SIGKILL) after its pager died: $(tail -3 "$T/e$n")"
	expect_eq "$(cat "$T/o$n")" "" "child $n's output"
}

# kill_pager N: SIGKILL to the pager serving child N
kill_pager() {
	local p
	p=$(pager_pid "$T/e$1")
	[ -n "$p" ] || fail "no pager holds child $1's stderr"
	PIDS+=("$p")
	kill -9 "$p"
}

# the shared pager: started by child 1, joined by child 2
start 1
start 2
expect_match "$(cat "$T/e2")" "joined the shared pager" "child 2"
kill_pager 2
killed 1
killed 2

# a private pager (no cache: it keeps its stdin and stdout on /dev/null,
# as every pager does, and nothing else of the resuming process)
start 3 KXRUN_RFORK_PAGER=private
expect_match "$(cat "$T/e3")" "own pager" "child 3"
P3=$(pager_pid "$T/e3")
expect_eq "$(readlink "/proc/$P3/fd/0") $(readlink "/proc/$P3/fd/1")" "/dev/null /dev/null" \
	"the private pager's stdin and stdout"
kill_pager 3
killed 3

# a child that ends by itself, its pager after it: status 0, right pages
start 4
echo 10 >&14
exec 14>&-
wait "$C4"
expect_eq "$?" 0 "child 4: $(tail -3 "$T/e4")"
expect_match "$(cat "$T/o4")" "^touched 1638 pages in " "child 4"

exec 7>&-
wait "$PARENT"
exit 0
