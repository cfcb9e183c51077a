# kx.trace's faults: eBPF refused to an unprivileged user (clear message,
# /proc fallback under "auto"), an unwritable and a full output directory
# (refused before anything starts, nothing written).
. "$(dirname "$0")/lib.sh"
need root setpriv nobody-exec tmpfs-mount
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
chmod 0777 "$T"
cd "$T"

cat > ebpf.lua <<'LUA'
local trace = require "kx.trace"
local run, err = trace.start{ dir = arg[1] .. "/e", source = "ebpf" }
assert(run == nil, "eBPF loaded for an unprivileged user")
print("EBPF: " .. err)
run = assert(trace.start{ dir = arg[1] .. "/a", source = "auto", interval = 0.02 })
print("AUTO: " .. run.source)
local rec = assert(run:exec{ "sh", "-c", "sleep 0.1 & wait" })
run:stop()
assert(trace.parse(arg[1] .. "/a").ok, "audit of the /proc run failed")
print("REC: " .. rec.exit_code)
LUA
out=$(as_nobody "$KXRUN" ebpf.lua "$T" 2>err.txt) || { cat err.txt; fail "unprivileged run: $out"; }
expect_match "$out" 'EBPF: BPF load refused: .*root' "eBPF refusal says why"
expect_match "$out" 'AUTO: proc' "auto falls back to /proc"
expect_match "$out" 'REC: 0' "the command ran under /proc tracing"
expect_match "$(cat err.txt)" 'sampling /proc instead' "the fallback is announced"
# KXRUN_LOG=debug: what libbpf said while failing, whole
as_nobody env KXRUN_LOG=debug "$KXRUN" -e 'print(require("kx.trace").start{ dir = "dbg", source = "ebpf" })' \
	>/dev/null 2>err.txt
expect_match "$(cat err.txt)" 'DEBUG kx.trace: libbpf' "libbpf's log at KXRUN_LOG=debug"
expect_match "$(cat err.txt)" 'libbpf: .*(Operation not permitted|-1)' "libbpf's own words"

# unwritable: a directory of root's, mode 0555, for another user
mkdir ro && chmod 0555 ro
out=$(as_nobody "$KXRUN" -e 'local r, e = require("kx.trace").start{ dir = "ro/run" } print(r, e)' 2>&1)
expect_match "$out" '^nil	cannot create ro/run' "unwritable directory refused"
[ -e ro/run ] && fail "something was written under the unwritable directory"

# full: a 256 KiB tmpfs filled up
mkdir full
mount -t tmpfs -o size=256k kxrun-trace-full full || fail "cannot mount a tmpfs"
trap 'umount "$T/full" 2>/dev/null; rm -rf "$T"' EXIT
dd if=/dev/zero of=full/filler bs=4k count=1000 2>/dev/null
out=$("$KXRUN" -e 'local r, e = require("kx.trace").start{ dir = "full/run" } print(r, e)' 2>&1)
expect_match "$out" '^nil	.*full' "full directory refused"
[ -e full/run/run.json ] && fail "run.json written on a full file system"

# full while running: rows lost are counted, said at stop and in the audit
mkdir full2
mount -t tmpfs -o size=2m kxrun-trace-full2 full2 || fail "second tmpfs"
trap 'umount "$T/full" "$T/full2" 2>/dev/null; rm -rf "$T"' EXIT
cat > fill.lua <<'LUA'
local trace = require "kx.trace"
local run = assert(trace.start{ dir = "full2/run", interval = 0.01, source = "proc" })
assert(run:exec{ "sh", "-c", "dd if=/dev/zero of=full2/filler bs=64k 2>/dev/null; sleep 0.3; rm full2/filler" })
assert(run:stop())
local audit = trace.audit("full2/run")
for _, c in ipairs(audit.checks) do print(c.name, c.ok, c.detail) end
LUA
out=$("$KXRUN" fill.lua 2>err.txt) || { cat err.txt; fail "run on a file system that fills up: $out"; }
expect_match "$(cat err.txt)" 'rows could not be written' "lost rows announced at stop"
expect_match "$out" 'run completed	false	records lost while running: [0-9]+ rows could not be written: No space left' "audit reports lost rows"
exit 0
