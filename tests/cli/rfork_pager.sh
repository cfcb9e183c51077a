#!/bin/bash
# kx.rfork's shared pager (bindings/rfork/pagerloop.c, pjoin.c, pcache.c):
# every child of one parent resumed on this host is served by ONE pager,
# which keeps the pages it fetched and serves later children from them.
# Children of build/tests/rfork_basic "hold 64" read a share of the
# parent's heap and check every page (exit 1 on a wrong byte).  Checked:
# 32 children, 8 at a time, all right and all served by the one pager (the
# stats line names it), the last ones from its cache alone; a child
# stopped mid-run delays nobody; a killed child is forgotten (the pager
# closes its descriptors); a wrong key or another user is refused through
# the socket and the pager serves on; KXRUN_RFORK_PAGER=private, or other
# cgroups, give a child its own pager; the pager ends by itself after its
# last child, and when the holder goes it kills its live children saying
# why.
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$ROOT/tests/cli/lib_rfork_hold.sh"
rm -f "$T/kin"
mkfifo "$T/kin"
hold_parent 64
export KXRUN_RFORK_STATS=1

# the pid of the pager listening for this parent's children in this
# shell's cgroups, or nothing; NAME: its socket's name
listener() {
	ss -xlpH 2> /dev/null | grep -E "@kxrun-rfork-pager/$(id -u)/$ID/[0-9a-f]{16}/$ADDR " |
		sed -n 's/.*@\([^ ]*\) .*pid=\([0-9]*\).*/\1 \2/p' | head -1 > "$T/listener"
	read -r NAME pid < "$T/listener" && echo "$pid"
}
# the stats line the pager writes on a child's stderr when it has ended
stats_of() { until_true grep -q "pager of child" "$1" && grep "pager of child" "$1"; }
pager_in() { sed -n 's/.*from the cache (pager \([0-9]*\),.*/\1/p' <<< "$1"; }
listening() { [ -n "$(listener)" ]; }
nfds() { ls "/proc/$1/fd" 2> /dev/null | wc -l; }
# child N PERCENT [ENV...]: a child reading PERCENT% of the heap, checked
child() {
	local n=$1 pct=$2
	shift 2
	env "$@" timeout 120 "$BASIC" resume "$ADDR" "$ID" "$KEY" <<< "$pct" > "$T/c$n" 2> "$T/e$n"
	expect_eq "$?" 0 "child $n ($pct%, $*): $(tail -3 "$T/e$n")"
	expect_match "$(cat "$T/c$n")" "^touched $((16384 * pct / 100)) pages in " "child $n"
}

# The keeper starts the pager and stays (blocked on its stdin) until the end.
"$BASIC" resume "$ADDR" "$ID" "$KEY" < "$T/kin" > "$T/k.out" 2> "$T/k.err" &
KEEPER=$!
PIDS+=("$KEEPER")
exec 8> "$T/kin"
until_true listening || fail "no pager listens at @$NAME: $(cat "$T/k.err")"
PAGER=$(listener)
listener > /dev/null   # NAME
PIDS+=("$PAGER")
expect_eq "$(cat "/proc/$PAGER/comm")" "kxrun-pager" "the listener"
expect_match "$(cat "$T/k.err")" "own pager, over tcp" "the keeper started it"

# 32 children, 8 at a time: all right, all served by that one pager
for round in 0 1 2 3; do
	pids=()
	for i in $(seq $((round * 8 + 1)) $((round * 8 + 8))); do
		# the first 8 also discard and move pages they read (mapped
		# from the cache or copied in: zeros, and the same contents)
		child "$i" 10 $([ "$round" = 0 ] && echo RFORK_DISCARD=1) &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || exit 1; done
done
for i in $(seq 32); do
	line=$(stats_of "$T/e$i") || fail "child $i: no stats line: $(cat "$T/e$i")"
	expect_eq "$(pager_in "$line")" "$PAGER" "child $i's pager"
	expect_match "$(cat "$T/e$i")" "joined the shared pager" "child $i joined"
done
# the last ones found every page in the cache: nothing asked of the holder
for i in $(seq 25 32); do
	expect_match "$(stats_of "$T/e$i")" " 0 pages fetched in 0 requests.* [1-9][0-9]* pages from the cache .*, [1-9][0-9]* mapped$" "child $i from the cache, mapped"
done

# a child stopped mid-run (reading all of the heap from the holder, one
# page at a time) delays nobody; continued, it finishes right
rm -f "$T/sin"
mkfifo "$T/sin"
KXRUN_RFORK_CACHE=0 KXRUN_RFORK_READAHEAD_MAX=1 "$BASIC" resume "$ADDR" "$ID" "$KEY" < "$T/sin" > "$T/s.out" 2> "$T/s.err" &
STOPPED=$!
PIDS+=("$STOPPED")
exec 9> "$T/sin"
until_true grep -q "switching at" "$T/s.err" || fail "the child to stop did not resume"
echo 100 >&9 || fail "the child to stop is gone: $(cat "$T/s.err")"  # it reads on (16384 round trips to the holder) ...
kill -STOP "$STOPPED"   # ... and stops at once
exec 9>&-
for i in 33 34 35 36; do child "$i" 10; done
expect_match "$(cut -d' ' -f3 "/proc/$STOPPED/stat")" "^T$" "the stopped child, while the others ran"
expect_eq "$(cat "$T/s.out")" "" "the stopped child's output so far"
kill -CONT "$STOPPED"
wait "$STOPPED"
expect_eq "$?" 0 "the stopped child, continued: $(tail -3 "$T/s.err")"
expect_match "$(cat "$T/s.out")" "^touched 16384 pages in " "the stopped child"

# a killed child is forgotten: the pager closes what it held of it
base=$(nfds "$PAGER")
rm -f "$T/win"
mkfifo "$T/win"
"$BASIC" resume "$ADDR" "$ID" "$KEY" < "$T/win" > /dev/null 2> "$T/w.err" &
W=$!
PIDS+=("$W")
exec 9> "$T/win"
until_true eval '[ "$(nfds "$PAGER")" -gt "$base" ]' || fail "the pager took no descriptor of the child"
kill -9 "$W"
wait "$W" 2> /dev/null
exec 9>&-
until_true eval '[ "$(nfds "$PAGER")" -le "$base" ]' ||
	fail "the killed child's descriptors stay in the pager: $(nfds "$PAGER") > $base"

# through the socket: a wrong key, and the right key from another user,
# are refused; the pager serves on
out=$("$BASIC" join "$NAME" 00000000000000000000000000000000)
expect_eq "$?" 0 "a wrong key through the socket: $out"
expect_match "$out" "refused: .*wrong key" "a wrong key"
if have setpriv nobody-exec; then
	out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$BASIC" join "$NAME" "$KEY")
	expect_eq "$?" 0 "another user through the socket: $out"
	expect_match "$out" "^refused: " "another user"
fi
# the right key: taken, with the pager's cache, which nobody but the
# pager can change (sealed)
out=$("$BASIC" join "$NAME" "$KEY")
expect_eq "$?" 1 "the right key through the socket: $out"
expect_eq "$out" "taken, the cache read-only" "the cache a child gets"
expect_eq "$(listener)" "$PAGER" "the pager after the refusals"
# (its pages mapped from the cache: discarded ones read zeros, moved
# ones keep their contents, as anonymous memory behaves)
child 37 10 RFORK_DISCARD=1
expect_eq "$(pager_in "$(stats_of "$T/e37")")" "$PAGER" "a child after the refusals"
expect_match "$(stats_of "$T/e37")" ", [1-9][0-9]* mapped$" "child 37's pages mapped"

# KXRUN_RFORK_PAGER=private: a pager of its own, for that child alone
child 38 1 KXRUN_RFORK_PAGER=private
line=$(stats_of "$T/e38")
[ "$(pager_in "$line")" != "$PAGER" ] || fail "a private child was served by the shared pager"
expect_match "$line" "\(pager [0-9]+, 1 children" "the private pager"
expect_match "$(cat "$T/e38")" "own pager, over tcp" "the private child's stages"
# a child in other cgroups gets a pager of its own, in them: what is done
# to a cgroup (killing or freezing its processes, counting their CPU) is
# done to the pager of its children and to no other child
if have cgroup1-cpu; then
	CG=/sys/fs/cgroup/cpu/kxrun-test-rfork-pager-$$
	mkdir "$CG" || fail "cannot make $CG"
	sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CG" \
		"$BASIC" resume "$ADDR" "$ID" "$KEY" <<< 1 > "$T/c39" 2> "$T/e39"
	expect_eq "$?" 0 "a child in another cgroup: $(tail -3 "$T/e39")"
	line=$(stats_of "$T/e39")
	other=$(pager_in "$line")
	[ -n "$other" ] && [ "$other" != "$PAGER" ] || fail "a child in another cgroup was served by the shared pager: $line"
	expect_match "$line" "\(pager [0-9]+, 1 children" "the other cgroup's pager"
	until_true eval '[ -z "$(cat "$CG/cgroup.procs")" ]' || fail "$CG keeps $(cat "$CG/cgroup.procs")"
	rmdir "$CG" || fail "cannot remove $CG"
fi
out=$(KXRUN_RFORK_PAGER=bogus "$BASIC" resume "$ADDR" "$ID" "$KEY" < /dev/null 2>&1)
expect_match "$out" "KXRUN_RFORK_PAGER must be \"shared\" or \"private\"" "a bad KXRUN_RFORK_PAGER"

# the last child ends: the pager follows within its idle time (250 ms; the
# wait allows for a loaded machine) and leaves nothing
echo 1 >&8
exec 8>&-
wait "$KEEPER"
expect_eq "$?" 0 "the keeper: $(tail -3 "$T/k.err")"
until_true eval '! kill -0 "$PAGER" 2> /dev/null' || fail "the pager is still there after its last child"
expect_eq "$(listener)" "" "a listener after the last child"

# the holder goes: the pager kills its live children, each saying why
rm -f "$T/h1" "$T/h2"
mkfifo "$T/h1" "$T/h2"
"$BASIC" resume "$ADDR" "$ID" "$KEY" < "$T/h1" > /dev/null 2> "$T/h1.err" &
H1=$!
exec 5> "$T/h1"
until_true listening || fail "no pager for the holder test"
PAGER=$(listener)
"$BASIC" resume "$ADDR" "$ID" "$KEY" < "$T/h2" > /dev/null 2> "$T/h2.err" &
H2=$!
PIDS+=("$H1" "$H2" "$PAGER")
exec 6> "$T/h2"
until_true grep -q "switching at" "$T/h2.err" || fail "the second child did not resume"
expect_match "$(cat "$T/h2.err")" "joined the shared pager" "the second child"
exec 7>&-
wait "$PARENT"
for h in 1 2; do
	pid=$H1
	[ $h = 2 ] && pid=$H2
	wait "$pid"
	expect_eq "$?" 137 "child $h when the holder went: $(tail -2 "$T/h$h.err")"
	expect_match "$(cat "$T/h$h.err")" "cannot be reached, killing the child" "child $h's message"
done
exec 5>&- 6>&-
until_true eval '! kill -0 "$PAGER" 2> /dev/null' || fail "the pager outlived its holder"
echo ok
