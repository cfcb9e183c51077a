#!/bin/sh
# Nothing escapes: closing the experiment kills every member (default) or
# lets each run on (resume); rmmod is refused while an experiment is open
# and works after; no task is left parked; experiments in a row register
# the tracepoint probes once.
# vm-files: build/tests/kxvt_test
# vm-timeout: 300
. /kx/tests/vm/bed/lib.sh
kxvt_load
build/tests/kxvt_test release kill || fail "release (kill)"
build/tests/kxvt_test release resume || fail "release (resume)"
# two experiments in a row rewrote kernel text once (the probes stay
# registered 5 s after the last experiment), not twice
n=$(cat /sys/module/kxvt/parameters/probe_registrations)
[ "$n" = 1 ] || fail "the probes were registered $n times for two experiments in a row"
build/tests/kxvt_test hold 30 > "$T/hold" &
holder=$!
for i in $(seq 100); do grep -q holding "$T/hold" && break; sleep 0.1; done
grep -q holding "$T/hold" || fail "the holder did not start"
rmmod kxvt 2> "$T/rmmod" && fail "rmmod succeeded with an experiment open"
cat "$T/rmmod"
kill -9 $holder
wait $holder
for i in $(seq 50); do rmmod kxvt 2>/dev/null && break; sleep 0.1; done
[ -d /sys/module/kxvt ] && fail "rmmod still refused after the experiment closed"
for s in /proc/[0-9]*/wchan; do
	grep -q kxvt "$s" 2>/dev/null && fail "a task still waits in kxvt: $s"
done
exit 0
