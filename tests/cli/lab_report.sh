# kxrun report: a real kx.trace run (Gantt per node, CPU and RSS per
# process, the audit), kx.vtime rounds recorded by kx.lab, a kx.lab results
# directory; its usage errors; and kxrun lab new's.
. "$(dirname "$0")/lib.sh"

out=$("$KXRUN" report 2>&1); rc=$?
expect_eq "$rc" 2 "no directory"
out=$("$KXRUN" report "$T/none" 2>&1); rc=$?
expect_eq "$rc" 1 "a directory with nothing to report"
expect_match "$out" "^kxrun report: $T/none has no results.jsonl" "its message"
out=$("$KXRUN" report --bogus "$T" 2>&1); rc=$?
expect_eq "$rc" 2 "unknown option"
out=$("$KXRUN" report --help); rc=$?
expect_eq "$rc" 0 "--help"
expect_match "$out" "Gantt chart of the invocations" "--help says what it shows"

# a kx.trace run: two nodes' worth of invocations through the CLI, one failing
run="$T/trace-run"
"$KXRUN" trace exec --dir "$run" --interval-ms 20 --trace-id t1 -- \
	sh -c 'i=0; while [ $i -lt 60000 ]; do i=$((i+1)); done' >/dev/null 2>&1 || fail "trace exec t1"
NODE_ID=n2 "$KXRUN" trace exec --dir "$run" --interval-ms 20 --trace-id t2 -- sh -c 'sleep 0.1; exit 3' >/dev/null 2>&1
"$KXRUN" trace parse "$run" >/dev/null 2>&1   # its audit may fail: a run without a collector has no end.json
out=$("$KXRUN" report "$run" 2>&1); rc=$?
expect_eq "$rc" 0 "report of a trace run ($out)"
expect_eq "$out" "$run/report.html" "prints the page's path"
html=$(cat "$run/report.html")
expect_match "$html" "Invocations per node" "Gantt"
expect_match "$html" "CPU per process" "CPU over time"
expect_match "$html" "Resident memory per process" "RSS over time"
expect_match "$html" "<h2>Audit</h2>" "the audit"
expect_match "$html" "well-formed lines" "the audit's checks"
expect_match "$html" ">t2<" "invocation table"
for f in trace-gantt trace-cpu trace-rss; do [ -s "$run/plots/$f.svg" ] || fail "plots/$f.svg missing"; done
# before `trace parse` (raw/ only): the audit is computed
run2="$T/trace-raw"
"$KXRUN" trace exec --dir "$run2" --interval-ms 20 -- true >/dev/null 2>&1 || fail "trace exec"
"$KXRUN" report -o "$T/raw.html" "$run2" >/dev/null 2>&1 || fail "report of a raw run"
expect_match "$(cat "$T/raw.html")" "computed now" "audit computed for a run without CTS/"

# kx.vtime rounds recorded by kx.lab
cat > "$T/vt.lua" <<'EOF'
local lab = require "kx.lab"
local vtime = require "kx.vtime"
local exp = lab.experiment{ name = "vt", reps = 1, warmup = 0, metrics = { rounds = "" } }
exp:run{ measure = function()
	local ve = assert(vtime.experiment{ step = 10e6, backend = "signal" })
	local p = assert(ve:spawn({ "sleep", "0.1" }, { stdout = "null" }))
	ve:freeze()
	local rec = exp:vtime(ve, "sleep 0.1")
	while p:alive() and ve.rounds < 100 do rec:advance(1) end
	ve:stop()
	return ve.rounds
end }
EOF
out=$("$KXRUN" "$T/vt.lua" --out "$T/vt" 2>&1); rc=$?
expect_eq "$rc" 0 "vtime experiment ($out)"
rows=$(wc -l < "$T/vt/vtime.jsonl")
[ "$rows" -ge 10 ] || fail "$rows rows in vtime.jsonl"
last=$(tail -1 "$T/vt/vtime.jsonl")
expect_match "$last" '"virtual_ns":[0-9]+' "virtual time per round"
expect_match "$last" '"real_s":[0-9.e-]+' "real time per round"
html=$(cat "$T/vt/report.html")
expect_match "$html" "Virtual against real time" "vtime section"
expect_match "$html" "real / virtual" "vtime table"
[ -s "$T/vt/plots/vtime-virtual-real.svg" ] || fail "vtime plot missing"
# and the same directory through kxrun report
"$KXRUN" report "$T/vt" >/dev/null || fail "kxrun report of a kx.lab directory"

# kxrun lab new
cd "$T" || fail "cd"
out=$("$KXRUN" lab new 9lives 2>&1); rc=$?
expect_eq "$rc" 2 "a name that is not a Lua module name"
"$KXRUN" lab new mylab >/dev/null || fail "lab new"
for f in mylab-0.1-1.rockspec lua/mylab/init.lua lua/mylab/timing.lua experiments/example.lua README.md; do
	[ -s "mylab/$f" ] || fail "lab new did not write $f"
done
echo "-- mine" >> mylab/README.md
out=$("$KXRUN" lab new mylab 2>&1); rc=$?
expect_eq "$rc" 1 "lab new over an existing library"
expect_match "$out" "exists \(not overwritten\)" "its message"
expect_match "$(tail -1 mylab/README.md)" "^-- mine$" "the existing file kept"
out=$(KXRUN_PATH="$T/mylab/lua" "$KXRUN" mylab/experiments/example.lua --reps 2 --out "$T/ex" 2>&1); rc=$?
expect_eq "$rc" 0 "the example experiment ($out)"
expect_match "$out" "program=true|true +2 " "its summary"
exit 0
