# Every `kxrun TOOL` (each stdlib/kx/tools/*.lua) answers --help with its
# usage and exit 0, and refuses a bad flag with a message naming it and a
# non-zero exit.  Tools on kx.cli (all but those listed in LOOSE) do what
# docs/ARCHITECTURE.md says: a bad flag, at the top or after any of their
# commands, is exit 2 with one line on stderr naming it and nothing on
# stdout; `TOOL COMMAND --help` exits 0.
. "$(dirname "$0")/lib.sh"

# gpu keeps Chronos's contract (issue 7): every failure, a bad command line
# too, is exit 1 with the message alone on stderr
LOOSE=" gpu "
BAD=--no-such-flag-kx

tools=$(cd "$ROOT/stdlib/kx/tools" && ls -- *.lua | sed 's/\.lua$//')
[ -n "$tools" ] || fail "no tools found in $ROOT/stdlib/kx/tools"
listed=$("$KXRUN" --help | sed -n 's/^Built-in tools: //p')
expect_eq "$listed" "$(echo $tools)" "kxrun --help lists every tool"

# check CMD... : runs kxrun CMD..., leaves its status in rc, stdout in out,
# stderr in err
check() {
	"$KXRUN" "$@" >"$T/out" 2>"$T/err"
	rc=$?
	out=$(cat "$T/out") err=$(cat "$T/err")
}

for tool in $tools; do
	check "$tool" --help
	expect_eq "$rc" 0 "kxrun $tool --help: exit status"
	expect_match "$(printf '%s' "$out" | head -1)" "^[Uu]sage: kxrun $tool( |$)" "kxrun $tool --help: usage line"

	check "$tool" "$BAD"
	[ "$rc" -ne 0 ] || fail "kxrun $tool $BAD: exit 0"
	expect_match "$err" "$BAD" "kxrun $tool $BAD: the message names the flag"

	case $LOOSE in *" $tool "*)
		expect_eq "$rc" 1 "kxrun $tool $BAD: exit status (Chronos's)"
		continue ;; esac

	# kx.cli tools: exit 2, one line
	expect_eq "$rc" 2 "kxrun $tool $BAD: exit status"
	expect_eq "$(printf '%s\n' "$err" | wc -l)" 1 "kxrun $tool $BAD: one line on stderr"
	expect_eq "$out" "" "kxrun $tool $BAD: stdout"
	expect_match "$err" "^kxrun $tool: .*\(see kxrun $tool --help\)$" "kxrun $tool $BAD: message"
	# and so after each of its commands
	commands=$("$KXRUN" "$tool" --help | awk '/^Commands:/ { c = 1; next } c && /^$/ { c = 0 } c && /^  [a-z]/ { print $1 }')
	for cmd in $commands; do
		check "$tool" "$cmd" --help
		expect_eq "$rc" 0 "kxrun $tool $cmd --help: exit status"
		[ -n "$out" ] || fail "kxrun $tool $cmd --help printed nothing"
		check "$tool" "$cmd" "$BAD"
		expect_eq "$rc" 2 "kxrun $tool $cmd $BAD: exit status"
		expect_eq "$(printf '%s\n' "$err" | wc -l)" 1 "kxrun $tool $cmd $BAD: one line on stderr"
		expect_match "$err" "^kxrun $tool: $cmd: unknown flag '$BAD' \(see kxrun $tool --help\)$" \
			"kxrun $tool $cmd $BAD: message"
	done
done
exit 0
