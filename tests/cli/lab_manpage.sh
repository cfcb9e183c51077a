# `make install PREFIX=` installs the kxrun(1) man page; it renders without
# a groff warning and names every built-in tool that `kxrun --help` lists.
. "$(dirname "$0")/lib.sh"
cd "$ROOT" || fail "cd $ROOT"
warn=$(groff -man -Tutf8 -ww -z docs/kxrun.1 2>&1)
[ -z "$warn" ] || fail "groff warnings: $warn"
page=$(groff -man -Tutf8 docs/kxrun.1 2>/dev/null | sed 's/.\x08//g')
tools=$("$KXRUN" --help | sed -n 's/^Built-in tools: //p')
[ -n "$tools" ] || fail "kxrun --help lists no tool"
for t in $tools; do
	expect_match "$page" "kxrun $t" "the man page describes kxrun $t"
done
out=$(make --no-print-directory -s install PREFIX="$T/usr" BUILD="$BUILD" BIN="$KXRUN" 2>&1) || fail "make install: $out"
[ -x "$T/usr/bin/kxrun" ] || fail "make install: no bin/kxrun"
cmp -s docs/kxrun.1 "$T/usr/share/man/man1/kxrun.1" || fail "make install: no share/man/man1/kxrun.1"
exit 0
