# Spawning: 1,000 /bin/true started concurrently and all reaped, through
# kx.spawn, against a sh loop of `/bin/true &` + `wait` (goal: faster).
set -eu
N=${N:-1000}
t0=$(date +%s%N)
sh -c "i=0; while [ \$i -lt $N ]; do /bin/true & i=\$((i+1)); done; wait"
t1=$(date +%s%N)
sh_ms=$(( (t1 - t0) / 1000000 ))
kx_ms=$("$KXRUN" -e "
local n, t0 = $N, kx.now()
local ps = {}
for i = 1, n do ps[i] = assert(kx.spawn{ '/bin/true' }) end
for i = 1, n do ps[i]:wait() end
print(math.floor((kx.now() - t0) * 1000 + 0.5))")
printf 'spawn %d x /bin/true: kxrun %d ms, sh loop %d ms, ratio %.2fx (goal < 1)\n' \
	"$N" "$kx_ms" "$sh_ms" "$(echo "$kx_ms / $sh_ms" | bc -l)"
