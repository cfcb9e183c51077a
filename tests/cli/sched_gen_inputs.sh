# kxrun sched gen-inputs makes decodable synthetic videos for the ffmpeg
# profiles; a bad number is refused with a clear message.
. "$(dirname "$0")/lib.sh"
need ffmpeg
out=$("$KXRUN" sched gen-inputs --output "$T/in" --count 2 --duration 0.3 --size 160x90 2>&1) || fail "gen-inputs: $out"
expect_eq "$(ls "$T/in" | wc -l)" 2 "two inputs"
for f in "$T"/in/*.mp4; do
	frames=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$f")
	[ "${frames:-0}" -ge 5 ] || fail "$f has ${frames:-no} frames"
done
out=$("$KXRUN" sched gen-inputs --output "$T/in" --count lots 2>&1); expect_eq "$?" 2 "bad --count"
expect_match "$out" "'--count' wants an integer, got 'lots'" "bad --count message"
exit 0
