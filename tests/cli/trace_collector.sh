# kxrun trace start|exec|stop|parse|export|verify, and a collector killed
# with SIGKILL: whole lines on disk, parse works, the audit says truncated.
. "$(dirname "$0")/lib.sh"
# gone PID: true once no process PID exists (within 10 s)
gone() { for _ in $(seq 1000); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.01; done; return 1; }
cd "$T"
RUN_ID=r1 PROC_MATCH='^sleep$' "$KXRUN" trace start >/dev/null || fail "trace start"
sleep 0.6 &
RUN_ID=r1 "$KXRUN" trace exec --trace-id job1 -- sh -c 'sleep 0.3; exit 4'
expect_eq "$?" 4 "trace exec exits with the command's status"
wait
RUN_ID=r1 "$KXRUN" trace stop >/dev/null || fail "trace stop"
[ -e logs/r1/collector.pid ] && fail "pid file left behind"
"$KXRUN" trace parse --run-id r1 > parse.out || { cat parse.out; fail "audit of a clean run failed"; }
for f in invocations.jsonl proc_metrics.jsonl nodes.json audit_report.md; do
	[ -s "logs/r1/CTS/$f" ] || fail "CTS/$f missing"
done
expect_match "$(cat logs/r1/CTS/invocations.jsonl)" '"trace_id":"job1"' "invocation recorded"
expect_match "$(cat logs/r1/CTS/nodes.json)" '"cpu_freq_mhz"' "node facts"
"$KXRUN" trace export --input logs/r1 --output od >/dev/null || fail "export"
"$KXRUN" trace verify --input od >/dev/null || fail "verify"

# SIGKILL mid-run
"$KXRUN" trace start --dir logs/k1 --interval-ms 10 --match '^sleep$' >/dev/null || fail "start k1"
sleep 0.5 &
sleep 0.3
k1=$(cat logs/k1/collector.pid)
kill -9 "$k1" || fail "SIGKILL of collector $k1 not sent"
gone "$k1" || fail "collector $k1 still alive after SIGKILL"
wait
"$KXRUN" trace parse logs/k1 > k1.out; rc=$?
expect_eq "$rc" 1 "audit of a killed run fails"
expect_match "$(cat k1.out)" 'run truncated' "truncation reported"
python3 - logs/k1/raw/proc_metrics.jsonl <<'PY' || fail "a line of the killed run is not whole JSON"
import json, sys
for line in open(sys.argv[1]):
    json.loads(line)
PY
"$KXRUN" trace stop --dir nowhere 2>/dev/null && fail "stop without a collector succeeded"

# a stale collector.pid whose pid now names another process: stop must
# not signal it, and must say the collector died
sleep 60 &
other=$!
trap 'kill "$other" 2>/dev/null; rm -rf "$T"' EXIT
echo "$other" > logs/k1/collector.pid
out=$("$KXRUN" trace stop --dir logs/k1 2>&1); rc=$?
[ "$rc" -ne 0 ] || fail "stop of a dead collector exited 0: $out"
expect_match "$out" "collector $other is not running" "a dead collector is reported"
kill -0 "$other" 2>/dev/null || fail "stop killed an unrelated process ($other)"
[ -e logs/k1/collector.pid ] && fail "the stale collector.pid was left"
kill "$other"

# the adapter's contract: TS_ENQUEUE from the worker, a source chosen
TS_ENQUEUE=1000 "$KXRUN" trace exec --dir logs/e1 --source proc --trace-id q1 -- true || fail "exec with TS_ENQUEUE"
expect_match "$(cat logs/e1/raw/invocations.jsonl)" '"ts_enqueue":1000[,}]' "TS_ENQUEUE recorded"
expect_match "$(cat logs/e1/run.json)" '"source": *"proc"' "source recorded"
# malformed options are errors, before anything runs or is created
out=$("$KXRUN" trace exec --dir logs/e3 --ts-enqueue abc -- touch ran 2>&1) && fail "--ts-enqueue abc was accepted"
expect_match "$out" "ts-enqueue.*'abc'" "a bad --ts-enqueue named"
out=$(TS_ENQUEUE=soon "$KXRUN" trace exec --dir logs/e3 -- touch ran 2>&1) && fail "TS_ENQUEUE=soon was accepted"
out=$("$KXRUN" trace exec --dir logs/e3 --interval-ms fast -- touch ran 2>&1) && fail "--interval-ms fast was accepted"
expect_match "$out" "interval-ms.*'fast'" "a bad --interval-ms named"
out=$("$KXRUN" trace start --dir logs/e3 --match '((' 2>&1) && fail "a bad --match was accepted"
expect_match "$out" "bad match pattern" "a bad --match named"
[ -e ran ] && fail "a refused exec ran its command"
# usage errors exit 2, as for every kxrun TOOL (kx.cli); failures exit 1
for cmd in "trace bogus" "trace start --dir logs/e3 --interval-ms 5" "trace exec --dir logs/e3" \
	"trace export --input x" "opendc export --input x" "opendc verify"; do
	# shellcheck disable=SC2086
	"$KXRUN" $cmd >/dev/null 2>&1; rc=$?
	expect_eq "$rc" 2 "kxrun $cmd"
done
"$KXRUN" opendc verify --input nowhere >/dev/null 2>&1; expect_eq "$?" 1 "verify of nothing"
[ -e logs/e3 ] && fail "a refused command left a run directory"
out=$("$KXRUN" trace start --dir logs/e2 --source magic 2>&1) && fail "a bad --source was accepted"
expect_match "$out" 'source must be auto, ebpf or proc' "bad --source named"
[ -e logs/e2 ] && fail "a bad --source left a run directory"
exit 0
