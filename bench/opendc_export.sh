#!/bin/bash
# OpenDC export throughput on a generated trace of 1M samples (2000 tasks,
# 4 processes each, 200 ms ticks), and peak memory, beside the input's size.
# Peer: Python's json module merely parsing the same proc_metrics.jsonl (the
# least a Python exporter like Tracekit's does).  Memory is shown for a
# quarter of the trace too: it stays flat when streaming works.
set -eu
: "${KXRUN:=$(cd "$(dirname "$0")/.." && pwd)/kxrun}"
T=$(mktemp -d /tmp/kxrun-opendc-bench.XXXXXX)
trap 'rm -rf "$T"' EXIT

gen() {	# gen DIR SAMPLES
	python3 "$(dirname "$0")/../tests/opendc/gen_cts.py" "$1" "$2"
}

measure() {	# measure DIR -> "seconds maxrss_kb"
	/usr/bin/time -f "%e %M" -o "$T/time" "$KXRUN" opendc export --input "$1" --output "$T/out" >/dev/null
	cat "$T/time"
}

gen "$T/q" 250000
gen "$T/full" 1000000
samples=$(wc -l < "$T/full/CTS/proc_metrics.jsonl")
bytes=$(du -cb "$T/full/CTS" | tail -1 | cut -f1)
read -r secs rss < <(measure "$T/full")
read -r _ rss_q < <(measure "$T/q")
/usr/bin/time -f "%e %M" -o "$T/vtime" "$KXRUN" opendc verify --input "$T/out" >/dev/null
read -r vsecs vrss < "$T/vtime"
frags=$(python3 -c 'import os, sys; print(os.path.getsize(sys.argv[1]))' "$T/out/fragments.parquet")
py=$(python3 -c 'import json, sys, time
t = time.perf_counter()
for l in open(sys.argv[1]): json.loads(l)
print(time.perf_counter() - t)' "$T/full/CTS/proc_metrics.jsonl")
awk -v n="$samples" -v b="$bytes" -v s="$secs" -v r="$rss" -v rq="$rss_q" -v py="$py" \
    -v vs="$vsecs" -v vr="$vrss" -v fb="$frags" 'BEGIN {
	printf "input: %d samples, %.1f MiB of CTS files\n", n, b / 1048576
	printf "kxrun opendc export: %.2f s, %.0f samples/s, peak RSS %.1f MiB (%.1f MiB at 1/4 of the samples)\n", s, n / s, r / 1024, rq / 1024
	printf "python3 json.loads only: %.2f s, %.0f samples/s\n", py, n / py
	printf "ratio (export / parse-only python): %.2fx the throughput\n", py / s
	printf "kxrun opendc verify: %.2f s, peak RSS %.1f MiB (fragments.parquet %.1f MiB)\n", vs, vr / 1024, fb / 1048576
}'
