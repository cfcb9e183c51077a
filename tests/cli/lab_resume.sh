# kx.lab's results survive a kill: a sweep killed with SIGKILL mid-way, then
# cut mid-line (a torn last line, as a kill inside a write leaves), then run
# again into the same directory ends with every run recorded exactly once,
# and no run recorded before the kill is run again.
. "$(dirname "$0")/lib.sh"
need python3
cat > "$T/sweep.lua" <<'EOF'
local lab = require "kx.lab"
local log = assert(io.open(os.getenv("CALLS"), "a"))
log:setvbuf("no")
local exp = lab.experiment{ name = "sweep", reps = 4, warmup = 1, metrics = { time = "ms" },
	params = { { "n", type = "int", default = "1,2,3,4,5,6", list = true } } }
local function run(sys, factor)
	return function(p, rep)
		log:write(("%s %d %d\n"):format(sys, p.n, rep))
		kx.sleep(0.02)
		return p.n * factor
	end
end
exp:run{ systems = { { "a", run("a", 1) }, { "b", run("b", 2) } } }
EOF
R="$T/res"
CALLS="$T/calls1" "$KXRUN" "$T/sweep.lua" --out "$R" >"$T/out1" 2>&1 &
pid=$!
for _ in $(seq 600); do   # until a third of the 48 runs are in (load-proof: no fixed sleep)
	[ -f "$R/results.jsonl" ] && [ "$(wc -l < "$R/results.jsonl")" -ge 16 ] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.05
done
kill -KILL "$pid" 2>/dev/null || fail "the sweep ended before it could be killed: $(cat "$T/out1")"
wait "$pid" 2>/dev/null
before=$(wc -l < "$R/results.jsonl")
[ "$before" -ge 16 ] && [ "$before" -lt 48 ] || fail "$before rows after the kill"
cp "$R/results.jsonl" "$T/before.jsonl"
printf '{"point":{"n":' >> "$R/results.jsonl"    # a write cut short

CALLS="$T/calls2" "$KXRUN" "$T/sweep.lua" --out "$R" >"$T/out2" 2>&1 || fail "second run: $(cat "$T/out2")"
expect_match "$(cat "$T/out2")" "dropped a line cut short by an interruption" "torn line reported"
expect_match "$(cat "$T/out2")" "$before of 48 runs already in" "resume reported"
expect_match "$(cat "$T/out2")" "ratio to a" "summary table"
/usr/bin/python3 - "$R/results.jsonl" "$T/before.jsonl" "$T/calls2" <<'EOF' || fail "results after resuming"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]          # every line whole JSON
before = [json.loads(l) for l in open(sys.argv[2])]
keys = [(r["system"], r["point"]["n"], r["rep"]) for r in rows]
assert len(rows) == 48, f"{len(rows)} rows, expected 48"
assert len(set(keys)) == 48, "a run recorded twice"
assert set(keys) == {(s, n, k) for s in "ab" for n in range(1, 7) for k in range(1, 5)}, "a run missing"
for r in rows:
    assert r["values"]["time"] == r["point"]["n"] * (1 if r["system"] == "a" else 2)
done = {(r["system"], r["point"]["n"], r["rep"]) for r in before}
again = [tuple(l.split()) for l in open(sys.argv[3])]
rerun = [(s, int(n), int(k)) for s, n, k in again if int(k) > 0 and (s, int(n), int(k)) in done]
assert not rerun, f"runs recorded before the kill were run again: {rerun}"
measured = [a for a in again if a[2] != "0"]
assert len(measured) == 48 - len(before), f"{len(measured)} measured runs in the second session"
sessions = {r["session"] for r in rows}
assert sessions == {1, 2}, sessions
EOF
[ -s "$R/results.csv" ] && [ "$(wc -l < "$R/results.csv")" -eq 49 ] || fail "results.csv"
[ -s "$R/report.html" ] || fail "no report.html"
grep -q '"loadavg_after"' "$R/env.json" || fail "env.json lacks loadavg_after"
exit 0
