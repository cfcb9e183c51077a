# An OpenDC export and a trace parse onto a 64 KiB tmpfs that cannot hold
# them: each fails naming the file, and leaves nothing (an earlier export
# stays as it was, byte for byte).
. "$(dirname "$0")/lib.sh"
need root tmpfs-mount
mkdir "$T/small"
mount -t tmpfs -o size=64k kxrun-trace-small "$T/small" || fail "cannot mount a 64k tmpfs"
trap 'umount "$T/small"; rm -rf "$T"' EXIT
cd "$T"

# a one-task trace: its export fits
mkdir -p one/CTS
echo '{"node_id":"n1","cpu_cores":2,"mem_mb":1024,"cpu_freq_mhz":2000}' > one/CTS/nodes.json
echo '{"trace_id":"a","pid":10,"ts_start":100,"ts_end":500}' > one/CTS/invocations.jsonl
echo '{"ts_ms":300,"pid":10,"dt_ms":200,"cpu_ms":100,"rss_kb":1000}' > one/CTS/proc_metrics.jsonl
"$KXRUN" opendc export --input one --output small/out >/dev/null || fail "a small export failed"
cp -r small/out before
# 2000 tasks: ids.json alone is 340 KiB
python3 "$ROOT/tests/opendc/gen_cts.py" big 20000
for cmd in "opendc export" "trace export"; do
	# shellcheck disable=SC2086
	out=$("$KXRUN" $cmd --input big --output small/out 2>&1) && fail "$cmd onto a full disk succeeded"
	expect_match "$out" "small/out/[a-z]+\.(parquet|json): (.*: )?No space left on device" "$cmd names the file"
	diff -r before small/out >/dev/null || fail "$cmd changed the earlier export: $(ls -l small/out)"
	expect_eq "$(ls -A small)" "out" "$cmd left something beside the export"
	# shellcheck disable=SC2086
	out=$("$KXRUN" $cmd --input big --output small/new 2>&1) && fail "$cmd into a new directory succeeded"
	expect_eq "$(ls -A small)" "out" "$cmd into a new directory left something"
done
rm -r small/out

# a run whose raw files fit, but not their CTS/ copy
mkdir -p small/run/raw
"$KXRUN" -e 'print(kx.json.encode{ node = require("kx.trace").node_facts("n1", "edge") })' > small/run/run.json
python3 - small/run/raw <<'PY'
import json, sys
d = sys.argv[1]
with open(d + "/invocations.jsonl", "w") as f:
    f.write(json.dumps({"trace_id": "a", "pid": 10, "node_id": "n1", "argv": ["x"],
                        "ts_enqueue": 100, "ts_start": 200, "ts_end": 90000, "exit_code": 0}) + "\n")
with open(d + "/proc_metrics.jsonl", "w") as f:
    for i in range(500):
        f.write('{"ts_ms":%d,"pid":10,"ppid":1,"dt_ms":100,"cpu_ms":50,"rss_kb":100}\n' % (300 + 100 * i))
open(d + "/end.json", "w").write("{}\n")
PY
out=$("$KXRUN" trace parse small/run 2>&1) && fail "parse onto a full disk succeeded"
expect_match "$out" "small/run/CTS/[a-z_]+\.(jsonl|json|md): (.*: )?No space left on device" "parse names the file"
expect_eq "$(ls -A small/run)" "raw
run.json" "parse left something in the run"
exit 0
