#!/bin/bash
# kxrun's Parquet writer, read back by hyparquet (an independent reader):
# every codec, page version, encoding and repetition, several row groups;
# every value, the schema and the statistics compared.  Then every file read
# again by parquet-wasm (Apache arrow-rs) and compared with hyparquet's rows.
set -eu
. "$(dirname "$0")/lib.sh"
: "${BUILD:=build}"
case $BUILD in /*) B=$BUILD ;; *) B=$ROOT/$BUILD ;; esac
export KXRUN_NODE_DIR=$B/node
for codec in none snappy zstd; do
for pagev in 1 2; do
for dict in 0 1; do
for opt in 0 1; do
	f=$T/$codec-$pagev-$dict-$opt.parquet
	"$B/tests/pqgen" "$f" $codec $pagev $dict $opt 2500 1000
	node "$ROOT/tests/opendc/read.mjs" "$f" > "$f.json"
	python3 - "$f.json" $codec $dict $opt <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
codec = {"none": "UNCOMPRESSED", "snappy": "SNAPPY", "zstd": "ZSTD"}[sys.argv[2]]
dict_, opt = sys.argv[3] == "1", sys.argv[4] == "1"
where = sys.argv[1]
def check(cond, what):
    if not cond:
        sys.exit(f"{where}: {what}")
rows = d["rows"]
check(d["num_rows"] == 2500 and len(rows) == 2500, "row count")
names = [s["name"] for s in d["schema"][1:]]
check(names == ["i32", "i64", "f64", "str"], f"names {names}")
types = [s["type"] for s in d["schema"][1:]]
check(types == ["INT32", "INT64", "DOUBLE", "BYTE_ARRAY"], f"types {types}")
rep = "OPTIONAL" if opt else "REQUIRED"
check(all(s["repetition_type"] == rep for s in d["schema"][1:]), "repetition")
check(d["schema"][4]["converted_type"] == "UTF8" and d["schema"][4]["logical_type"] == "STRING", "string annotation")
check([rg["num_rows"] for rg in d["row_groups"]] == [1000, 1000, 500], "row groups")
for rg in d["row_groups"]:
    for c in rg["columns"]:
        check(c["codec"] == codec, f"codec {c['codec']}")
        check(c["dictionary"] == dict_, "dictionary page")
        check(("RLE_DICTIONARY" in c["encodings"]) == dict_, f"encodings {c['encodings']}")
for i, r in enumerate(rows):
    if opt and i % 3 == 1:
        check(r == {"i32": None, "i64": None, "f64": None, "str": None}, f"row {i}: {r}")
        continue
    want = {"i32": i * 7 - 50, "i64": i * 1000000007, "f64": i * 0.25 - 3,
            "str": f"välue-{i % 13}"}
    check(r == want, f"row {i}: {r} != {want}")
# statistics of the first row group
st = d["row_groups"][0]["columns"]
check(st[0]["statistics"]["min"] == -50 and st[0]["statistics"]["max"] == 999 * 7 - 50, f"i32 stats {st[0]['statistics']}")
check(st[2]["statistics"]["min"] == -3 and st[2]["statistics"]["max"] == 999 * 0.25 - 3, "f64 stats")
check(st[3]["statistics"]["null_count"] == (333 if opt else 0), f"null_count {st[3]['statistics']}")
PY
done; done; done; done
# arrow-rs reads the same rows (one node process for all files).
files=$(ls "$T"/*.parquet)
# shellcheck disable=SC2086
node "$ROOT/tests/opendc/read-arrow.mjs" $files > "$T/arrow.jsonl"
python3 - "$T/arrow.jsonl" $files <<'PY'
import json, sys
arrow = [json.loads(l) for l in open(sys.argv[1])]
files = sys.argv[2:]
assert len(arrow) == len(files), "arrow-rs read fewer files"
for a, f in zip(arrow, files):
    h = json.load(open(f + ".json"))
    if a["rows"] != h["rows"]:
        sys.exit(f"{f}: arrow-rs and hyparquet disagree")
    opt = f.endswith("-1.parquet")
    if [x["nullable"] for x in a["fields"]] != [opt] * 4:
        sys.exit(f"{f}: nullability {a['fields']}")
PY
# Every page's CRC, checked outside kxrun (hyparquet's header decoder,
# Node's zlib CRC-32); then a byte of a page flipped must be caught.
# shellcheck disable=SC2086
node "$ROOT/tests/opendc/check-crc.mjs" $files > "$T/crc.jsonl"
python3 - "$T/crc.jsonl" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    if d["pages"] < 3:
        sys.exit(f"{d['file']}: only {d['pages']} pages checked")
PY
f=$(ls "$T"/snappy-1-1-0.parquet)
off=$(python3 -c 'import json,sys; print(next(d["first_data_offset"] for d in map(json.loads, open(sys.argv[1])) if d["file"] == sys.argv[2]))' "$T/crc.jsonl" "$f")
python3 - "$f" "$off" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[int(sys.argv[2])] ^= 0x01
open(sys.argv[1] + ".bad", "wb").write(b)
PY
if node "$ROOT/tests/opendc/check-crc.mjs" "$f.bad" > /dev/null 2> "$T/crc.err"; then
	echo "FAIL: a flipped page byte passed the CRC check"; exit 1
fi
grep -q "CRC .* in the header" "$T/crc.err" || { cat "$T/crc.err"; echo "FAIL: the CRC check failed for another reason"; exit 1; }
# An empty file is a valid file.
"$B/tests/pqgen" "$T/empty.parquet" zstd 1 1 1 0 1000
node "$ROOT/tests/opendc/read.mjs" "$T/empty.parquet" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["num_rows"] == 0 and d["rows"] == [] and d["row_groups"] == [], d'
echo ok
