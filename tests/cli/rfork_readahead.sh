#!/bin/bash
# kx.rfork's page fetching (build/tests/rfork_basic "hold"): children that
# read 1%, 10% and all of a 256 MiB parent get every page right through
# growing read-ahead windows, pipelined requests and the marker pages that
# ask for the next window; so do a child reading three runs at once, four
# such children at once, a child whose windows stay one page
# (KXRUN_RFORK_READAHEAD_MAX=1) and one with no prefetch at all.  The child checks each page it reads (exit 1 on a wrong
# byte).
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$ROOT/tests/cli/lib.sh"
BASIC=$ROOT/${BUILD:-build}/tests/rfork_basic
[ -x "$BASIC" ] || fail "$BASIC not built (make test builds it)"
need userfaultfd

rm -f "$T/in"
mkfifo "$T/in"
"$BASIC" hold 256 < "$T/in" > "$T/out" 2> "$T/perr" &
PARENT=$!
exec 7> "$T/in"
for _ in $(seq 600); do [ -s "$T/out" ] && break; sleep 0.05; done
read -r ADDR ID KEY < "$T/out" || fail "the parent printed no address: $(cat "$T/perr")"

# child PERCENT [ENV...]: the touch child's output, checked
child() {
	local pct=$1 n
	shift
	n=${pct% *}
	out=$(echo "$pct" | env "$@" timeout 120 "$BASIC" resume "$ADDR" "$ID" "$KEY" 2> "$T/cerr")
	expect_eq "$?" 0 "child reading $pct% ($*): $(tail -3 "$T/cerr")"
	expect_match "$out" "^touched $((65536 * n / 100)) pages in " "child reading $pct%"
}

# KXRUN_RFORK_CACHE=0: the windows are those of pages asked of the holder
# (the shared pager serves later children from its cache)
child 100 KXRUN_RFORK_STATS=1 KXRUN_RFORK_CACHE=0
# windows grew and markers asked for the next ones
expect_match "$(cat "$T/cerr")" "largest 1024; [1-9][0-9]* read-ahead markers hit" "read-ahead"
child 10
child 1
# three sequential runs read at once (six under ASan, with their shadow): each
# grows its own windows (one run per client made each fault start over)
child "100 3" KXRUN_RFORK_STATS=1 KXRUN_RFORK_CACHE=0
expect_match "$(cat "$T/cerr")" "largest 1024; [1-9][0-9]* read-ahead markers hit" "read-ahead, 3 runs"
child 100 KXRUN_RFORK_READAHEAD_MAX=1
child 10 KXRUN_RFORK_PREFETCH=0 KXRUN_RFORK_READAHEAD=1

pids=()
for i in 1 2 3 4; do
	(echo 100 | timeout 120 "$BASIC" resume "$ADDR" "$ID" "$KEY" > "$T/c$i" 2> "$T/e$i") &
	pids+=($!)
done
for i in 1 2 3 4; do
	wait "${pids[$((i - 1))]}"
	expect_eq "$?" 0 "child $i of 4 at once: $(tail -3 "$T/e$i")"
	expect_match "$(cat "$T/c$i")" "^touched 65536 pages in " "child $i of 4 at once"
done

exec 7>&-
wait "$PARENT"
echo ok
