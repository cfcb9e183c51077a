#!/bin/bash
# tests/run.sh itself, on a tree of tests with known outcomes: a pass, a
# skip without a probe, a skip whose feature is present after all, a spec
# of one success, a spec killed after printing its summary, a part of a
# test skipped (and one whose feature is present), a test that
# times out... and a process left running.  Each wrong outcome must fail
# the run, with the reason, and the leftover must be gone afterwards.
. "$(dirname "$0")/lib.sh"
mkdir -p "$T/tests/cli" "$T/tests/spec" "$T/build"
cli() { printf '%s\n' ". \"\$ROOT/tests/cli/lib.sh\"" "$2" >"$T/tests/cli/$1.sh"; }
cli pass 'exit 0'
cli bare_skip 'echo "no reason"; exit 77'
cli false_skip 'KXRUN_FEATURES_ABSENT=redis need redis'
cli leaves 'sleep 321 & disown; exit 0'
cli part_skip 'have ffmpeg && exit 1; exit 0'
cli false_part_skip 'KXRUN_FEATURES_ABSENT=redis have redis; exit 0'
cat >"$T/tests/spec/one_spec.lua" <<'LUA'
describe("one", function() it("passes", function() end) end)
LUA
cat >"$T/tests/spec/absent_spec.lua" <<'LUA'
local need = dofile((os.getenv("ROOT") or ".") .. "/tests/need.lua")
describe("absent", function()
	it("needs ffmpeg", function() if not need("ffmpeg") then return end error("ran") end)
end)
LUA
cat >"$T/tests/spec/crash_spec.lua" <<'LUA'
describe("crash", function() it("passes", function() end) end)
LUA
# the interpreter dies (SIGKILL) after busted printed crash_spec's clean summary
cat >"$T/kxrun" <<EOS
#!/bin/bash
"$KXRUN" "\$@"; rc=\$?
case "\$*" in *crash_spec*) kill -9 \$\$ ;; esac
exit \$rc
EOS
chmod +x "$T/kxrun"
out=$(cd "$ROOT" && KXRUN_FEATURES_ABSENT=ffmpeg KXRUN=$T/kxrun KXRUN_TESTS_DIR=$T/tests BUILD=$T/build tests/run.sh 2>&1); rc=$?
echo "$out"
[ "$rc" != 0 ] || fail "the run passed"
expect_match "$out" "cli pass: ok" "a passing test"
expect_match "$out" "failed: cli bare_skip: exit 77 without a feature probe" "a skip without a probe"
expect_match "$out" "failed: cli false_skip: skipped, but feature 'redis' is present here" "a skip of a present feature"
expect_match "$out" "spec one_spec: 1 success / 0 failures" "one success"
printf '%s\n' "$out" | grep -q "failed: spec one_spec" && fail "one success counted as a failure"
expect_match "$out" "spec absent_spec: 0 successes / 0 failures / 0 errors / 1 pending" "a spec whose feature is absent"
expect_match "$out" "spec absent_spec: ffmpeg absent: declared absent by KXRUN_FEATURES_ABSENT" "its reason"
printf '%s\n' "$out" | grep -q "failed: spec absent_spec" && fail "a legitimate skip failed the run"
expect_match "$out" "failed: spec crash_spec: exit [1-9]" "a crash after the summary"
expect_match "$out" "failed: leftovers: process .*sleep 321 is still running" "a leftover process"
expect_match "$out" "cli part_skip \\(a part\\): ffmpeg absent: declared absent" "a part's skip is listed"
expect_match "$out" "failed: cli false_part_skip \\(a part\\): skipped, but feature 'redis' is present here" "a part skipped for a present feature"
expect_match "$out" "6 passed, [0-9]+ failed, 3 skipped" "the summary"
# three tests fail (other work on this machine may add leftovers of its own)
expect_eq "$(printf '%s\n' "$out" | grep '^failed: ' | grep -vc '^failed: leftovers')" 4 "failed tests"
pgrep -f "sleep 321" >/dev/null && fail "the leftover sleep was not killed"
exit 0
