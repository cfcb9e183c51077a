#!/bin/bash
# Runs every test: cmocka units, busted specs (with kxrun as the Lua
# interpreter) and command-line integration scripts.  Prints each runner's
# closing line, then one summary line "N passed, N failed, N skipped".
# KXRUN=path selects the binary (make asan uses its own build); BUILD the
# build directory; a test name filter can be given as $1 (a substring).
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
: "${BUILD:=build}"
: "${KXRUN:=$ROOT/kxrun}"
export KXRUN BUILD ROOT
FILTER=${1:-}
LOG=$(mktemp -d /tmp/kxrun-tests.XXXXXX)
passed=0 failed=0 skipped=0
failures=()

want() { [ -z "$FILTER" ] || [[ "$1" == *"$FILTER"* ]]; }

# -- cmocka units ------------------------------------------------------------
for t in "$BUILD"/tests/unit/test_*; do
	[ -x "$t" ] || continue
	name=$(basename "$t")
	want "$name" || continue
	out="$LOG/$name.out"
	timeout 300 "$t" >"$out" 2>&1
	rc=$?
	p=$(grep -Eo '\[  PASSED  \] [0-9]+' "$out" | grep -Eo '[0-9]+$' | tail -1)
	f=$(grep -Eo '\[  FAILED  \] [0-9]+' "$out" | grep -Eo '[0-9]+$' | tail -1)
	s=$(grep -Eo '\[  SKIPPED \] [0-9]+' "$out" | grep -Eo '[0-9]+$' | tail -1)
	p=${p:-0} f=${f:-0} s=${s:-0}
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
	echo "unit $name: $(grep -Eo '\[  (PASSED|FAILED|SKIPPED) +\] [0-9]+ test\(s\)' "$out" | tr '\n' ' ')"
	grep -E '^\[  SKIPPED \] [a-z]|^\[  SKIP' "$out" | grep -v '^\[  SKIPPED \] [0-9]' | sed 's/^/    /'
	if [ "$f" -ne 0 ]; then failures+=("unit $name"); sed 's/^/    | /' "$out" | tail -40; fi
done

# -- busted specs ------------------------------------------------------------
specs=()
for s in tests/spec/*_spec.lua; do
	[ -e "$s" ] && want "$(basename "$s")" && specs+=("$s")
done
if [ ${#specs[@]} -gt 0 ]; then
	out="$LOG/busted.out"
	timeout 900 busted --lua="$KXRUN" -o utfTerminal "${specs[@]}" >"$out" 2>&1
	rc=$?
	sed 's/^/    | /' "$out" | grep -vE '^    \| [●◼✱ ]*$' | tail -60
	line=$(grep -E '[0-9]+ successes? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$out" | tail -1)
	echo "busted: ${line:-no closing line (exit $rc)}"
	p=$(echo "$line" | grep -Eo '^[0-9]+' || echo 0)
	f=$(echo "$line" | sed -E 's/.* ([0-9]+) failures?.*/\1/;t;s/.*/0/')
	e=$(echo "$line" | sed -E 's/.* ([0-9]+) errors?.*/\1/;t;s/.*/0/')
	n=$(echo "$line" | sed -E 's/.* ([0-9]+) pending.*/\1/;t;s/.*/0/')
	[ -z "$line" ] && f=1
	passed=$((passed + p)) failed=$((failed + f + e)) skipped=$((skipped + n))
	[ $((f + e)) -ne 0 ] && failures+=("busted")
fi

# -- command-line integration ------------------------------------------------
# Each tests/cli/*.sh is one test: exit 0 passes, 77 skips (its last line
# says why), anything else fails.
for t in tests/cli/*.sh; do
	[ -e "$t" ] || continue
	case $(basename "$t") in lib*.sh) continue ;; esac
	name=$(basename "$t" .sh)
	want "$name" || continue
	out="$LOG/cli-$name.out"
	timeout 600 bash "$t" >"$out" 2>&1 </dev/null
	rc=$?
	case $rc in
	0) passed=$((passed + 1)); echo "cli $name: ok" ;;
	77) skipped=$((skipped + 1)); echo "cli $name: SKIPPED: $(tail -1 "$out")" ;;
	*) failed=$((failed + 1)); failures+=("cli $name")
	   echo "cli $name: FAILED (exit $rc)"; sed 's/^/    | /' "$out" | tail -40 ;;
	esac
done

for f in "${failures[@]+"${failures[@]}"}"; do echo "failed: $f"; done
echo "$passed passed, $failed failed, $skipped skipped"
rm -rf "$LOG"
[ "$failed" -eq 0 ]
