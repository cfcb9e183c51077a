# Sourced by tests/cli/vtime_*.sh: sets $backends to the kx.vtime backends
# whose features the machine has (tests/features.sh probes them, never
# kxrun); an absent one is recorded as a skip, as lib_need.sh's need does,
# so that tests/run.sh fails the run if the feature is present after all.
backends=signal
for b in freezer-v1:cgroup1-freezer freezer-v2:cgroup2; do
	if why=$("$ROOT/tests/features.sh" "${b#*:}"); then
		backends="$backends ${b%%:*}"
	else
		[ -n "${KXRUN_TEST_SKIPS:-}" ] && printf '%s\t%s\t%s\n' \
			"${KXRUN_TEST_NAME:-cli $(basename "$0" .sh)}" "${b#*:}" "$why" >>"$KXRUN_TEST_SKIPS"
		echo "${b%%:*}: not tested, ${b#*:} absent: $why"
	fi
done
