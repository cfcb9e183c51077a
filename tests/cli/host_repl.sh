# The REPL: expressions print, statements continue over lines, errors do not
# end it, and the loop runs while it waits.
. "$(dirname "$0")/lib.sh"

out=$(printf 'x = 20\nx + 1\nfor i = 1, 2 do\n  print(i)\nend\n{1, 2, a = 3}\nerror("oops")\nprint("still here")\n' |
	"$KXRUN" -i 2>"$T/err")
expect_eq "$?" 0 "REPL exit status at EOF"
expect_eq "$out" "$(printf '21\n1\n2\n{1, 2, a = 3}\nstill here')" "REPL output"
expect_match "$(cat "$T/err")" 'stdin:1: oops' "REPL reports errors"

# a timer started at the prompt keeps firing while the REPL waits for input
out=$( { echo 'n = 0; timer = kx.every(0.05, function() n = n + 1 end)'; sleep 0.6; echo 'print(n >= 3, n)'; } |
	"$KXRUN" -i)
expect_match "$out" '^true' "timer fired while the REPL waited: $out"

# a line can block (it runs as a task)
out=$(printf 'kx.sleep(0.01)\nprint("slept")\n' | "$KXRUN" -i) ; expect_eq "$out" "slept" "blocking line"

# -i after a script: the script's globals are there
printf 'answer = 42\n' > "$T/s.lua"
out=$(echo 'print(answer)' | "$KXRUN" -i "$T/s.lua") ; expect_eq "$out" "42" "-i after a script"

# on a terminal (through script(1)): libedit prompt, tab completion, history
need tty
out=$( (sleep 0.5; printf 'print(6*7)\nkx.spaw\t\n'; sleep 0.5) |
	HOME=$T KXRUN_HISTORY= timeout 10 script -qec "$KXRUN" /dev/null | tr -d '\r')
expect_match "$out" '> print\(6\*7\)' "prompt on a terminal"
expect_match "$out" '^42$' "expression printed on a terminal"
expect_match "$(cat "$T/.kxrun_history")" '^kx\.spawn$' "tab completion reached the history"
expect_match "$(cat "$T/.kxrun_history")" '^print\(6\*7\)$' "history file written"
exit 0
