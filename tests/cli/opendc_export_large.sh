#!/bin/bash
# A generated trace of 200k samples (1M with KXRUN_TEST_LONG=1): export in
# bounded memory (peak RSS well under the input's size), verify, and
# hyparquet finds every task with fragments adding up to its duration.
set -eu
. "$(dirname "$0")/lib.sh"
: "${BUILD:=build}"
case $BUILD in /*) B=$BUILD ;; *) B=$ROOT/$BUILD ;; esac
export KXRUN_NODE_DIR=$B/node
n=200000
[ "${KXRUN_TEST_LONG:-}" = 1 ] && n=1000000
python3 "$ROOT/tests/opendc/gen_cts.py" "$T/run" $n
/usr/bin/time -f "%M" -o "$T/rss" "$KXRUN" opendc export --input "$T/run" --output "$T/out"
"$KXRUN" opendc verify --input "$T/out"
rss_kib=$(cat "$T/rss")
input_kib=$(( $(du -cb "$T/run/CTS" | tail -1 | cut -f1) / 1024 ))
echo "peak RSS ${rss_kib} KiB, input ${input_kib} KiB"
# The export streams: its memory does not follow the input's size.
limit=65536
# AddressSanitizer's shadow memory and quarantine are not the exporter's
if ldd "$KXRUN" 2>/dev/null | grep -q libasan; then limit=$((limit * 4)); fi
[ "$rss_kib" -lt "$limit" ] || { echo "FAIL: peak RSS $rss_kib KiB (limit $limit)"; exit 1; }
node "$ROOT/tests/opendc/read.mjs" "$T/out/tasks.parquet" > "$T/tasks.json"
node "$ROOT/tests/opendc/read.mjs" "$T/out/fragments.parquet" > "$T/frags.json"
python3 - "$T" $n <<'PY'
import json, sys
T, n = sys.argv[1], int(sys.argv[2])
tasks = json.load(open(f"{T}/tasks.json"))["rows"]
frags = json.load(open(f"{T}/frags.json"))["rows"]
per = n // 8000
assert len(tasks) == 2000, len(tasks)
sums, count = {}, {}
for f in frags:
    assert f["duration"] >= 0 and f["cpu_usage"] >= 0, f
    sums[f["id"]] = sums.get(f["id"], 0) + f["duration"]
    count[f["id"]] = count.get(f["id"], 0) + 1
for t in tasks:
    assert t["duration"] == per * 200 + 77, t
    assert sums.get(t["id"]) == t["duration"], (t, sums.get(t["id"]))
    # one fragment per tick, and the tail
    assert count[t["id"]] == per + 1, (t, count[t["id"]])
    assert t["cpu_count"] == 4 and t["mem_capacity"] == (80006 * 1024 + 500) // 1000, t
    assert t["name"] == f"task-{t['id']}"
assert len(frags) == 2000 * (per + 1)
PY
echo ok
