# Shared by the tests of kx.rfork's pager (rfork_pager.sh,
# rfork_pager_death.sh): build/tests/rfork_basic, the processes a test
# started (killed at its end if they are still ours), a wait that allows
# for a loaded machine, and a "hold" parent.
. "$ROOT/tests/cli/lib.sh"
BASIC=$ROOT/${BUILD:-build}/tests/rfork_basic
[ -x "$BASIC" ] || fail "$BASIC not built (make test builds it)"
need userfaultfd

PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do   # ours still (a pid may be taken again)
		case "$(cat "/proc/$p/comm" 2> /dev/null)" in
		rfork_basic | kxrun-pager) kill -9 "$p" ;;
		esac
	done
	[ -n "${CG:-}" ] && [ -d "$CG" ] && rmdir "$CG"
	rm -rf "$T"
}
trap cleanup EXIT
trap "" PIPE

# until CMD... succeeds (60 s at most: the machine may be loaded)
until_true() {
	for _ in $(seq 1200); do "$@" && return 0; sleep 0.05; done
	return 1
}

# hold_parent MB: "rfork_basic hold MB", prepared, its stdin the fifo
# $T/in held open on fd 7 (closing it ends the parent); sets PARENT, ADDR,
# ID, KEY
hold_parent() {
	rm -f "$T/in"
	mkfifo "$T/in"
	"$BASIC" hold "$1" < "$T/in" > "$T/out" 2> "$T/perr" &
	PARENT=$!
	PIDS+=("$PARENT")
	exec 7> "$T/in"
	until_true test -s "$T/out" || fail "the parent printed no address: $(cat "$T/perr")"
	read -r ADDR ID KEY < "$T/out"
}
