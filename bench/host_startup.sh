# Start-up: `kxrun -e ''` against `lua5.4 -e ''` (goal: within 1.5x).
set -eu
N=${N:-200}
run() { local t0 t1; t0=$(date +%s%N); for _ in $(seq "$N"); do "$@"; done; t1=$(date +%s%N); echo $(( (t1 - t0) / N / 1000 )); }
command -v lua5.4 >/dev/null || { echo "lua5.4 missing (apt-get install lua5.4)"; exit 1; }
run lua5.4 -e '' >/dev/null; run "$KXRUN" -e '' >/dev/null   # warm the caches
lua=$(run lua5.4 -e '')
kx=$(run "$KXRUN" -e '')
printf 'start-up: kxrun -e "" %d us, lua5.4 -e "" %d us, ratio %.2fx (goal <= 1.5x)\n' \
	"$kx" "$lua" "$(echo "$kx / $lua" | bc -l)"
