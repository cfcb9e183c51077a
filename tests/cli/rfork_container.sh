#!/bin/bash
# kx.rfork's lean containers (kxrun rfork resume --rootfs/--pid/--net/
# --hostname/--memory/--cpus/--pids, and rfork.resume{container = ...}):
# the child sees itself as PID 1, its own host name, only lo (or the named
# network namespace), a read-only root with a writable /tmp, and runs in
# cgroups with the limits asked for; the resuming process passes SIGTERM on,
# kills what the child left behind in its cgroups, removes them and exits as
# the child did (an OOM kill included); errors before the switch are
# reported and leave nothing.
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/lib_netns.sh"
need root userfaultfd cgroup1-memory cgroup1-cpu netns
netns_setup
chmod 755 "$T"
mkdir -p "$T/root/proc" "$T/root/dev" "$T/root/tmp"
echo "in the box" > "$T/root/marker"

rm -f "$T/in" "$T/out"
mkfifo "$T/in"
"$KXRUN" "$ROOT/tests/rfork/ctparent.lua" < "$T/in" > "$T/out" 2> "$T/perr" &
PARENT=$!
exec 7> "$T/in"
for _ in $(seq 200); do [ -s "$T/out" ] && break; sleep 0.05; done
read -r ADDR ID KEY < "$T/out" || fail "the parent printed no address: $(cat "$T/perr")"

# child ORDER FLAGS...: a resumed child's output (its status in $rc)
child() {
	local order=$1
	shift
	out=$(printf '%s\n' "$order" | timeout 60 "$KXRUN" rfork resume "$@" "$ADDR" "$ID" "$KEY" \
		2> "$T/cerr")
	rc=$?
}
field() { printf '%s\n' "$out" | awk -F'\t' -v k="$1" '$1 == k { print $2 }'; }
no_groups() {   # no cgroup of resuming process $1 is left
	local left
	left=$(ls -d /sys/fs/cgroup/*/kxrun-rfork-"$1" 2>/dev/null)
	[ -z "$left" ] || fail "$2: cgroups left: $left"
}

host=$(hostname)
child show --rootfs "$T/root" --pid --net new --hostname box1 --memory 64M --cpus 0.5 --pids 64
expect_eq "$rc" 0 "container child ($(cat "$T/cerr"))"
expect_eq "$(field pid)" 1 "its pid"
expect_eq "$(field host)" box1 "its host name"
expect_eq "$(field ifs)" lo "its network interfaces"
expect_eq "$(field marker)" "in the box" "its root"
expect_eq "$(field root)" read-only "its root"
expect_eq "$(field tmp)" writable "its /tmp"
expect_match "$(field cgroup)" "^/kxrun-rfork-[0-9]+$" "its memory cgroup"
no_groups "$(field cgroup | sed 's|.*-||')" "after the child"
expect_eq "$(hostname)" "$host" "the host's name"

# without a container the same parent's child is on the host
child show
expect_eq "$rc" 0 "plain child"
[ "$(field pid)" != 1 ] || fail "a plain child is PID 1"
expect_match "$(field ifs)" "lo" "plain child's interfaces"
[ "$(field ifs)" != lo ] || fail "a plain child sees only lo"

# the limits, seen from outside while the child waits
rm -f "$T/cin"
mkfifo "$T/cin"
"$KXRUN" rfork resume --pid --memory 48M --cpus 0.25 --pids 32 "$ADDR" "$ID" "$KEY" \
	< "$T/cin" > "$T/cout" 2> "$T/cerr" &
R=$!
exec 8> "$T/cin"
echo wait >&8
for _ in $(seq 200); do grep -q waiting "$T/cout" && break; sleep 0.05; done
grep -q waiting "$T/cout" || fail "the waiting child said nothing: $(cat "$T/cerr")"
expect_eq "$(cat /sys/fs/cgroup/memory/kxrun-rfork-$R/memory.limit_in_bytes)" 50331648 "memory limit"
expect_eq "$(cat /sys/fs/cgroup/cpu/kxrun-rfork-$R/cpu.cfs_quota_us)" 25000 "CPU quota"
expect_eq "$(cat /sys/fs/cgroup/pids/kxrun-rfork-$R/pids.max)" 32 "process limit"
echo go >&8
exec 8>&-
wait "$R"
expect_eq "$?" 0 "waiting child ($(cat "$T/cerr"))"
no_groups "$R" "after the waiting child"

# SIGTERM to the resuming process reaches the child (kxrun exits 143)
rm -f "$T/cin"
mkfifo "$T/cin"
"$KXRUN" rfork resume --pid --memory 64M "$ADDR" "$ID" "$KEY" < "$T/cin" \
	> "$T/cout" 2> "$T/cerr" &
R=$!
exec 8> "$T/cin"
echo sleep >&8
for _ in $(seq 200); do grep -q waiting "$T/cout" && break; sleep 0.05; done
kill -TERM "$R"
wait "$R"
expect_eq "$?" 143 "child sent SIGTERM ($(cat "$T/cerr"))"
exec 8>&-
no_groups "$R" "after SIGTERM"

# what the child leaves in its cgroups goes with it
child leave --memory 64M
expect_eq "$rc" 0 "child leaving a process ($(cat "$T/cerr"))"
left=$(field left)
[ -n "$left" ] || fail "the child started nothing: $out"
for _ in $(seq 100); do kill -0 "$left" 2>/dev/null || break; sleep 0.05; done
kill -0 "$left" 2>/dev/null && { kill -9 "$left"; fail "the child's sleep $left outlived it"; }

# over its memory limit: killed, and said so by the resuming process's end
child "hog 256" --pid --memory 32M
expect_eq "$rc" 137 "child over its memory limit"

# a named network namespace (ip netns's)
child show --net "$NS_B"
expect_eq "$rc" 0 "child in $NS_B ($(cat "$T/cerr"))"
expect_match "$(field ifs)" "vb" "interfaces in $NS_B"

# errors before the switch: said, nothing left
child show --rootfs "$T/nonexistent" --memory 64M
expect_eq "$rc" 1 "a missing root"
expect_match "$(cat "$T/cerr")" "^kxrun rfork: rfork.resume: container: mounting $T/nonexistent: No such file" "message"
[ -z "$(ls -d /sys/fs/cgroup/memory/kxrun-rfork-* 2>/dev/null)" ] || fail "cgroups left after an error"

# the same from Lua
out=$(echo show | timeout 60 "$KXRUN" -e "
local rfork = require 'kx.rfork'
local _, err = rfork.resume{ address = '$ADDR', id = '$ID', key = '$KEY', container = {
	rootfs = '$T/root', pid = true, net = true, hostname = 'box2',
	cgroup = { memory = '64M', cpu = 0.5, pids = 64 } } }
io.stderr:write(err, '\n') os.exit(1)" 2> "$T/cerr")
expect_eq "$?" 0 "Lua container child ($(cat "$T/cerr"))"
expect_eq "$(field pid)/$(field host)/$(field ifs)/$(field root)" "1/box2/lo/read-only" "Lua container child"
out=$("$KXRUN" -e "
local ok, err = pcall(require('kx.rfork').resume, { address = '$ADDR', id = '$ID', key = '$KEY',
	container = { net = 5 } })
print(ok, err)" 2>&1)
expect_match "$out" "false.*field 'container'.*net" "a bad net"

exec 7>&-
wait "$PARENT"
echo ok
