#!/bin/bash
# The vtime benchmarks and experiments on kx.lab: --help lists their
# parameters, a bad value is one line and exit 2, the old positional
# arguments still work, nothing is written without --out, and --out DIR
# keeps the runs (results.jsonl), the rounds of each dilated run, virtual
# against real time (vtime.jsonl), and a report.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
source tests/cli/lib.sh

for s in bench/vtime_fidelity.lua bench/vtime_rounds.lua bench/vtime_slowdown.lua \
	experiments/vtime_pingpong.lua experiments/kronos_orchestrator.lua; do
	out=$("$KXRUN" "$s" --help 2>&1); rc=$?
	expect_eq "$rc" 0 "$s --help"
	expect_match "$out" "^usage: kxrun $s" "$s --help"
	expect_match "$out" "--out DIR" "$s --help"
done
# every backend the module has, kmod too (tests/vm/bench_vtime.sh passes it)
for s in bench/vtime_fidelity.lua bench/vtime_slowdown.lua experiments/vtime_pingpong.lua; do
	expect_match "$("$KXRUN" "$s" --help 2>&1)" "[|]kmod" "$s --help: backend kmod"
done
out=$("$KXRUN" vtime run -b kmod -n 1 -- true 2>&1); rc=$?
[ "$rc" != 2 ] || fail "vtime run -b kmod: a usage error ($out)"
out=$("$KXRUN" bench/vtime_rounds.lua --procs eight 2>&1); rc=$?
expect_eq "$rc" 2 "a bad value"
expect_eq "$(printf '%s\n' "$out" | wc -l)" 1 "a bad value: one line ($out)"
expect_match "$out" "--procs: \"eight\" is not an integer" "a bad value"
out=$("$KXRUN" experiments/vtime_pingpong.lua 0 2>&1); rc=$?
expect_eq "$rc" 2 "COUNT 0 ($out)"

# positional arguments as before; no file written without --out
cd "$T"
out=$("$KXRUN" "$ROOT/bench/vtime_fidelity.lua" 20000000 signal 2 1 --steps 1ms 2>&1); rc=$?
cd "$ROOT"
expect_eq "$rc" 0 "vtime_fidelity ($out)"
expect_match "$out" "fidelity, 20000000 iterations, 2 runs per figure" "vtime_fidelity header"
expect_match "$out" "1 ms  alone +[0-9.]+ +[0-9.]+ +[0-9.]+% +[0-9.]+ +[0-9.]+% +[0-9]+" "vtime_fidelity row"
expect_eq "$(ls -A "$T")" "" "files written without --out"

out=$("$KXRUN" bench/vtime_rounds.lua 0.05 --procs 1,2 --out "$T/rounds" 2>&1); rc=$?
expect_eq "$rc" 0 "vtime_rounds --out ($out)"
expect_match "$out" "^    2 \| +[0-9]+ +[0-9.]+ +[0-9.]+ \| +[0-9]+ +[0-9.]+" "vtime_rounds row"
for f in results.jsonl results.csv env.json vtime.jsonl report.html; do
	[ -s "$T/rounds/$f" ] || fail "vtime_rounds --out: no $f"
done
grep -q '"label":"signal, 2 processes"' "$T/rounds/vtime.jsonl" || fail "vtime.jsonl has no signal run"
grep -q '"system":"freezer".*"us_per_round"\|"us_per_round".*"system":"freezer"' "$T/rounds/results.jsonl" ||
	grep -q '"error"' "$T/rounds/results.jsonl" || fail "results.jsonl has no freezer row"
grep -q "Virtual against real time" "$T/rounds/report.html" || fail "the report has no kx.vtime section"

out=$("$KXRUN" experiments/kronos_orchestrator.lua 40 --calls 4 --out "$T/kronos" 2>&1); rc=$?
expect_eq "$rc" 0 "kronos_orchestrator --out ($out)"
expect_eq "$(grep -c '"label":"progressBy"' "$T/kronos/vtime.jsonl")" 4 "progressBy calls in vtime.jsonl"
expect_eq "$(grep -c '"system":"tracer' "$T/kronos/results.jsonl")" 3 "tracer clocks in results.jsonl"
exit 0
