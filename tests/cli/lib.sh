# Shared by tests/cli/*.sh: assertions that say what they expected.
: "${KXRUN:=$ROOT/kxrun}"
T=$(mktemp -d /tmp/kxrun-cli.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "$*"; exit 77; }
expect_eq() { [ "$1" = "$2" ] || fail "$3: expected [$2], got [$1]"; }
expect_match() { printf '%s' "$1" | grep -Eq -- "$2" || fail "$3: [$1] does not match /$2/"; }
