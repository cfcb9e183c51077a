#!/bin/bash
# Runs every test: cmocka units, busted specs (with kxrun as the Lua
# interpreter) and command-line integration scripts, then checks that the
# run left nothing behind.  Prints each test's result, the log of every
# failed test, every skip with the probe's reason, and one summary line
# "N passed, N failed, N skipped".
#
# What counts:
# - a test's exit status: a non-zero status (a crash, a signal, a timeout)
#   fails it whatever it printed before;
# - a skip only when a feature of the machine is absent, as probed by
#   tests/features.sh (tests call `need FEATURE` in tests/cli/lib.sh,
#   tests/need.lua in specs, NEED() in tests/unit/need.h).  A skip with no
#   probe behind it, or whose feature is present here, fails the run;
# - leftovers: a process of this run still alive at the end (found by the
#   KXRUN_TEST_RUN mark in its environment), a new stopped process, a new
#   kxrun cgroup, a new redis-server, or files left in the run's TMPDIR or
#   new kxrun/lua temporaries in /tmp fail the run (and are cleaned up).
#
# KXRUN=path selects the binary (make asan uses its own build); BUILD the
# build directory; a test name filter can be given as $1 (a substring);
# KXRUN_TESTS_DIR another tree of spec/ and cli/ tests (the runner's own
# test, tests/cli/harness.sh, uses it).  Logs stay in $BUILD/test-logs
# until the next run.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
: "${BUILD:=build}"
: "${KXRUN:=$ROOT/kxrun}"
FILTER=${1:-}
TESTS=${KXRUN_TESTS_DIR:-tests}
LOG=$ROOT/$BUILD/test-logs
case $BUILD in /*) LOG=$BUILD/test-logs ;; esac
rm -rf "$LOG"
mkdir -p "$LOG/tmp"
KXRUN_TEST_RUN=$$-$RANDOM$RANDOM
KXRUN_TEST_SKIPS=$LOG/skips.tsv
: >"$KXRUN_TEST_SKIPS"
export KXRUN BUILD ROOT KXRUN_TEST_RUN KXRUN_TEST_SKIPS
export TMPDIR=$LOG/tmp
passed=0 failed=0 skipped=0
failures=()

want() { [ -z "$FILTER" ] || [[ "$1" == *"$FILTER"* ]]; }
show_log() { sed 's/^/    | /' "$1" | grep -vE '^    \| [●◼✱◌ ]*$' | tail -"${2:-40}"; }
fail_test() { failed=$((failed + 1)); failures+=("$1${2:+: $2}"); }
# skips recorded by the test named $1
skips_of() { awk -F'\t' -v t="$1" '$1 == t' "$KXRUN_TEST_SKIPS" | wc -l; }

# -- what is on the machine before the run ------------------------------------
stopped_pids() { ps -eo pid=,stat= | awk '$2 ~ /^T/ { print $1 }' | sort; }
redis_pids() { pgrep -x redis-server | sort; }
kx_cgroups() { ls -d /sys/fs/cgroup/*/kxrun-* /sys/fs/cgroup/*/*/kxrun-* 2>/dev/null | sort; }
tmp_entries() { ls -d /tmp/kxrun* /tmp/lua_* 2>/dev/null | sort; }
stopped_pids >"$LOG/before.stopped"
redis_pids >"$LOG/before.redis"
kx_cgroups >"$LOG/before.cgroups"
tmp_entries >"$LOG/before.tmp"

# -- cmocka units ------------------------------------------------------------
for src in "$TESTS"/unit/test_*.c; do
	[ -e "$src" ] || continue
	name=$(basename "$src" .c)
	t=$BUILD/tests/unit/$name
	want "$name" || continue
	[ -x "$t" ] || { fail_test "unit $name" "$t is not built"; continue; }
	out="$LOG/$name.out"
	KXRUN_TEST_NAME="unit $name" timeout 300 "$t" >"$out" 2>&1
	rc=$?
	p=$(grep -Eo '\[  PASSED  \] [0-9]+' "$out" | grep -Eo '[0-9]+$' | tail -1)
	f=$(grep -Eo '\[  FAILED  \] [0-9]+' "$out" | grep -Eo '[0-9]+$' | tail -1)
	s=$(grep -Eo '\[  SKIPPED \] [0-9]+' "$out" | grep -Eo '[0-9]+$' | tail -1)
	p=${p:-0} f=${f:-0} s=${s:-0}
	echo "unit $name: $p passed, $f failed, $s skipped${rc:+ (exit $rc)}" | sed 's/ (exit 0)//'
	passed=$((passed + p)) skipped=$((skipped + s))
	if [ "$f" -ne 0 ] || [ "$rc" -ne 0 ]; then
		[ "$f" -eq 0 ] && f=1
		failed=$((failed + f - 1)); fail_test "unit $name" "exit $rc"
		show_log "$out"
	fi
	n=$(skips_of "unit $name")
	[ "$s" -gt "$n" ] && fail_test "unit $name" "$((s - n)) skip(s) without a feature probe (use NEED() in tests/unit/need.h)"
done

# -- busted specs: one busted per file, so a crash or hang is the file's ------
for s in "$TESTS"/spec/*_spec.lua; do
	[ -e "$s" ] || continue
	name=$(basename "$s" .lua)
	want "$name" || continue
	out="$LOG/$name.out"
	KXRUN_TEST_NAME="spec $name" timeout 600 busted --lua="$KXRUN" -o utfTerminal "$s" >"$out" 2>&1
	rc=$?
	line=$(grep -E '[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$out" | tail -1)
	num() { echo "$line" | grep -Eo "[0-9]+ $1" | grep -Eo '^[0-9]+' || echo 0; }
	p=$(num 'success') f=$(num 'failure') e=$(num 'error') n=$(num 'pending')
	echo "spec $name: ${line:-no closing line} (exit $rc)" | sed 's/ (exit 0)$//'
	passed=$((passed + p)) skipped=$((skipped + n))
	if [ -z "$line" ] || [ "$rc" -ne 0 ] || [ $((f + e)) -ne 0 ]; then
		k=$((f + e)); [ "$k" -eq 0 ] && k=1
		failed=$((failed + k - 1))
		case $rc in 124) why="timed out" ;; 0) why="" ;; *) why="exit $rc" ;; esac
		fail_test "spec $name" "$why"
		show_log "$out" 60
	fi
	m=$(skips_of "spec $name")
	[ "$n" -gt "$m" ] && fail_test "spec $name" "$((n - m)) pending without a feature probe (use tests/need.lua)"
done

# -- command-line integration ------------------------------------------------
# Each tests/cli/*.sh is one test: exit 0 passes, 77 skips (after `need`
# recorded which feature is absent), anything else fails.
for t in "$TESTS"/cli/*.sh; do
	[ -e "$t" ] || continue
	case $(basename "$t") in lib*.sh) continue ;; esac
	name=$(basename "$t" .sh)
	want "$name" || continue
	out="$LOG/cli-$name.out"
	KXRUN_TEST_NAME="cli $name" timeout 600 bash "$t" >"$out" 2>&1 </dev/null
	rc=$?
	case $rc in
	0) passed=$((passed + 1)); echo "cli $name: ok" ;;
	77) skipped=$((skipped + 1)); echo "cli $name: skipped"
	    [ "$(skips_of "cli $name")" -gt 0 ] ||
		    { fail_test "cli $name" "exit 77 without a feature probe (use need in tests/cli/lib.sh)"; show_log "$out" 10; } ;;
	*) fail_test "cli $name" "exit $rc$([ $rc = 124 ] && echo ', timed out')"
	   echo "cli $name: FAILED (exit $rc)"; show_log "$out" ;;
	esac
done

# -- skips: each one's feature probed again -----------------------------------
if [ -s "$KXRUN_TEST_SKIPS" ]; then
	echo "skips:"
	while IFS=$'\t' read -r test feature reason; do
		echo "    $test: $feature absent: $reason"
		ROOT=$ROOT BUILD=$BUILD tests/features.sh "$feature" >/dev/null 2>&1
		case $? in
		0) fail_test "$test" "skipped, but feature '$feature' is present here" ;;
		2) fail_test "$test" "skipped for '$feature', which tests/features.sh does not know" ;;
		esac
	done <"$KXRUN_TEST_SKIPS"
fi

# -- leftovers ------------------------------------------------------------------
leftover() { fail_test "leftovers" "$1"; echo "leftover: $1"; }
# (the search runs without the mark, so it does not find itself)
marked=$(env -u KXRUN_TEST_RUN grep -lsz "^KXRUN_TEST_RUN=$KXRUN_TEST_RUN\$" /proc/[0-9]*/environ)
for f in $marked; do
	pid=${f#/proc/}; pid=${pid%/environ}
	[ "$pid" != $$ ] && [ -e "/proc/$pid" ] || continue
	leftover "process $(ps -o pid=,stat=,args= -p "$pid" | cut -c1-120) is still running"
	kill -9 -- "$pid" 2>/dev/null
done
stopped_pids | comm -13 "$LOG/before.stopped" - | while read -r pid; do
	echo "stopped: $(ps -o pid=,stat=,args= -p "$pid" | cut -c1-120)"
done >"$LOG/after.stopped"
[ -s "$LOG/after.stopped" ] && leftover "$(wc -l <"$LOG/after.stopped") new stopped process(es): $(cat "$LOG/after.stopped")"
redis_pids | comm -13 "$LOG/before.redis" - >"$LOG/after.redis"
[ -s "$LOG/after.redis" ] && leftover "redis-server still running: pid $(tr '\n' ' ' <"$LOG/after.redis")"
kx_cgroups | comm -13 "$LOG/before.cgroups" - >"$LOG/after.cgroups"
if [ -s "$LOG/after.cgroups" ]; then
	leftover "kxrun cgroups left: $(tr '\n' ' ' <"$LOG/after.cgroups")"
	# removed where the kxrun that made it (the pid in its name) is gone
	sort -r "$LOG/after.cgroups" | while read -r cg; do
		pid=$(basename "$cg" | sed -n 's/^kxrun-[a-z]*-\([0-9]*\).*/\1/p')
		[ -n "$pid" ] && [ -e "/proc/$pid" ] || rmdir "$cg" 2>/dev/null
	done
fi
left=$(find "$LOG/tmp" -mindepth 1 -maxdepth 1 2>/dev/null | head -5)
[ -n "$left" ] && leftover "files left in the run's TMPDIR: $left"
tmp_entries | comm -13 "$LOG/before.tmp" - >"$LOG/after.tmp"
[ -s "$LOG/after.tmp" ] && leftover "temporaries left in /tmp: $(head -5 "$LOG/after.tmp" | tr '\n' ' ')"

for f in "${failures[@]+"${failures[@]}"}"; do echo "failed: $f"; done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
