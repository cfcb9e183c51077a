# The REPL on a real terminal (a tmux pane), used as people use it: pasted
# blocks and long lines give what typing them gives, Ctrl-C cancels a line
# or clears the input, Tab completes, timers fire while the prompt waits,
# and the history is on disk and the terminal restored whichever way the
# session ends.
. "$(dirname "$0")/lib.sh"
need tty

S=$T/tmux.sock
trap 'tmux -S "$S" kill-server 2>/dev/null; rm -rf "$T"' EXIT
tm() { tmux -S "$S" "$@"; }

# start NAME [kxrun args]: kxrun in a fresh pane; once it ends, the pane
# shows its exit status and whether the terminal is back in cooked mode.
start() {
	local name=$1
	shift
	tm -f /dev/null new-session -d -s "$name" -x 200 -y 50 \
		"env HOME=$T KXRUN_HISTORY=$T/hist.$name $KXRUN $*; echo EXIT=\$?; \
		 echo MODES: \$(stty -a | tr ' ;' '\n\n' | grep -Ex -- '-?(icanon|echo)'); \
		 sleep 600"
	wait_for "$name" '^> ?$' "$name: the prompt"
}
screen() { tm capture-pane -p -J -S -10000 -t "$1" | grep -v '^$'; }
# wait_for NAME REGEX WHAT: polls the screen (no fixed sleeps: the host may
# be loaded), up to 30 s; wait_last: the same for its last line.
wait_for() {
	local i
	for i in $(seq 600); do
		screen "$1" | grep -Eq -- "$2" && return 0
		sleep 0.05
	done
	fail "$3: /$2/ never appeared; the screen ends with: $(screen "$1" | tail -8 | cut -c1-160)"
}
wait_last() {
	local i
	for i in $(seq 600); do
		screen "$1" | tail -1 | grep -Eq -- "$2" && return 0
		sleep 0.05
	done
	fail "$3: /$2/ never came last; the screen ends with: $(screen "$1" | tail -8 | cut -c1-160)"
}
type_line() { tm send-keys -t "$1" -l "$2"; tm send-keys -t "$1" Enter; }
paste_file() { tm load-buffer -b p "$2"; tm paste-buffer -d -b p -t "$1"; }
kxrun_pid() { pgrep -P "$(tm list-panes -t "$1" -F '#{pane_pid}')" -x kxrun; }

# -- pastes and long lines ----------------------------------------------------
start paste

# the issue's three lines in one burst: none is lost, the prompt comes back
printf 'for i = 1, 2 do\nprint("three-line " .. i)\nend\n' > "$T/three.lua"
paste_file paste "$T/three.lua"
wait_for paste '^three-line 2$' "three-line paste ran to its last line"
type_line paste 'print("after-three")'
wait_for paste '^after-three$' "prompt back after the three-line paste"

# 500 lines in one write give what the same lines give read one by one
{
	echo 'acc = {}'
	for i in $(seq 1 498); do echo "acc[#acc + 1] = $i * 3"; done
	echo 'local s = 0 for _, v in ipairs(acc) do s = s + v end print(("sum500 %d %d"):format(#acc, s))'
} > "$T/five.lua"
expected=$("$KXRUN" -i < "$T/five.lua" | grep '^sum500')
expect_eq "$expected" "sum500 498 $((3 * 498 * 499 / 2))" "500 lines read from a pipe"
paste_file paste "$T/five.lua"
wait_for paste "^$expected\$" "500-line paste gives what the pipe gave"

# a single 64 KB line in one write, then an 8 KB and a 1,500-character one
awk 'BEGIN { printf "big = \""; for (i = 0; i < 65536; i++) printf "x"; print "\"" }' > "$T/big.lua"
paste_file paste "$T/big.lua"
type_line paste 'print("big " .. #big)'
wait_for paste '^big 65536$' "64 KB line"
awk 'BEGIN { printf "mid = \""; for (i = 0; i < 8192; i++) printf "m"; print "\"" }' > "$T/mid.lua"
paste_file paste "$T/mid.lua"
type_line paste 'print("mid " .. #mid)'
wait_for paste '^mid 8192$' "8 KB line"
line=$(awk 'BEGIN { printf "t = \""; for (i = 0; i < 1500; i++) printf "%d", i % 10; printf "\"" }')
type_line paste "$line"
type_line paste 'print("typed " .. #t .. " " .. t:sub(1495))'
wait_for paste '^typed 1500 456789$' "1,500-character typed line"
# (libedit's history file escapes blanks as \040)
[ "$(grep -c '^big' "$T/hist.paste")" = 1 ] && [ "$(grep '^big' "$T/hist.paste" | wc -c)" -gt 65536 ] ||
	fail "the 64 KB line is not whole in the history"

# -- Ctrl-C, completion, timers -----------------------------------------------
start keys
type_line keys 'print("sleeping") kx.sleep(100)'
wait_for keys '^sleeping$' "the line to cancel runs"
tm send-keys -t keys C-c
wait_for keys '^\^?C?interrupted$' "Ctrl-C cancels the running line"
wait_last keys '^> ?$' "prompt after Ctrl-C cancelled the line"
tm send-keys -t keys -l 'print("dropped-input")'
wait_last keys '^> print\("dropped-input"\)$' "input typed at the prompt"
tm send-keys -t keys C-c
wait_last keys '^> ?$' "Ctrl-C at the prompt gives a fresh prompt"
type_line keys 'print("after-ctrl-c")'
wait_for keys '^after-ctrl-c$' "prompt after Ctrl-C at the prompt"
screen keys | grep -q '^dropped-input$' && fail "Ctrl-C at the prompt ran the input"

tm send-keys -t keys -l 'kx.spa'
tm send-keys -t keys Tab
wait_for keys '^> kx\.spawn$' "Tab completes kx.spa"
tm send-keys -t keys -l ' ~= nil and "completed" or "not"'
tm send-keys -t keys Enter
wait_for keys '^"completed"$' "the completed line runs"
tm send-keys -t keys -l 'kx.s'
tm send-keys -t keys Tab
wait_for keys 'kx\.sleep +kx\.spawn' "Tab lists the candidates"
tm send-keys -t keys C-c
wait_last keys '^> ?$' "Ctrl-C after the candidates"

type_line keys 'n = 0; tick = kx.every(0.02, function() n = n + 1; if n == 5 then print("fired " .. n) end end)'
wait_for keys 'fired 5$' "a timer fires while the prompt waits"

# an error value whose __tostring fails is reported and the session goes on
type_line keys 'bad = setmetatable({}, {__tostring = function() error("tostring boom") end})'
type_line keys 'error(bad)'
wait_for keys '__tostring failed: .*tostring boom' "error(bad) reported"
type_line keys 'print(bad)'
type_line keys 'bad'
wait_for keys '^\(a table value whose __tostring failed' "bad shown as a value"
type_line keys 'print("still-alive")'
wait_for keys '^still-alive$' "the REPL goes on after bad values"

# -- the history and the terminal, whichever way the session ends ------------
type_line keys 'print("via-ctrl-d")'
wait_for keys '^via-ctrl-d$' "line before Ctrl-D"
tm send-keys -t keys C-d
wait_for keys '^EXIT=0$' "Ctrl-D leaves with status 0"
wait_for keys '^MODES: icanon echo$' "terminal restored after Ctrl-D"
grep -q 'via-ctrl-d' "$T/hist.keys" || fail "history after Ctrl-D"
expect_eq "$(stat -c %a "$T/hist.keys")" 600 "the history file is private"

start exit
type_line exit 'print("via-exit")'
type_line exit 'os.exit(3)'
wait_for exit '^EXIT=3$' "os.exit(3) leaves with status 3"
wait_for exit '^MODES: icanon echo$' "terminal restored after os.exit"
grep -q 'via-exit' "$T/hist.exit" || fail "history after os.exit"

start term
type_line term 'print("via-term")'
wait_for term '^via-term$' "line before SIGTERM"
tm send-keys -t term -l 'half typed'
kill -TERM "$(kxrun_pid term)"
wait_for term '^EXIT=143$' "SIGTERM at the prompt: status 143"
wait_for term '^MODES: icanon echo$' "terminal restored after SIGTERM at the prompt"
grep -q 'via-term' "$T/hist.term" || fail "history after SIGTERM"

start kill
type_line kill 'print("via-kill")'
wait_for kill '^via-kill$' "line before SIGKILL"
kill -KILL "$(kxrun_pid kill)"
wait_for kill '^EXIT=137$' "SIGKILL"
grep -q 'via-kill' "$T/hist.kill" || fail "history after SIGKILL"
ls "$T" | grep -q 'tmp' && fail "a temporary history file was left: $(ls "$T")"
for s in paste keys exit term kill; do   # sanitizer builds (make asan) report here
	screen $s | grep -E 'runtime error|Sanitizer' && fail "sanitizer report in the $s pane"
done
exit 0
