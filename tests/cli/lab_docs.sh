# The kx.lab examples of README.md and docs/lab.md, pasted into files as a
# reader would, run as they are (with small parameters) and write their
# results directory and report.
. "$(dirname "$0")/lib.sh"
cd "$ROOT" || fail "cd $ROOT"
sed -n '/^## Experiments with kx.lab/,/^## /p' README.md | sed -n '/^```lua$/,/^```$/p' | sed '1d;$d' > "$T/readme.lua"
sed -n '/^```lua$/,/^```$/p' docs/lab.md | sed -n '1,/^```$/p' | sed '1d;$d' > "$T/spawn.lua"
for f in readme spawn; do
	grep -q 'require "kx.lab"' "$T/$f.lua" || fail "no kx.lab example found for $f"
	out=$("$KXRUN" "$T/$f.lua" --n 1,2 --reps 2 --out "$T/$f-res" 2>&1); rc=$?
	expect_eq "$rc" 0 "the $f example ($out)"
	expect_match "$out" "ratio to kx.exec" "the $f example's table"
	[ -s "$T/$f-res/report.html" ] && [ -s "$T/$f-res/results.csv" ] || fail "the $f example's files"
done
[ -s docs/img/report.png ] || fail "README's screenshot missing"
[ "$(stat -c %s docs/img/report.png)" -lt 102400 ] || fail "docs/img/report.png is over 100 KB"
exit 0
