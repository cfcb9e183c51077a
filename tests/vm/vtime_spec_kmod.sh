#!/bin/sh
# kx.vtime's own specs (tests/spec/vtime_spec.lua, kronos_spec.lua, the
# Kronos API and `kxrun vtime tracer` included) on backend "kmod": busted
# with kxrun as its Lua, KXRUN_SPEC_VTIME_BACKEND=kmod.  The tests of the
# other backends run in this guest too.
# vm-timeout: 900
# vm-files: tests/spec/vtime_spec.lua tests/spec/kronos_spec.lua tests/need.lua tests/features.sh tests/vtime/leftovers.lua
# vm-files: build/tests/vtime_clock build/tests/vtime_static
# vm-files: /usr/bin/busted /usr/share/lua /usr/lib/x86_64-linux-gnu/lua /bin/bash
# vm-files: /usr/bin/sleep /usr/bin/dash
. /kx/tests/vm/bed/lib.sh
kxvt_load
# busybox is linked statically, which the user-space backends refuse (their
# tests run here too): Debian's sleep and sh come first
mkdir -p "$T/bin" && ln -s /usr/bin/dash "$T/bin/sh" && ln -s /usr/bin/sleep "$T/bin/sleep"
export PATH="$T/bin:$PATH"
# TCG starts programs 10-30 times slower than a native machine (it
# translates their code), and a host under load (a descheduled vCPU counts
# as CPU) 50 times and more: the spec scales the rounds a start-up may take
# (its never-early bounds stay exact)
export KXRUN_SPEC_VTIME_BACKEND=kmod KXRUN_SPEC_SLOW=60
# TCG translates a program's code on its first run: run each once
build/tests/vtime_clock 2 > /dev/null; build/tests/vtime_static 2 > /dev/null
sleep 0.01; sh -c true
# The user-space backends' own tests run on the host (make test): here their
# SIGSTOP lands ~10 ms late (signals across TCG vCPUs), which they do not
# allow for.
$KXRUN /usr/bin/busted -o utfTerminal --filter-out='%(signal%)' --filter-out='%(freezer' \
	--filter-out='names what is missing when a freezer' \
	tests/spec/vtime_spec.lua tests/spec/kronos_spec.lua > "$T/out" 2>&1
rc=$?
grep -vE '^[●◼✱ ]*$' "$T/out"
grep -Eq '^[0-9]+ successes / 0 failures / 0 errors' "$T/out" || fail "busted exit $rc"
