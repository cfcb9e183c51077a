# Tasks shorter than one sampling interval: their only row comes after
# their end (rss_kb 0), yet the OpenDC export gives them the memory the
# kernel saw them use (mem_capacity within 10% of ru_maxrss, the largest of
# the task's processes, as each printed it): a launched command's from
# wait4, a descendant's from the eBPF exit event.
. "$(dirname "$0")/lib.sh"
case $BUILD in /*) B=$BUILD ;; *) B=$ROOT/$BUILD ;; esac
export KXRUN_NODE_DIR=$B/node
cd "$T"
sources=proc
if have bpf; then sources="proc ebpf"; fi
cat > short.lua <<'LUA'
local trace = require "kx.trace"
local source, burn = arg[1], arg[2]
local run = assert(trace.start{ dir = source, interval = 0.05, source = source })
assert(run.source == source)
local want = {}
for i = 1, 20 do
	-- 20-29 ms, 16-35 MiB; every fourth one in a child of the command
	local mode = i % 4 == 0 and "memchild" or "mem"
	local id = ("%s%d"):format(mode, i)
	local rec = assert(run:exec{ burn, tostring(20 + i % 10), tostring(15 + i), mode,
		trace_id = id, stdout = id .. ".out" })
	-- (on a loaded machine some live longer: their figure must hold too)
	local short = rec.ts_end - rec.ts_start < 50
	local text = io.open(id .. ".out"):read("a")
	local pid, kb = text:match("pid=(%d+) maxrss_kb=(%d+)")
	-- a task's memory is the largest of its processes' peaks
	local self_kb = tonumber(text:match("self_kb=(%d+)") or 0)
	want[#want + 1] = { id = id, pid = tonumber(pid), kb = tonumber(kb), child = mode == "memchild",
		task_kb = math.max(tonumber(kb), self_kb), short = short }
end
run:stop()
assert(trace.parse(source))
assert(trace.export_opendc(source, source .. "/od"))
print(kx.json.encode(want))
LUA
for s in $sources; do
	"$KXRUN" short.lua "$s" "$B/tests/trace/trace_burn" > "want-$s.json" || fail "$s: the run failed"
	node "$ROOT/tests/opendc/read.mjs" "$s/od/tasks.parquet" > "tasks-$s.json" || fail "$s: hyparquet"
	python3 - "$s" <<'PY' || fail "$s: see above"
import json, sys
s = sys.argv[1]
want = json.load(open(f"want-{s}.json"))
tasks = {r["name"]: r for r in json.load(open(f"tasks-{s}.json"))["rows"]}
ends = {}
for line in open(f"{s}/raw/procs.jsonl"):
    p = json.loads(line)
    ends[p["pid"]] = p
bad = []
for w in want:
    got = tasks[w["id"]]["mem_capacity"] / 1.024   # KB -> KiB
    if abs(got - w["task_kb"]) > 0.1 * w["task_kb"]:
        bad.append(f"{w['id']}: mem_capacity {got:.0f} KiB, ru_maxrss {w['task_kb']} KiB")
    # eBPF: the descendant's own end record has the kernel's figure
    if s == "ebpf" and w["child"]:
        peak = ends.get(w["pid"], {}).get("peak_rss_kb", 0)
        if abs(peak - w["kb"]) > 0.1 * w["kb"]:
            bad.append(f"{w['id']}: child {w['pid']} peak_rss_kb {peak}, ru_maxrss {w['kb']}")
if bad:
    sys.exit(f"{s}: " + "; ".join(bad))
short = sum(1 for w in want if w["short"])
print(f"{s}: {len(want)} tasks ({short} shorter than the interval), mem_capacity within 10% of ru_maxrss")
PY
done
exit 0
