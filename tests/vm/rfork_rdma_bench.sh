#!/bin/sh
# Benchmarks of kx.rfork's RDMA transport against its TCP transport, in one
# guest (Soft-RoCE on lo under QEMU TCG: absolute times mean little, the
# ratios are the figures), runs of the two interleaved, medians of REPS:
#   - a child touching 1%, 10%, 100% of a 64 MiB and a 256 MiB parent's
#     heap: us per page (tests/rfork/rfork_basic hold/resume);
#   - the holder's CPU time (holder + its RDMA agent, from schedstat) per
#     MiB served to a child touching 100%, and the agent's one-time copy and
#     registration;
#   - resume latency to the child's first Lua statement (a Lua parent with
#     64 MiB of strings; kxrun rfork resume started from a Lua driver);
#   - experiments/rdma_rc_connection.lua: RC connection set-up and READ
#     latency/throughput, 4 KiB to 1 MiB, beside TCP.
# RFORK_BENCH_REPS (default 5) sets REPS.
#
# On a machine with a real RDMA NIC (outside the VM), from the repository
# root after make and make test's build of build/tests/rfork_basic:
#   RFORK_NIC=1 RFORK_LISTEN=NIC_IP:0 ROOT=$PWD KXRUN=$PWD/kxrun \
#       sh tests/vm/rfork_rdma_bench.sh
# (parent and children on that machine, through the NIC's loopback;
# KXRUN_RFORK_RDMA_DEVICE=NAME:PORT:GID picks the port).
# vm-mode: bench
# vm-timeout: 2300
# vm-modules: crc32_generic rdma_rxe
# vm-files: tests/vm/rfork_lib.sh build/tests/rfork_basic experiments/rdma_rc_connection.lua /usr/bin/rdma /usr/lib/x86_64-linux-gnu/libibverbs.so.1 /usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so /etc/libibverbs.d/rxe.driver
ROOT=${ROOT:-/kx} KXRUN=${KXRUN:-/kx/kxrun}
. "$ROOT/tests/vm/bed/lib.sh"
. "$ROOT/tests/vm/rfork_lib.sh"
cd "$ROOT" || exit 1
REPS=${RFORK_BENCH_REPS:-5}
export RFORK_LISTEN=${RFORK_LISTEN:-127.0.0.1:0}
rxe_up

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
cpu_ns() { s=0; for p in "$@"; do s=$((s + $(cut -d' ' -f1 "/proc/$p/schedstat"))); done; echo $s; }

for mb in 64 256; do
	mkfifo "$T/h$mb.in"
	RFORK_TRANSPORT=rdma build/tests/rfork_basic hold $mb < "$T/h$mb.in" > "$T/h$mb.out" 2> "$T/h$mb.err" &
	hp=$!
	exec 7> "$T/h$mb.in"
	i=0; while [ ! -s "$T/h$mb.out" ]; do i=$((i+1)); [ $i -lt 3000 ] || fail "parent $mb: $(cat "$T/h$mb.err")"; sleep 0.1; done
	read -r A I K < "$T/h$mb.out"
	holder=$(sed -n 's/^holder \([0-9]*\).*/\1/p' "$T/h$mb.err")
	i=0; while [ -z "$holder" ]; do i=$((i+1)); [ $i -lt 100 ] || fail "no holder line"; sleep 0.1; holder=$(sed -n 's/^holder \([0-9]*\).*/\1/p' "$T/h$mb.err"); done
	agent=$(children_of "$holder")
	[ -n "$agent" ] || fail "the holder has no RDMA agent: $(cat "$T/h$mb.err")"
	echo "rfork rdma bench: $mb MiB parent; agent's copy and registration took $(( $(cpu_ns $agent) / 1000000 )) ms of CPU"
	for pct in 1 10 100; do
		: > "$T/rdma.us"; : > "$T/tcp.us"; : > "$T/rdma.cpu"; : > "$T/tcp.cpu"
		r=0
		while [ $r -lt $REPS ]; do
			r=$((r + 1))
			for t in rdma tcp; do
				before=$(cpu_ns $holder $agent)
				out=$(echo $pct | RFORK_TRANSPORT=$t build/tests/rfork_basic resume "$A" "$I" "$K" 2> "$T/c.err") ||
					fail "$t child ($mb MiB, $pct%): $(cat "$T/c.err")"
				after=$(cpu_ns $holder $agent)
				grep -q "over $t" "$T/c.err" || fail "the $t child went over something else: $(cat "$T/c.err")"
				echo "$out" | awk '/^touched/ { if ($2 > 0) printf "%.3f\n", $5 * 1e6 / $2 }' >> "$T/$t.us"
				echo "$out" | awk -v ns=$((after - before)) '/^touched/ { if ($2 > 0) printf "%.4f\n", ns / 1e6 / ($2 * 4096 / 1048576) }' >> "$T/$t.cpu"
			done
		done
		ru=$(median < "$T/rdma.us"); tu=$(median < "$T/tcp.us")
		echo "rfork touch $pct% of $mb MiB: rdma $ru us/page, tcp $tu us/page; tcp/rdma $(awk -v a=$tu -v b=$ru 'BEGIN { printf "%.2fx", a / b }')"
		if [ $pct = 100 ]; then
			rc=$(median < "$T/rdma.cpu"); tc=$(median < "$T/tcp.cpu")
			echo "rfork holder CPU per MiB served ($mb MiB, 100%): rdma $rc ms, tcp $tc ms (holder + agent, schedstat)"
		fi
	done
	exec 7>&-
	wait $hp
done

echo "-- resume latency to the first Lua statement (64 MiB Lua parent)"
cat > "$T/lat_parent.lua" <<'LUA'
local rfork = require "kx.rfork"
local big, s = {}, ("x"):rep(4096)
while #s < (1 << 20) do s = s .. s end
for i = 1, 64 do big[i] = s:sub(1, -8) .. ("%07d"):format(i) end
local h = assert(rfork.prepare{ listen = os.getenv("RFORK_LISTEN"), transport = "rdma" })
if h.child then
	print(("%.6f"):format(kx.time()))
	os.exit(0)
end
while h.rdma == "starting" do kx.sleep(0.01) end
print(h.address, h.id, h.key, h.rdma)
io.stdout:flush()
io.read("a")
LUA
cat > "$T/lat_driver.lua" <<'LUA'
local reps, A, I, K = tonumber(arg[1]), arg[2], arg[3], arg[4]
local lat = { rdma = {}, tcp = {} }
for _ = 1, reps do
	for _, t in ipairs{ "rdma", "tcp" } do
		local t0 = kx.time()
		local code, out, err = kx.exec{ kx.exe, "rfork", "resume", "-t", t, A, I, K }
		assert(code == 0, err)
		lat[t][#lat[t] + 1] = (tonumber(out) - t0) * 1e3
	end
end
local function median(xs) table.sort(xs) local n = #xs return n % 2 == 1 and xs[(n + 1) // 2] or (xs[n // 2] + xs[n // 2 + 1]) / 2 end
local r, t = median(lat.rdma), median(lat.tcp)
print(("rfork resume to the first Lua statement: rdma %.1f ms, tcp %.1f ms (medians of %d); rdma/tcp %.2fx"):format(r, t, reps, r / t))
LUA
mkfifo "$T/lp.in"
"$KXRUN" "$T/lat_parent.lua" < "$T/lp.in" > "$T/lp.out" 2> "$T/lp.err" &
lp=$!
exec 7> "$T/lp.in"
i=0; while [ ! -s "$T/lp.out" ]; do i=$((i+1)); [ $i -lt 3000 ] || fail "Lua parent: $(cat "$T/lp.err")"; sleep 0.1; done
read -r A I K S < "$T/lp.out"
expect_eq "$S" ready "the Lua parent's agent"
"$KXRUN" "$T/lat_driver.lua" $((REPS * 3)) "$A" "$I" "$K" || fail "resume latency driver"
exec 7>&-
wait $lp

echo "-- experiments/rdma_rc_connection.lua"
KXRUN_PROGRESS=0 "$KXRUN" experiments/rdma_rc_connection.lua --reps $REPS --connections 10 \
	--reads 100 --image 32M --listen "$RFORK_LISTEN" --out "$T/rc" --no-report || fail "rdma_rc_connection"
rxe_down
exit 0
