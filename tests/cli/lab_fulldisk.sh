# kx.lab on a full disk: the run stops with an error naming results.jsonl
# (no run is silently lost), the rows written stay readable, and once there
# is room again the same command finishes the sweep, dropping the line the
# full disk cut.
. "$(dirname "$0")/lib.sh"
need root tmpfs-mount python3
mkdir "$T/disk"
mount -t tmpfs -o size=48k tmpfs "$T/disk" || fail "mount a tmpfs"
trap 'umount "$T/disk" 2>/dev/null; rm -rf "$T"' EXIT
cat > "$T/exp.lua" <<'EOF'
local lab = require "kx.lab"
local exp = lab.experiment{ name = "full", reps = 400, warmup = 0, metrics = { time = "ms" },
	params = { { "note", type = "string", default = ("x"):rep(150) } } }
exp:run{ measure = function(_, rep) return rep / 7 end }
EOF
out=$("$KXRUN" "$T/exp.lua" --out "$T/disk/res" 2>&1); rc=$?
expect_eq "$rc" 1 "exit status on a full disk ($out)"
expect_match "$out" "results.jsonl: No space left on device" "the error names the file"
rows=$(grep -c '^{.*}$' "$T/disk/res/results.jsonl")
[ "$rows" -gt 20 ] && [ "$rows" -lt 400 ] || fail "$rows complete rows before the disk filled"
mount -o remount,size=4m "$T/disk" || fail "remount"
out=$("$KXRUN" "$T/exp.lua" --out "$T/disk/res" 2>&1); rc=$?
expect_eq "$rc" 0 "the same command with room again ($out)"
/usr/bin/python3 - "$T/disk/res/results.jsonl" <<'EOF' || fail "results after the disk had room again"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
reps = sorted(r["rep"] for r in rows)
assert reps == list(range(1, 401)), f"{len(reps)} rows; missing or twice: {set(range(1, 401)) ^ set(reps)}"
EOF
exit 0
