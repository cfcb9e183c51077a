#!/bin/sh
# kx.rfork over RDMA (Soft-RoCE on lo): a Lua parent prepared with
# transport "rdma" and 3 children resumed at once with --transport rdma see
# its prepare-time state and run Lua; their pages came by RDMA READ; a wrong
# key gets nothing; a parent gone before the resume, or while a child
# still fetches pages, ends the child with a message, never a hang.
# vm-timeout: 600
# vm-modules: crc32_generic rdma_rxe
# vm-files: tests/vm/rfork_lib.sh tests/rfork/parent.lua build/tests/rfork_basic /usr/bin/rdma /usr/lib/x86_64-linux-gnu/libibverbs.so.1 /usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so /etc/libibverbs.d/rxe.driver
. /kx/tests/vm/bed/lib.sh
. /kx/tests/vm/rfork_lib.sh
rxe_up

echo "-- 3 children at once over RDMA"
RFORK_TRANSPORT=rdma parent_start p1
for n in 1 2 3; do
	KXRUN_RFORK_STATS=1 /kx/kxrun rfork resume --transport rdma "$A" "$I" "$K" \
		> "$T/c$n.out" 2> "$T/c$n.err" &
	eval "pid$n=\$!"
done
seen=""
for n in 1 2 3; do
	eval "wait \$pid$n" || fail "child $n exited $?: $(cat "$T/c$n.err")"
	out=$(cat "$T/c$n.out")
	check_child "$out"
	expect_match "$out" "$(printf 'transport\trdma\trxe0')" "child $n's transport"
	seen="$seen $(echo "$out" | sed -n 's/^child\t//p')"
	# the stats line: pages came, none of them over TCP is not claimed;
	# the resume said it went over rdma
	expect_match "$(cat "$T/c$n.err")" "over rdma: rxe0" "child $n's resume line"
	# every page by RDMA READ (or known zero), none from the holder's CPU
	expect_match "$(cat "$T/c$n.err")" "over rxe0: [1-9][0-9]* pages by RDMA READ, [0-9]+ zeros, 0 over TCP" \
		"child $n's pages"
	cat "$T/c$n.err"
done
expect_eq "$(echo $seen | tr ' ' '\n' | sort | tr '\n' ' ')" "1 2 3 " "children's indexes"
parent_stop
expect_match "$(cat "$T/p1.out")" "$(printf 'children\t3')" "parent's count"

echo "-- a wrong key"
RFORK_TRANSPORT=rdma parent_start p2
out=$(/kx/kxrun rfork resume --transport rdma "$A" "$I" 00000000000000000000000000000000 2>&1)
rc=$?
expect_eq "$rc" 1 "exit status with a wrong key"
expect_match "$out" "wrong key" "message with a wrong key"
parent_stop
expect_match "$(cat "$T/p2.out")" "$(printf 'children\t0')" "parent's count after a wrong key"

echo "-- the parent gone before the resume"
RFORK_TRANSPORT=rdma parent_start p3 exit
wait $PARENT
exec 7>&-
i=0; while kill -0 "$HOLDER" 2>/dev/null; do i=$((i+1)); [ $i -lt 100 ] || fail "holder stays"; sleep 0.1; done
out=$(/kx/kxrun rfork resume --transport rdma "$A" "$I" "$K" 2>&1)
expect_eq "$?" 1 "exit status with the parent gone"
expect_match "$out" "cannot connect" "message with the parent gone"

echo "-- the parent killed while a child waits to touch its pages"
RFORK_TRANSPORT=rdma parent_start p4 wait
resume_waiting c4 --transport rdma "$A" "$I" "$K"
child=$CHILD
kill -9 $PARENT
wait $PARENT
exec 7>&-
i=0; while kill -0 "$HOLDER" 2>/dev/null; do i=$((i+1)); [ $i -lt 100 ] || fail "holder stays"; sleep 0.1; done
echo go >&8
exec 8>&-
wait_bounded $child 60 "child 4"
wait $child
rc=$?
expect_eq "$rc" 137 "child 4 killed (SIGKILL)"
expect_match "$(cat "$T/c4.err")" "cannot be reached, killing the child" "child 4's message"

echo "-- the parent killed during a transfer (64 MiB, C parent)"
mkfifo "$T/b.in"
printf 0123456789abcdef > "$T/b.data"
RFORK_TRANSPORT=rdma build/tests/rfork_basic parent 64 "$T/b.data" < "$T/b.in" > "$T/b.out" 2> "$T/b.err" &
bparent=$!
exec 7> "$T/b.in"
i=0; while [ ! -s "$T/b.out" ]; do i=$((i+1)); [ $i -lt 600 ] || fail "C parent: $(cat "$T/b.err")"; sleep 0.1; done
read -r A I K < "$T/b.out"
KXRUN_RFORK_READAHEAD=1 RFORK_TRANSPORT=rdma build/tests/rfork_basic resume "$A" "$I" "$K" \
	> "$T/b.cout" 2> "$T/b.cerr" &
child=$!
i=0; while ! grep -q "child arrived" "$T/b.cerr" 2>/dev/null; do
	i=$((i+1)); [ $i -lt 600 ] || fail "C child did not resume: $(cat "$T/b.cerr")"; sleep 0.1; done
kill -9 $bparent
wait $bparent
exec 7>&-
wait $child
rc=$?
# it was reading 16384 pages one per fault: killed with the message, or
# (had it been fast enough) done with the right data; never wrong data or a hang
case $rc in
137) expect_match "$(cat "$T/b.cerr")" "cannot be reached, killing the child" "C child's message" ;;
0) expect_match "$(cat "$T/b.cout")" "child 1 ok" "C child's data" ;;
*) fail "C child exited $rc: $(cat "$T/b.cerr")" ;;
esac
echo "C child: exit $rc"

rxe_down
exit 0
