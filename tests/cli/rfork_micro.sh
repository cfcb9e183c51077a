# experiments/rfork_micro.lua on kx.lab: --help, a bad value in one line
# (exit 2), the table and the fork-function line it always printed, and
# with --out/--json every figure in results.jsonl and the JSON file.
. "$(dirname "$0")/lib.sh"
need userfaultfd
X="$ROOT/experiments/rfork_micro.lua"
out=$("$KXRUN" "$X" --help); expect_eq "$?" 0 "--help exit status"
expect_match "$out" "--sizes SIZE,\.\.\." "--help lists --sizes"
err=$("$KXRUN" "$X" --sizes 1X 2>&1); expect_eq "$?" 2 "a bad size: exit status"
expect_eq "$(printf '%s\n' "$err" | wc -l)" 1 "a bad size: one line"
expect_match "$err" '--sizes: "1X" is not a size' "a bad size: the message"
out=$("$KXRUN" "$X" --sizes 1M,2M --children 2 --entries 1000 --out "$T/o" --json "$T/r.json" 2>"$T/err") ||
	fail "the run failed: $(cat "$T/err")"
expect_match "$out" "^rfork micro benchmarks \(loopback\)" "heading"
expect_match "$out" "1M +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+" "1M row"
expect_match "$out" "2M +[0-9.]+" "2M row"
expect_match "$out" "fork-function: table of 1000 entries loaded once .* 2 children resumed at once" "fork-function line"
cat >"$T/check.lua" <<'LUA'
local rows = {}
for line in io.lines(arg[1] .. "/o/results.jsonl") do rows[#rows + 1] = kx.json.decode(line) end
local sizes = {}
for _, r in ipairs(rows) do
	if r.point.size then
		sizes[r.point.size] = true
		for _, m in ipairs{ "prepare", "resume", "touch_1pct", "touch_10pct", "touch_100pct" } do
			assert(type(r.values[m]) == "number" and r.values[m] >= 0, m .. " of " .. r.point.size)
		end
	end
end
assert(sizes["1M"] and sizes["2M"], "a row per size")
local j = kx.json.decode(assert(kx.read_file(arg[1] .. "/r.json")))
assert(#j.sizes == 2 and j.fork_function.entries == 1000 and #j.fork_function.children == 2, "the JSON file")
LUA
"$KXRUN" "$T/check.lua" "$T" || fail "results.jsonl / --json"
[ -s "$T/o/report.html" ] || fail "no report.html"
exit 0
