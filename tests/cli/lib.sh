# Shared by tests/cli/*.sh: assertions that say what they expected, and
# `need FEATURE...` (tests/cli/lib_need.sh), the only way a test skips.
: "${ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
. "$ROOT/tests/cli/lib_need.sh"
: "${KXRUN:=$ROOT/kxrun}"
T=$(mktemp -d /tmp/kxrun-cli.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
expect_eq() { [ "$1" = "$2" ] || fail "$3: expected [$2], got [$1]"; }
expect_match() { printf '%s' "$1" | grep -Eq -- "$2" || fail "$3: [$1] does not match /$2/"; }
