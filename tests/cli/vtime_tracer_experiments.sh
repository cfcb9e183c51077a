#!/bin/bash
# The vtime experiments run: vtime_pingpong prints one virtual round-trip
# time per message and a median next to the plain run's; kronos_orchestrator
# registers three tracer processes, and their output and statuses come back.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
source tests/cli/lib.sh
[ -x build/experiments/pingpong_client ] || fail "build/experiments/pingpong_client missing (make)"

out=$("$KXRUN" experiments/vtime_pingpong.lua 5 100000 500 signal 2>&1); rc=$?
expect_eq "$rc" 0 "vtime_pingpong exit ($out)"
expect_match "$out" "client exit 0" "pingpong client status"
expect_eq "$(printf '%s\n' "$out" | grep -Ec '^  rtt +[0-9]+ +[0-9.]+ us virtual$')" 5 "rtt lines"
expect_match "$out" "median rtt: dilated [0-9.]+ us virtual, plain [0-9.]+ us real" "median line"

out=$("$KXRUN" experiments/kronos_orchestrator.lua 200 2>&1); rc=$?
expect_eq "$rc" 0 "kronos_orchestrator exit ($out)"
expect_match "$out" "3 tracers registered and frozen" "registration"
expect_match "$out" "virtual time 200.000 ms" "virtual time after progressBy"
for i in 1 2 3; do expect_match "$out" "tracer $i \(.*\) exit 0" "tracer $i status"; done
# the server's port lies outside the kernel's ephemeral range: a client's
# port there in TIME_WAIT refused the server's bind now and then
port=$(printf '%s\n' "$out" | sed -n 's/^tracer 1 (.*pingpong_server \([0-9]*\)).*/\1/p')
read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
[ -n "$port" ] && { [ "$port" -lt "$lo" ] || [ "$port" -gt "$hi" ]; } ||
	fail "server port '$port' is in the ephemeral range $lo-$hi"
expect_match "$out" "\| server: client closed after 5 reads" "server output"
expect_eq "$(printf '%s\n' "$out" | grep -Ec '^  \| rtt [0-9]+ [0-9]+$')" 5 "client rtt lines via its tracer"
exit 0
