#!/bin/sh
# scratch probe (not committed)
# vm-timeout: 200
# vm-modules: crc32_generic rdma_rxe
# vm-files: build/tests/rfork_basic /usr/bin/rdma /usr/lib/x86_64-linux-gnu/libibverbs.so.1 /usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so /etc/libibverbs.d/rxe.driver
. /kx/tests/vm/bed/lib.sh
vm_modprobe crc32_generic
vm_modprobe rdma_rxe
ulimit -l unlimited
rdma link add rxe0 type rxe netdev lo || fail "rdma link add"
mkfifo $T/in
RFORK_TRANSPORT=rdma build/tests/rfork_basic parent 16 /kx/kernel-release < $T/in > $T/out 2>$T/perr &
exec 7>$T/in
i=0; while [ ! -s $T/out ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done
cat $T/perr
read A I K < $T/out
echo "parent at $A"
KXRUN_RFORK_STATS=1 RFORK_TRANSPORT=rdma build/tests/rfork_basic resume $A $I $K; echo "rc=$?"
KXRUN_RFORK_STATS=1 RFORK_TRANSPORT=tcp build/tests/rfork_basic resume $A $I $K; echo "rc=$?"
exec 7>&-
wait
cat $T/out
rdma link delete rxe0
exit 0
