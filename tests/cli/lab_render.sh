# The HTML reports and each chart kind, rendered by headless Chromium: the
# page loads without a console error and the screenshot is not blank (the
# PNG decoded with Python's zlib: enough pixels that are not the background,
# in several colours).  Two controls show that both checks can fail.
. "$(dirname "$0")/lib.sh"
need chromium python3

# shoot FILE PNG: renders FILE (an SVG file at its own size), prints the
# console lines Chromium logged
shoot() {
	local profile size=1100,1400
	case $1 in *.svg) size=$(sed -n '1s/^<svg[^>]* width="\([0-9]*\)" height="\([0-9]*\)".*/\1,\2/p' "$1") ;; esac
	profile=$(mktemp -d "$T/chromium.XXXXXX")
	timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
		--disable-background-networking --disable-component-update --disable-sync \
		--user-data-dir="$profile" --enable-logging=stderr --v=0 --hide-scrollbars \
		--window-size="$size" --screenshot="$2" "file://$1" 2>"$profile.log" >/dev/null
	local rc=$?
	[ "$rc" -eq 0 ] || { echo "chromium exit $rc: $(tail -5 "$profile.log")"; return; }
	grep -a ':CONSOLE' "$profile.log"
	rm -rf "$profile" "$profile.log"
}

# not_blank PNG: exit 0 when at least 1% of the pixels differ from the
# corner's colour and there are at least 3 colours
not_blank() {
	/usr/bin/python3 - "$1" <<'EOF'
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat = 8, b""
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
assert depth == 8 and ctype in (2, 6), f"unexpected PNG format {depth}/{ctype}"
bpp = 3 if ctype == 2 else 4
raw, stride = zlib.decompress(idat), w * bpp
prev, rows, i = bytearray(stride), [], 0
for _ in range(h):
    f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride]); i += 1 + stride
    for x in range(stride):
        a = line[x - bpp] if x >= bpp else 0
        b = prev[x]
        c = prev[x - bpp] if x >= bpp else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    rows.append(bytes(line)); prev = line
bg = rows[0][:3]
pixels = [r[x:x + 3] for r in rows for x in range(0, stride, bpp)]
other = sum(1 for p in pixels if p != bg)
colours = len(set(pixels))
print(f"{w}x{h}: {other / len(pixels):.1%} not background, {colours} colours")
sys.exit(0 if other >= 0.01 * len(pixels) and colours >= 3 else 1)
EOF
}

# the controls: a script error is seen, a white page is blank
printf '<!DOCTYPE html><html><body><p>x</p><script>no_such_function()</script></body></html>' > "$T/error.html"
out=$(shoot "$T/error.html" "$T/error.png")
expect_match "$out" "no_such_function is not defined" "control: a console error is detected"
printf '<!DOCTYPE html><html><body style="background:#fff"></body></html>' > "$T/white.html"
out=$(shoot "$T/white.html" "$T/white.png")
[ -s "$T/white.png" ] || fail "control: no screenshot ($out)"
not_blank "$T/white.png" >/dev/null && fail "control: a white page passed as not blank"

# an experiment: a numeric sweep of two systems (line, CDF, time series)
# and a categorical one (bar)
cat > "$T/exp.lua" <<'EOF'
local lab = require "kx.lab"
local exp = lab.experiment{ name = "spawn", about = "kx.exec of a program against sh -c",
	params = { { "n", type = "int", default = "1,4,16", list = true, help = "programs per run" },
	           { "program", type = "string", default = "true", list = true, help = "the program" } },
	metrics = { time = "ms" }, reps = 5, warmup = 1 }
local function timed(argv_of)
	return function(p)
		local t0 = kx.now()
		for _ = 1, p.n do assert(kx.exec(argv_of(p)) == 0) end
		return (kx.now() - t0) * 1e3
	end
end
exp:run{ systems = {
	{ "kx.exec", timed(function(p) return { p.program } end) },
	{ "sh -c", timed(function(p) return { "sh", "-c", p.program } end) },
} }
EOF
"$KXRUN" "$T/exp.lua" --out "$T/line" >/dev/null 2>&1 || fail "the numeric sweep"
"$KXRUN" "$T/exp.lua" --out "$T/bar" --n 2 --program true,date --reps 3 >/dev/null 2>&1 || fail "the categorical sweep"

# a kx.trace run
"$KXRUN" trace exec --dir "$T/trace" --interval-ms 20 -- sh -c 'i=0; while [ $i -lt 40000 ]; do i=$((i+1)); done' \
	>/dev/null 2>&1 || fail "trace exec"
"$KXRUN" trace exec --dir "$T/trace" --interval-ms 20 -- sleep 0.1 >/dev/null 2>&1 || fail "trace exec"
"$KXRUN" report "$T/trace" >/dev/null || fail "report of the trace run"

pages="$T/line/report.html $T/bar/report.html $T/trace/report.html
$T/line/plots/time_ms-line.svg $T/bar/plots/time_ms-bar.svg $T/line/plots/time_ms-cdf.svg
$T/line/plots/time_ms-time.svg $T/trace/plots/trace-gantt.svg $T/trace/plots/trace-cpu.svg"
i=0
for page in $pages; do
	i=$((i + 1))
	[ -s "$page" ] || fail "$page was not written"
	out=$(shoot "$page" "$T/shot$i.png")
	[ -z "$out" ] || fail "$page: $out"
	res=$(not_blank "$T/shot$i.png") || fail "$page renders blank ($res)"
	echo "$page: $res"
done
exit 0
