#!/bin/sh
# kx.rfork over RDMA when things break: a queue pair error mid-run (the
# holder's agent killed under a running child: the child is killed with a
# message, the holder goes on over TCP); no RDMA device (auto falls back to
# TCP and says why, rdma is an error before anything is resumed, a parent
# preparing with rdma is refused, one with auto serves over TCP); a port
# down (refused, naming it); the device deleted while a child runs (it
# finishes or is killed, never hangs).
# vm-timeout: 600
# vm-modules: crc32_generic rdma_rxe dummy
# vm-files: tests/vm/rfork_lib.sh tests/rfork/parent.lua /usr/bin/rdma /usr/sbin/ip /usr/lib/x86_64-linux-gnu/libibverbs.so.1 /usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so /etc/libibverbs.d/rxe.driver
. /kx/tests/vm/bed/lib.sh
. /kx/tests/vm/rfork_lib.sh
rxe_up

echo "-- a queue pair error mid-run: the holder's agent killed under a running child"
RFORK_TRANSPORT=rdma parent_start p1 wait
KXRUN_RFORK_TIMEOUT_MS=5000 resume_waiting c1 --transport rdma "$A" "$I" "$K"
agent=$(children_of "$HOLDER")
[ -n "$agent" ] || fail "the holder $HOLDER has no agent"
kill -9 $agent
start=$(date +%s)
echo go >&8
exec 8>&-
wait $CHILD
expect_eq "$?" 137 "child 1 killed after its queue pair's peer went"
err=$(cat "$T/c1.err")
# the holder tells its RDMA children that its agent is gone
expect_match "$err" "RDMA agent is gone.*cannot be reached, killing the child" "child 1's message"
echo "$err" | grep "killing"
took=$(( $(date +%s) - start ))
echo "child 1 ended $took s after its request"
[ $took -lt 5 ] || fail "child 1 took $took s to be told (its request timeout is 5 s)"
# the holder goes on over TCP, and says why there is no RDMA
out=$(echo go | /kx/kxrun rfork resume --transport auto "$A" "$I" "$K" 2>&1)
expect_eq "$?" 0 "auto child after the agent died: $out"
check_child "$out"
expect_match "$out" "$(printf 'transport\ttcp\tthe holder offers no RDMA: the holder.s RDMA agent exited')" \
	"auto child's transport after the agent died"
out=$(/kx/kxrun rfork resume --transport rdma "$A" "$I" "$K" 2>&1 < /dev/null)
expect_eq "$?" 1 "rdma child after the agent died"
expect_match "$out" "RDMA agent exited" "rdma child's message after the agent died"

echo "-- no RDMA device: auto falls back to TCP, rdma is refused before resuming"
rxe_down   # nothing has it open any more
out=$(echo go | /kx/kxrun rfork resume --transport auto "$A" "$I" "$K" 2>&1)
expect_eq "$?" 0 "auto child without a device: $out"
check_child "$out"
expect_match "$out" "$(printf 'transport\ttcp\tno RDMA device')" "auto child's transport"
out=$(/kx/kxrun rfork resume --transport rdma "$A" "$I" "$K" 2>&1 < /dev/null)
expect_eq "$?" 1 "rdma child without a device"
expect_match "$out" "transport rdma: no RDMA device" "rdma child's message"
parent_stop
expect_match "$(cat "$T/p1.out")" "$(printf 'children\t5')" "parent 1's count (every hello counts)"

out=$(RFORK_TRANSPORT=rdma /kx/kxrun /kx/tests/rfork/parent.lua /dev/null 2>&1 < /dev/null)
expect_eq "$?" 1 "a parent preparing with rdma without a device"
expect_match "$out" "rfork.prepare: transport rdma: no RDMA device" "its message"
RFORK_TRANSPORT=auto parent_start p2
out=$(/kx/kxrun rfork resume "$A" "$I" "$K" 2>&1)
expect_eq "$?" 0 "child of an auto parent without a device: $out"
check_child "$out"
expect_match "$out" "$(printf 'transport\ttcp\tthe parent prepared for TCP only')" "its transport"
parent_stop

echo "-- a port down"
vm_modprobe dummy
/usr/sbin/ip link add kxdummy0 type dummy || fail "ip link add kxdummy0 type dummy"
rdma link add rxe1 type rxe netdev kxdummy0 || fail "rdma link add rxe1"
out=$(KXRUN_RFORK_RDMA_DEVICE=rxe1 RFORK_TRANSPORT=rdma /kx/kxrun /kx/tests/rfork/parent.lua /dev/null 2>&1 < /dev/null)
expect_eq "$?" 1 "a parent preparing with rdma on a port down"
expect_match "$out" "rxe1 port 1 is (DOWN|INIT|not active)" "its message"
echo "$out" | head -3
rdma link delete rxe1
/usr/sbin/ip link del kxdummy0

echo "-- the device deleted while a child runs: it finishes or is killed, never hangs"
rxe_up
RFORK_TRANSPORT=rdma parent_start p3 wait
resume_waiting c3 --transport rdma "$A" "$I" "$K"
# rxe's unregistration waits for every process that has the device open
rdma link delete rxe0 7>&- 8>&- &   # (not holding the fifos)
del=$!
sleep 1
echo go >&8
exec 8>&-
wait_bounded $CHILD 60 "child 3"
wait $CHILD
rc=$?
case $rc in
0) check_child "$(cat "$T/c3.out")" ;;
137) expect_match "$(cat "$T/c3.err")" "cannot be reached, killing the child" "child 3's message" ;;
*) fail "child 3 exited $rc: $(cat "$T/c3.err")" ;;
esac
echo "child 3: exit $rc"
parent_stop
i=0; while kill -0 $del 2>/dev/null; do i=$((i+1)); [ $i -lt 300 ] || fail "rdma link delete hangs"; sleep 0.1; done
[ -e /sys/class/infiniband/rxe0 ] && fail "rxe0 is still there"
exit 0
