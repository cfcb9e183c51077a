#!/bin/bash
# kxrun opendc export on a hand-made two-node CTS trace, then verify, then
# both Parquet files read back with hyparquet and with parquet-wasm (Apache
# arrow-rs), two readers kxrun did not write, and every value compared
# with fragments worked out by hand: head, ticks of a process tree (child
# found through ppid), clipping at ts_end, tail, a task without samples,
# unique ids across nodes.
set -eu
. "$(dirname "$0")/lib.sh"
: "${BUILD:=build}"
case $BUILD in /*) B=$BUILD ;; *) B=$ROOT/$BUILD ;; esac
export KXRUN_NODE_DIR=$B/node
mkdir -p "$T/run/node-a/CTS" "$T/run/node-b/CTS"
cat > "$T/run/node-a/CTS/nodes.json" <<'J'
{"node_id":"n1","stage":"cloud","cpu_cores":4,"mem_mb":15872,"cpu_model":"x","cpu_freq_mhz":3000.5}
J
cat > "$T/run/node-a/CTS/invocations.jsonl" <<'J'
{"trace_id":"t1","pid":100,"node_id":"n1","argv":["ffmpeg"],"ts_enqueue":1000,"ts_start":1100,"ts_end":2150,"exit_code":0}
{"trace_id":"t2","pid":200,"ts_enqueue":1400,"ts_start":1500,"ts_end":1500,"exit_code":0}
{"trace_id":"t3","pid":300,"ts_start":2000,"ts_end":3000,"exit_code":1}
J
cat > "$T/run/node-a/CTS/proc_metrics.jsonl" <<'J'
{"ts_ms":1300,"pid":100,"dt_ms":200,"cpu_ms":100,"rss_kb":5000}
{"ts_ms":1500,"pid":100,"dt_ms":200,"cpu_ms":200,"rss_kb":5000}
{"ts_ms":1700,"pid":100,"dt_ms":200,"cpu_ms":400,"rss_kb":5000}
{"ts_ms":1750,"pid":999,"dt_ms":200,"cpu_ms":400,"rss_kb":5000}
{"ts_ms":1900,"pid":100,"dt_ms":200,"cpu_ms":0,"rss_kb":5000}
{"ts_ms":2100,"pid":100,"dt_ms":200,"cpu_ms":100,"rss_kb":5000}
{"ts_ms":2200,"pid":300,"dt_ms":200,"cpu_ms":100,"rss_kb":1000}
{"ts_ms":2201,"pid":301,"ppid":300,"dt_ms":200,"cpu_ms":150,"rss_kb":2000}
{"ts_ms":2300,"pid":100,"dt_ms":200,"cpu_ms":200,"rss_kb":5000}
{"ts_ms":2400,"pid":300,"dt_ms":200,"cpu_ms":100,"rss_kb":1000}
{"ts_ms":2400,"pid":301,"dt_ms":200,"cpu_ms":200,"rss_kb":3000}
J
cat > "$T/run/node-b/CTS/nodes.json" <<'J'
[{"node_id":"nb","stage":"cloud","cpu_cores":2,"mem_mb":1024,"cpu_model":"y","cpu_freq_mhz":3700}]
J
cat > "$T/run/node-b/CTS/invocations.jsonl" <<'J'
{"trace_id":"b1","pid":100,"ts_enqueue":10,"ts_start":20,"ts_end":120}
J
cat > "$T/run/node-b/CTS/proc_metrics.jsonl" <<'J'
{"ts_ms":70,"pid":100,"dt_ms":50,"cpu_ms":100,"rss_kb":10}
J

"$KXRUN" opendc export --input "$T/run" --output "$T/out"
"$KXRUN" opendc verify --input "$T/out"
node "$ROOT/tests/opendc/read.mjs" "$T/out/tasks.parquet" > "$T/tasks.json"
node "$ROOT/tests/opendc/read.mjs" "$T/out/fragments.parquet" > "$T/frags.json"
# every page's CRC, outside kxrun
node "$ROOT/tests/opendc/check-crc.mjs" "$T/out/tasks.parquet" "$T/out/fragments.parquet" >/dev/null
node "$ROOT/tests/opendc/read-arrow.mjs" "$T/out/tasks.parquet" "$T/out/fragments.parquet" > "$T/arrow.jsonl"
python3 - "$T" <<'PY'
import json, sys
T = sys.argv[1]
tasks = json.load(open(f"{T}/tasks.json"))
frags = json.load(open(f"{T}/frags.json"))
def check(cond, what):
    if not cond:
        sys.exit("FAIL: " + what)
want_schema = [("resource", None, None),
    ("id", "INT32", "REQUIRED"), ("name", "BYTE_ARRAY", "OPTIONAL"),
    ("submission_time", "INT64", "REQUIRED"), ("duration", "INT64", "REQUIRED"),
    ("cpu_count", "INT32", "REQUIRED"), ("cpu_capacity", "DOUBLE", "REQUIRED"),
    ("mem_capacity", "INT64", "REQUIRED")]
got = [(s["name"], s.get("type"), s.get("repetition_type")) for s in tasks["schema"]]
check(got == want_schema, f"tasks schema {got}")
check(tasks["schema"][2]["logical_type"] == "STRING", "name is STRING")
check(tasks["schema"][3]["logical_type"] == "TIMESTAMP", "submission_time is a TIMESTAMP")
got = [(s["name"], s.get("type"), s.get("repetition_type")) for s in frags["schema"]]
check(got == [("resource_state", None, None), ("id", "INT32", "REQUIRED"),
    ("duration", "INT64", "REQUIRED"), ("cpu_usage", "DOUBLE", "REQUIRED")], f"fragments schema {got}")
for d in (tasks, frags):
    for rg in d["row_groups"]:
        for c in rg["columns"]:
            check(c["codec"] == "SNAPPY", "codec")
F, FB = 3000.5, 3700.0
want_tasks = [
    {"id": 0, "name": "t1", "submission_time": {"timestamp_ms": 1000}, "duration": 1050, "cpu_count": 2, "cpu_capacity": 2 * F, "mem_capacity": 5120},
    {"id": 1, "name": "t2", "submission_time": {"timestamp_ms": 1400}, "duration": 0, "cpu_count": 1, "cpu_capacity": F, "mem_capacity": 0},
    {"id": 2, "name": "t3", "submission_time": {"timestamp_ms": 2000}, "duration": 1000, "cpu_count": 2, "cpu_capacity": 2 * F, "mem_capacity": 4096},
    {"id": 3, "name": "b1", "submission_time": {"timestamp_ms": 10}, "duration": 100, "cpu_count": 2, "cpu_capacity": 2 * FB, "mem_capacity": 10},
]
check(tasks["rows"] == want_tasks, f"tasks {tasks['rows']}")
want = {0: [(200, .5 * F), (200, F), (200, 2 * F), (200, 0), (200, .5 * F), (50, F)],
        1: [(0, 0)],
        2: [(200, 1.25 * F), (200, 1.5 * F), (600, 1.5 * F)],
        3: [(50, 2 * FB), (50, 2 * FB)]}
per = {}
for r in frags["rows"]:
    per.setdefault(r["id"], []).append((r["duration"], r["cpu_usage"]))
check(per == want, f"fragments {per}")
for t in want_tasks:
    check(sum(d for d, _ in per[t["id"]]) == t["duration"], f"sum of task {t['id']}")
# The same rows through Apache arrow-rs (parquet-wasm), REQUIRED = not null.
arrow = [json.loads(l) for l in open(f"{T}/arrow.jsonl")]
check([(f["name"], f["type"], f["nullable"]) for f in arrow[0]["fields"]] ==
      [("id", "Int32", False), ("name", "Utf8", True), ("submission_time", "Timestamp<MILLISECOND, UTC>", False),
       ("duration", "Int64", False), ("cpu_count", "Int32", False), ("cpu_capacity", "Float64", False),
       ("mem_capacity", "Int64", False)], f"arrow tasks schema {arrow[0]['fields']}")
check([(f["name"], f["type"], f["nullable"]) for f in arrow[1]["fields"]] ==
      [("id", "Int32", False), ("duration", "Int64", False), ("cpu_usage", "Float64", False)], "arrow fragments schema")
check(arrow[0]["rows"] == [dict(t, submission_time=t["submission_time"]["timestamp_ms"]) for t in want_tasks], f"arrow tasks {arrow[0]['rows']}")
check(arrow[1]["rows"] == frags["rows"], "arrow fragments")
topo = json.load(open(f"{T}/out/topology.json"))
hosts = topo["clusters"][0]["hosts"]
check([(h["name"], h["count"], h["cpu"]["coreCount"], h["cpu"]["coreSpeed"], h["memory"]["memorySize"]) for h in hosts]
      == [("n1", 1, 4, "3000 MHz", "15872 MiB"), ("nb", 1, 2, "3700 MHz", "1024 MiB")], f"topology {hosts}")
ids = json.load(open(f"{T}/out/ids.json"))
check([(i["id"], i["trace_id"], i["node_dir"], i["node_id"]) for i in ids]
      == [(0, "t1", "node-a", "n1"), (1, "t2", "node-a", "n1"), (2, "t3", "node-a", "n1"), (3, "b1", "node-b", "nb")], f"ids {ids}")
PY
# The same input exports the same files (stable ids).
"$KXRUN" opendc export --input "$T/run" --output "$T/out2" >/dev/null
cmp "$T/out/tasks.parquet" "$T/out2/tasks.parquet"
cmp "$T/out/fragments.parquet" "$T/out2/fragments.parquet"
cmp "$T/out/ids.json" "$T/out2/ids.json"
echo ok
