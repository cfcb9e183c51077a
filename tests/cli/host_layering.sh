# host/ is layered: no two of its files call each other, directly or round
# a circle (read from the objects' symbols); what it exports is named kx_*;
# the binary holds no test-only module; no host file is over 800 lines.
. "$(dirname "$0")/lib.sh"
: "${BUILD:=build}"
cd "$ROOT" || fail "no ROOT"

objs=()
for c in host/*.c; do
	if [ "$c" = host/main.c ]; then o="$BUILD/main.o"; else o="$BUILD/${c%.c}.o"; fi
	[ -f "$o" ] || fail "$o not built (make builds it)"
	objs+=("$c=$o")
done
out=$(python3 - "${objs[@]}" <<'PY'
import subprocess, sys
defs, undef = {}, {}
for arg in sys.argv[1:]:
    src, obj = arg.split("=", 1)
    undef[src] = set()
    for line in subprocess.run(["nm", obj], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        f = line.split()
        if len(f) == 3 and f[1] in "TDBRC":
            defs[f[2]] = src
        elif len(f) == 2 and f[0] == "U":
            undef[src].add(f[1])
edges = {s: {} for s in undef}
for s, us in undef.items():
    for u in us:
        d = defs.get(u)
        if d and d != s:
            edges[s].setdefault(d, set()).add(u)
# a circle: a path from a file back to itself
def reach(a, seen):
    for b in edges[a]:
        if b not in seen:
            seen.add(b)
            reach(b, seen)
    return seen
bad = 0
for a in sorted(edges):
    for b in sorted(edges[a]):
        if a in reach(b, {b}):
            print(f"{a} -> {b} ({', '.join(sorted(edges[a][b]))}) is on a circle")
            bad = 1
# exported names: kx_*, besides Lua's luaopen_kx, main, and the
# sanitizers' own (__odr_asan.*, ...)
for arg in sys.argv[1:]:
    src, obj = arg.split("=", 1)
    for line in subprocess.run(["nm", "--defined-only", "-g", obj], capture_output=True,
                               text=True, check=True).stdout.splitlines():
        f = line.split()
        if len(f) == 3 and f[1] in "TDBRC" and not f[2].startswith(("kx_", "__")) \
                and f[2] not in ("luaopen_kx", "main"):
            print(f"{src} exports {f[2]}: host names start with kx_")
            bad = 1
sys.exit(bad)
PY
) || fail "host/ is not layered:
$out"

"$KXRUN" -e 'assert(package.preload["kx._resume_test"] == nil, "kx._resume_test is in the binary")' ||
	fail "a test-only module ships in kxrun"

for f in host/*.c host/*.h; do
	n=$(wc -l < "$f")
	[ "$n" -le 800 ] || fail "$f has $n lines (over 800)"
done
exit 0
