# need FEATURE... : the only way a tests/cli test skips.  Each feature is
# probed by tests/features.sh (the machine, never kxrun); when one is absent
# the skip is recorded for tests/run.sh (which fails the run if the feature
# is present after all) and the test exits 77 with the probe's reason.
need() {
	local f why
	for f in "$@"; do
		why=$("$ROOT/tests/features.sh" "$f") && continue
		[ -n "${KXRUN_TEST_SKIPS:-}" ] &&
			printf '%s\t%s\t%s\n' "${KXRUN_TEST_NAME:-cli $(basename "$0" .sh)}" "$f" "$why" >>"$KXRUN_TEST_SKIPS"
		echo "skipped: $f absent: $why"
		exit 77
	done
}

# have FEATURE: for a test of which only a part needs FEATURE.  True when it
# is present; when absent the part's skip is recorded as need's is (listed
# and re-probed by tests/run.sh) and it returns 1, so the rest still runs.
have() {
	local why
	why=$("$ROOT/tests/features.sh" "$1") && return 0
	[ -n "${KXRUN_TEST_SKIPS:-}" ] &&
		printf '%s\t%s\t%s\n' "${KXRUN_TEST_NAME:-cli $(basename "$0" .sh)} (a part)" "$1" "$why" >>"$KXRUN_TEST_SKIPS"
	echo "part skipped: $1 absent: $why"
	return 1
}
