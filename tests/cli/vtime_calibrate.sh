#!/bin/bash
# kx.vtime's resume cost (bindings/vtime/calibrate.c): an experiment never
# waits for it.  The first experiment of a boot measures it in the
# background and its processes are charged a provisional value, corrected
# once it comes; the value is kept per boot and CPU model, and the next
# kxrun takes it from the file; a file of another boot, or over 10 minutes
# old, is measured again.
# `kxrun vtime calibrate` measures it now; `--show` prints the kept one.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
source tests/cli/lib.sh

export KXRUN_VTIME_CALIBRATION=$T/calibration

cat >"$T/first.lua" <<'EOS'
local vtime = require "kx.vtime"
local t0 = kx.now()
local exp = assert(vtime.experiment{ step = 100000, backend = "signal" })
local made = kx.now() - t0
-- not waited for: being measured while the experiment is made and runs
print("source", vtime.calibration().source, exp:stats().resume_cost_measuring)
print(("made in %.3f s"):format(made))
local p = assert(exp:spawn{ "sh", "-c", "while :; do :; done" })
exp:freeze()
local t1 = kx.now()
while exp:stats().resume_cost_measuring == 1 and kx.now() - t1 < 20 do exp:advance(20) end
local c = vtime.calibration()
local st = exp:stats()
-- the experiment took the measured value, and charged what the shares
-- before it were charged too much or too little to its process
print("after", c.source, st.resume_cost_measuring, st.resume_cost_ns == c.resume_cost_ns)
print("value", c.resume_cost_ns)
exp:stop()
EOS
out=$("$KXRUN" "$T/first.lua" 2>&1) || fail "first experiment: $out"
expect_match "$out" "^source	measuring	1$" "the first experiment of a boot does not wait for the measurement ($out)"
expect_match "$out" "after	measured	0	true" "the measured value reaches the experiment ($out)"
value=$(printf '%s\n' "$out" | awk '$1 == "value" { print $2 }')
[ -s "$KXRUN_VTIME_CALIBRATION" ] || fail "no calibration file after a measurement"
grep -qx "boot_id $(cat /proc/sys/kernel/random/boot_id)" "$KXRUN_VTIME_CALIBRATION" ||
	fail "the calibration file does not name this boot: $(cat "$KXRUN_VTIME_CALIBRATION")"
grep -qx "resume_cost_ns $value" "$KXRUN_VTIME_CALIBRATION" || fail "the file does not hold $value"

# the next kxrun of this boot takes it from the file
out=$("$KXRUN" -e 'local v = require "kx.vtime"
	local e = assert(v.experiment{ step = 1000000 })
	local c = v.calibration()
	print(c.source, c.resume_cost_ns, e:stats().resume_cost_ns, e:stats().resume_cost_measuring)
	e:stop()' 2>&1)
expect_eq "$out" "cached	$value	$value	0" "a second kxrun of this boot"
out=$("$KXRUN" vtime calibrate --show 2>&1); rc=$?
expect_eq "$rc" 0 "vtime calibrate --show"
expect_match "$out" "^resume cost [0-9]+\.[0-9] us \(cached, $KXRUN_VTIME_CALIBRATION\)$" "vtime calibrate --show"

# kept over 10 minutes ago: measured again (the load it was measured under
# may be gone), the old value used until then
sed -i 's/^measured .*/measured 1000/' "$KXRUN_VTIME_CALIBRATION"
out=$("$KXRUN" -e 'local c = require("kx.vtime").calibration() print(c.source, c.resume_cost_ns)' 2>&1)
expect_eq "$out" "measuring	$value" "a value kept over 10 minutes ago"

# a long experiment: its value turns 10 minutes old while it runs (kept
# 599 s ago): measured again in the background, the experiment corrected
sed -i "s/^measured .*/measured $(( $(date +%s) - 599 ))/" "$KXRUN_VTIME_CALIBRATION"
out=$("$KXRUN" -e 'local v = require "kx.vtime"
	local e = assert(v.experiment{ step = 100000, backend = "signal" })
	assert(e:spawn{ "sh", "-c", "while :; do :; done" })
	e:freeze()
	local seen, t0 = { v.calibration().source }, kx.now()
	while kx.now() - t0 < 20 do
		e:advance(50)
		local s = v.calibration().source
		if s ~= seen[#seen] then seen[#seen + 1] = s end
		if s == "measured" then break end
	end
	e:advance(1) -- the experiment takes it at its next round
	print(table.concat(seen, " "), e:stats().resume_cost_measuring)
	e:stop()' 2>&1)
expect_eq "$out" "cached measuring measured	0" "a value that turns 10 minutes old during an experiment"

# another boot's file: measured again
sed -i 's/^boot_id .*/boot_id 00000000-0000-0000-0000-000000000000/' "$KXRUN_VTIME_CALIBRATION"
out=$("$KXRUN" -e 'print(require("kx.vtime").calibration().source)' 2>&1)
expect_eq "$out" "measuring" "a file of another boot"
out=$("$KXRUN" vtime calibrate --show 2>&1); rc=$?
expect_eq "$rc" 1 "vtime calibrate --show with no value for this boot"

# measured now, kept
out=$("$KXRUN" vtime calibrate 2>&1); rc=$?
expect_eq "$rc" 0 "vtime calibrate ($out)"
expect_match "$out" "^resume cost [0-9]+\.[0-9] us \(kept in $KXRUN_VTIME_CALIBRATION\)$" "vtime calibrate"
grep -qx "boot_id $(cat /proc/sys/kernel/random/boot_id)" "$KXRUN_VTIME_CALIBRATION" ||
	fail "vtime calibrate did not keep the value for this boot"

# a file that cannot be written: measured, printed, and why it was not kept
export KXRUN_VTIME_CALIBRATION=/proc/kxrun-no-such-dir/calibration
out=$("$KXRUN" vtime calibrate 2>&1); rc=$?
expect_eq "$rc" 1 "vtime calibrate with an unwritable file ($out)"
expect_match "$out" "^resume cost [0-9]+\.[0-9] us$" "vtime calibrate with an unwritable file"
expect_match "$out" "calibrate: not kept: .*/proc/kxrun-no-such-dir" "vtime calibrate with an unwritable file"
exit 0
