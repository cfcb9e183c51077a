# A lab library shared as a rock: `kxrun lab new` writes one, Debian's
# luarocks packs it into a rock and installs the rock into a tree of its
# own (--tree) and into the user's tree (--local); an experiment in another
# directory then requires it under kxrun (KXRUN_PATH, `luarocks path`, and
# with nothing set for ~/.luarocks).
. "$(dirname "$0")/lib.sh"
need luarocks
export HOME="$T/home"            # luarocks' cache and --local tree stay in $T
mkdir -p "$HOME" "$T/src" "$T/elsewhere"
LR="luarocks --lua-version 5.4"

cd "$T/src" || fail "cd"
"$KXRUN" lab new labkit >/dev/null || fail "kxrun lab new"
cd labkit || fail "cd labkit"
out=$($LR make --pack-binary-rock labkit-0.1-1.rockspec 2>&1) || fail "luarocks make --pack-binary-rock: $out"
[ -s labkit-0.1-1.all.rock ] || fail "no rock: $out"
out=$($LR --tree "$T/tree" install labkit-0.1-1.all.rock 2>&1) || fail "luarocks install --tree: $out"
[ -s "$T/tree/share/lua/5.4/labkit/timing.lua" ] || fail "the rock's modules are not in the tree"

cat > "$T/elsewhere/exp.lua" <<'EOF'
local lab = require "kx.lab"
local labkit = require "labkit"
local exp = lab.experiment{ name = "elsewhere", out = false, reps = 2, warmup = 0, metrics = { time = "ms" } }
exp:run{ measure = function() return assert(labkit.timing.run_ms{ "true" }) end }
print("labkit " .. labkit.version .. " from " .. package.searchpath("labkit", package.path))
EOF
cd "$T/elsewhere" || fail "cd"
out=$("$KXRUN" exp.lua 2>&1) && fail "labkit found with no tree given: $out"
expect_match "$out" "module 'labkit' not found" "without the tree"

out=$(KXRUN_PATH="$T/tree/share/lua/5.4" "$KXRUN" exp.lua 2>&1) || fail "KXRUN_PATH: $out"
expect_match "$out" "labkit 0.1 from $T/tree/share/lua/5.4/labkit/init.lua" "KXRUN_PATH to the tree"
expect_match "$out" "time \(ms\)" "the experiment's summary"

out=$(eval "$($LR --tree "$T/tree" path)" && "$KXRUN" exp.lua 2>&1) || fail "luarocks path: $out"
expect_match "$out" "labkit 0.1 from $T/tree/share/lua/5.4/labkit/init.lua" "eval \$(luarocks path)"

out=$($LR --local install "$T/src/labkit/labkit-0.1-1.all.rock" 2>&1) || fail "luarocks install --local: $out"
out=$("$KXRUN" exp.lua 2>&1) || fail "~/.luarocks: $out"
expect_match "$out" "labkit 0.1 from $HOME/.luarocks/share/lua/5.4/labkit/init.lua" "the user's tree"
exit 0
