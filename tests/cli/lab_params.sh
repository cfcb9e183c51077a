# kx.lab from the command line: a script's declared parameters (--help, bad
# values, sizes, durations, lists), the same script piped on stdin, the
# progress line on a terminal, and env.json's git commit of a script in a
# repository (clean, then with a change not committed).
. "$(dirname "$0")/lib.sh"
cat > "$T/exp.lua" <<'EOF'
local lab = require "kx.lab"
local exp = lab.experiment{
	about = "the parameters test",
	params = {
		{ "size", type = "size", default = "64M", help = "working set" },
		{ "threads", type = "int", default = "1,2", list = true, help = "workers" },
		{ "interval", type = "duration", default = "1s", help = "how often" },
	},
	out = false,
}
print(exp.name, exp.params.size, table.concat(exp.params.threads, "/"), exp.params.interval, exp.reps)
EOF

out=$("$KXRUN" "$T/exp.lua" --size=1G --reps 5 --threads 4,8 --interval 250ms 2>&1); rc=$?
expect_eq "$rc" 0 "exit status ($out)"
expect_eq "$out" "$(printf 'exp\t1073741824\t4/8\t0.25\t5')" "parsed values"
out=$("$KXRUN" "$T/exp.lua" 2>&1)
expect_eq "$out" "$(printf 'exp\t67108864\t1/2\t1\t5')" "defaults"

out=$("$KXRUN" "$T/exp.lua" --help 2>&1); rc=$?
expect_eq "$rc" 0 "--help exit status"
expect_match "$out" "^usage: kxrun .*exp.lua" "usage line"
expect_match "$out" "the parameters test" "about"
expect_match "$out" "--size SIZE +working set \(default 64M\)" "--size listed"
expect_match "$out" "--threads N,\.\.\. +workers \(default 1,2\)" "--threads listed"
expect_match "$out" "--interval TIME +how often \(default 1s\)" "--interval listed"
expect_match "$out" "--reps N" "kx.lab's --reps listed"
expect_match "$out" "--budget TIME" "kx.lab's --budget listed"

check_bad() {   # args... ; expected stderr pattern is $PATTERN
	err=$("$KXRUN" "$T/exp.lua" "$@" 2>&1 >/dev/null); rc=$?
	expect_eq "$rc" 2 "exit status for $*"
	expect_eq "$(printf '%s\n' "$err" | wc -l)" 1 "one line for $* ($err)"
	expect_match "$err" "$PATTERN" "message for $*"
}
PATTERN='^kxrun: .*exp.lua: --size: "1Q" is not a size' check_bad --size=1Q
PATTERN='^kxrun: .*exp.lua: --threads: "two" is not an integer' check_bad --threads 1,two
PATTERN='^kxrun: .*exp.lua: --interval: "5m" is not a duration' check_bad --interval 5m
PATTERN="^kxrun: .*exp.lua: unknown flag '--sise' \\(see --help\\)" check_bad --sise 1G
PATTERN='^kxrun: .*exp.lua: --reps: must be at least 1' check_bad --reps 0

# pasted on stdin
out=$("$KXRUN" - --size 2K < "$T/exp.lua" 2>&1); rc=$?
expect_eq "$rc" 0 "script from stdin ($out)"
expect_match "$out" "	2048	" "stdin: --size 2K"

# progress on a terminal: point i/n and an ETA
cat > "$T/slow.lua" <<'EOF'
local lab = require "kx.lab"
local exp = lab.experiment{ name = "slow", params = { { "n", type = "int", default = "1,2", list = true } },
	reps = 3, warmup = 0, out = false }
exp:run{ measure = function(p) kx.sleep(0.15) return p.n end }
EOF
out=$(TERM=dumb script -qec "$KXRUN $T/slow.lua" /dev/null 2>&1); rc=$?
expect_eq "$rc" 0 "under script(1) ($out)"
expect_match "$out" "slow  point 1/2 n=1  ETA \?  0/6" "first progress line"
expect_match "$out" "slow  point 2/2 n=2  ETA [0-9]+s  [3-5]/6" "progress with an ETA"
expect_match "$out" "value" "summary table"
out=$("$KXRUN" "$T/slow.lua" 2>&1)
case $out in *ETA*) fail "progress written when stderr is not a terminal: $out" ;; esac

# the git commit of the experiment's repository
mkdir "$T/repo" && cp "$T/exp.lua" "$T/repo/run.lua"
sed -i 's/out = false/out = os.getenv("OUT")/; s/^print.*/exp:run{ measure = function() return 1 end }/' "$T/repo/run.lua"
git -C "$T/repo" init -q && git -C "$T/repo" -c user.email=t@t -c user.name=t add run.lua &&
	git -C "$T/repo" -c user.email=t@t -c user.name=t commit -qm one || fail "git commit"
head=$(git -C "$T/repo" rev-parse HEAD)
OUT="$T/res1" "$KXRUN" "$T/repo/run.lua" --reps 1 --no-report >/dev/null 2>&1 || fail "run in a repository"
env=$(tr -d ' \n' < "$T/res1/env.json")
expect_match "$env" "\"git\":\{\"commit\":\"$head\",\"dirty\":false" "env.json git commit"
echo "-- changed" >> "$T/repo/run.lua"
OUT="$T/res2" "$KXRUN" "$T/repo/run.lua" --reps 1 --no-report >/dev/null 2>&1 || fail "run with a change"
expect_match "$(tr -d ' \n' < "$T/res2/env.json")" "\"dirty\":true" "env.json notes the uncommitted change"
exit 0
