#!/bin/bash
# kxrun gpu's outputs and messages against the text of the Chronos user
# guide (tests/gpu/chronos-guide-messages.txt, copied from the guide): an
# oracle that is not kxrun's own strings.  A kxrun line must be the guide's
# line (its stand-ins replaced by this machine's values), or the guide's
# line with an addition beside it: " (...)" after it (list's size in MB),
# or ": ..." after a message the guide shows alone.
. "$ROOT/tests/cli/gpu_lib.sh.inc"
K=$KXRUN
need root setpriv nobody-exec
need_device
GUIDE=$ROOT/tests/gpu/chronos-guide-messages.txt
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }

# the guide's lines under the heading "== $1 (section)", wrapped
# lines joined
guide() {
	awk -v h="== $1 (" '
		/^== / { on = index($0, h) == 1; next }
		on && /^#/ { next }
		on && NF == 0 { next }
		on && /^with / { prev = prev " " $0; next }
		on { if (have) print prev; prev = $0; have = 1 }
		END { if (have) print prev }' "$GUIDE"
}

# the guide's line as an extended regular expression, its stand-ins
# replaced by what varies from machine to machine
pattern() {
	printf '%s\n' "$1" | sed -E \
		-e 's/[][\.*^$+?(){}|]/\\&/g' \
		-e 's/NVIDIA GeForce RTX 3080|NVIDIA Corporation/.+/g' \
		-e 's/OpenCL 3\\\.0/OpenCL .+/' \
		-e 's/^(  Type: )GPU$/\1[A-Za-z]+/' \
		-e "s/alice/$OWNER/g" \
		-e 's/12345/[0-9]+/g' \
		-e 's/[0-9]+ MB/[0-9]+ MB/g' \
		-e 's/(Time remaining: )[0-9]+/\1[0-9]+/' \
		-e 's/(Usage: )[0-9]+\\\.[0-9]+%/\1[0-9]+\\.[0-9]{2}%/' \
		-e 's/(Active partitions: )[0-9]+/\1[0-9]+/'
}

# compare HEADING TEXT: kxrun's lines (TEXT) against the guide's, in order
compare() {
	local want got n=0 re
	want=$(guide "$1")
	[ -n "$want" ] || die "no '== $1' in $GUIDE"
	[ "$(printf '%s\n' "$want" | wc -l)" = "$(printf '%s\n' "$2" | wc -l)" ] ||
		die "$1: the guide has $(printf '%s\n' "$want" | wc -l) lines, kxrun printed:
$2"
	while IFS= read -r got <&3 && IFS= read -r line <&4; do
		n=$((n + 1))
		re=$(pattern "$line")
		[[ $got =~ ^$re(\ \(.+\)|:\ .+)?$ ]] ||
			die "$1, line $n: kxrun printed '$got', the guide has '$line'"
	done 3< <(printf '%s\n' "$2") 4< <(printf '%s\n' "$want")
	[ $n -gt 0 ] || die "$1: nothing compared"
}

OWNER=$(id -un)
compare "stats" "$($K gpu stats)"
compare "available 0" "$($K gpu available 0)"
compare "create 0 0.5 3600" "$($K gpu create 0 0.5 3600)"
compare "list" "$($K gpu list)"
OWNER=root
expect_fail as_nobody $K gpu release partition_0001
compare "release partition_0001, as another user" "$LAST_ERR"
expect_fail as_nobody $K gpu create 0 0.5 3600 --user root
compare "create 0 0.5 3600 --user alice, not as root" "$LAST_ERR"
expect_fail $K gpu create 0 0.9 3600
compare "create 0 0.9 3600, with 50% free" "$LAST_ERR"
echo ok
