#!/bin/bash
# Malformed CTS input: kxrun opendc export exits non-zero naming FILE:LINE
# and writes nothing; a damaged export fails kxrun opendc verify.
set -u
. "$(dirname "$0")/lib.sh"
mkdir -p "$T/run/CTS"
echo '{"node_id":"n1","cpu_cores":2,"mem_mb":100,"cpu_freq_mhz":2000}' > "$T/run/CTS/nodes.json"
printf '%s\n' '{"trace_id":"a","pid":10,"ts_start":100,"ts_end":200}' \
	'{"trace_id":"b","pid":11,"ts_start":100,"ts_end":"later"}' > "$T/run/CTS/invocations.jsonl"
echo '{"ts_ms":150,"pid":10,"dt_ms":50,"cpu_ms":10,"rss_kb":1}' > "$T/run/CTS/proc_metrics.jsonl"
out=$("$KXRUN" opendc export --input "$T/run" --output "$T/out" 2>&1) && fail "export accepted a bad ts_end"
echo "$out" | grep -q 'invocations.jsonl:2: ts_end missing' || fail "no FILE:LINE in: $out"
[ -z "$(ls -A "$T/out" 2>/dev/null)" ] || fail "files written: $(ls "$T/out")"

printf '%s\n' '{"trace_id":"a","pid":10,"ts_start":100,"ts_end":200}' > "$T/run/CTS/invocations.jsonl"
printf '%s\n' '{"ts_ms":150,"pid":10,"dt_ms":50,"cpu_ms":10,"rss_kb":1}' '{"ts_ms":' >> "$T/run/CTS/proc_metrics.jsonl"
out=$("$KXRUN" opendc export --input "$T/run" --output "$T/out" 2>&1) && fail "export accepted broken JSON"
echo "$out" | grep -q 'proc_metrics.jsonl:3: invalid JSON' || fail "no FILE:LINE in: $out"
[ -z "$(ls -A "$T/out" 2>/dev/null)" ] || fail "files written: $(ls "$T/out")"

# A good export, then damaged: truncated fragments, then no tasks file.
printf '%s\n' '{"ts_ms":150,"pid":10,"dt_ms":50,"cpu_ms":10,"rss_kb":1}' > "$T/run/CTS/proc_metrics.jsonl"
"$KXRUN" opendc export --input "$T/run" --output "$T/out" >/dev/null || fail "good export failed"
"$KXRUN" opendc verify --input "$T/out" >/dev/null || fail "good export does not verify"
head -c 40 "$T/out/fragments.parquet" > "$T/f" && mv "$T/f" "$T/out/fragments.parquet"
out=$("$KXRUN" opendc verify --input "$T/out" 2>&1) && fail "verify accepted a truncated file"
echo "$out" | grep -q 'fragments.parquet' || fail "verify does not name the file: $out"
rm "$T/out/tasks.parquet"
out=$("$KXRUN" opendc verify --input "$T/out" 2>&1) && fail "verify accepted a missing file"
echo "$out" | grep -q 'tasks.parquet: No such file' || fail "verify: $out"
echo ok
