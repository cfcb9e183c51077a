# The repository stands on its own: no reference to a contract users do not
# have, a licence, and every relative link of the manuals leads to a file.
. "$(dirname "$0")/lib.sh"
cd "$ROOT" || fail "no repository at $ROOT"

refs=$(grep -rIn -E 'SPEC\.md|SPEC §|SPEC section' --exclude-dir='build*' --exclude-dir=.git \
	--exclude-dir=node_modules . | grep -v '^./tests/cli/host_docs.sh:')
[ -z "$refs" ] || fail "references to a SPEC users do not have: $refs"

[ -s LICENSE ] || fail "no LICENSE"
grep -q 'Permission is hereby granted' LICENSE || fail "LICENSE is not the MIT licence"
[ -s docs/MANUAL.md ] || fail "no docs/MANUAL.md"
grep -q 'docs/MANUAL.md' README.md || fail "README.md does not point to docs/MANUAL.md"

# [text](target) links that are not URLs or anchors resolve from their file
for md in README.md docs/*.md bindings/*/README.md; do
	dir=$(dirname "$md")
	grep -oE '\]\([^)#]+(#[^)]*)?\)' "$md" | sed -E 's/^\]\(//; s/\)$//; s/#.*//' |
	while read -r target; do
		case $target in http://*|https://*|mailto:*|'') continue ;; esac
		[ -e "$dir/$target" ] || { echo "$md: broken link $target"; exit 1; }
	done || fail "broken links"
done

# the manual's figures are the ones the binary has
expect_eq "$("$KXRUN" -e 'io.write(kx.json.max_depth)')" 2000 "kx.json.max_depth"
grep -q 'max_depth` = 2,000' docs/MANUAL.md || fail "docs/MANUAL.md does not give the JSON depth limit"
exit 0
