# make run's tour: experiments/quickstart.lua runs to the end on embedded
# defaults and every module reports.  Its rfork child is resumed after the
# parent has started threads (libuv's threadpool for the OpenDC export, the
# OpenCL runtime's workers): the child must still exit (their destructors
# would join threads that are not there).
. "$(dirname "$0")/lib.sh"
out=$(timeout 120 "$KXRUN" experiments/quickstart.lua 2>&1); rc=$?
expect_eq "$rc" 0 "quickstart exit status ($out)"
expect_match "$out" "all 4 jobs in" "core"
expect_match "$out" "trace: 2 invocations" "kx.trace"
if "$ROOT"/tests/features.sh opencl >/dev/null; then
	expect_match "$out" "gpu: partition_[0-9]+ on device 0 \(.*, [0-9]+ MB\), [0-9]+ MB for [0-9]+ s; [0-9.]+% still available" "kx.gpu"
else
	expect_match "$out" "gpu: no OpenCL device .*; skipped" "kx.gpu says why it skipped"
fi
expect_match "$out" "opendc: 1 task, 4 fragments" "kx.opendc"
expect_match "$out" "vtime: sleep 0.5 ended in round 5[0-9]" "kx.vtime"
expect_match "$out" 'kronos: tracer said "slept 0.2 s virtual", exit 0' "kx.kronos"
if "$ROOT"/tests/features.sh userfaultfd >/dev/null; then
	expect_match "$out" 'rfork: child 1 sees 5 words, last "forks"; kx.exec in it: 0' "kx.rfork child"
	expect_match "$out" "rfork: resumed and finished" "kx.rfork"
else
	expect_match "$out" "rfork: .*skipped" "kx.rfork says why it skipped"
fi
exit 0
