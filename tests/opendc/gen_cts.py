#!/usr/bin/env python3
"""gen_cts.py DIR SAMPLES - writes a synthetic CTS trace into DIR/CTS/:
2000 tasks (one started each second) of 4 processes each (a parent and 3
children, ppid in the rows), sampled every 200 ms, SAMPLES rows in all, in
time order as a collector writes them.  Used by the OpenDC export benchmark
and its long test."""
import json
import os
import sys

out = os.path.join(sys.argv[1], "CTS")
total = int(sys.argv[2])
tasks, procs = 2000, 4
per = max(1, total // (tasks * procs))  # ticks per task
os.makedirs(out, exist_ok=True)
with open(f"{out}/nodes.json", "w") as f:
    json.dump({"node_id": "gen", "stage": "cloud", "cpu_cores": 16,
               "mem_mb": 65536, "cpu_model": "x", "cpu_freq_mhz": 2900}, f)
t0 = 1_700_000_000_000
with open(f"{out}/invocations.jsonl", "w") as f:
    for i in range(tasks):
        s = t0 + i * 1000
        f.write(json.dumps({"trace_id": f"task-{i}", "pid": 10000 + i * 10,
                            "ts_enqueue": s - 50, "ts_start": s,
                            "ts_end": s + per * 200 + 77}) + "\n")
with open(f"{out}/proc_metrics.jsonl", "w") as f:
    for tick in range((tasks * 1000 + per * 200) // 200 + 1):
        now = t0 + tick * 200
        lo = max(0, (now - t0 - per * 200) // 1000)
        for i in range(lo, min(tasks, (now - t0) // 1000 + 1)):
            s = t0 + i * 1000
            k = (now - s) // 200
            if k < 1 or k > per:
                continue
            pid = 10000 + i * 10
            for p in range(procs):
                f.write('{"ts_ms":%d,"pid":%d,"ppid":%d,"dt_ms":200,"cpu_ms":%d,"rss_kb":%d}\n'
                        % (s + k * 200, pid + p, pid if p else 1,
                           50 + (k * 7 + p) % 150, 20000 + p))
