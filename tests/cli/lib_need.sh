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
