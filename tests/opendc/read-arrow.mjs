// read-arrow.mjs FILE... - dumps Parquet files as JSON, one line each, with parquet-wasm
// (Apache arrow-rs's parquet crate compiled to WebAssembly), a second
// reader kxrun did not write: { fields: [{name, type, nullable}], rows }.
// INT64 values print as numbers when exact, else as strings; timestamps
// as epoch ms.
import { readFileSync } from 'node:fs'
import { load, fail, printJSON } from './lib.mjs'

const paths = process.argv.slice(2)
if (!paths.length) fail('usage: node read-arrow.mjs FILE.parquet...', 2)
const pw = await load('parquet-wasm')
const { tableFromIPC } = await load('apache-arrow')
for (const path of paths) {
  const table = tableFromIPC(pw.readParquet(new Uint8Array(readFileSync(path))).intoIPCStream())
  const out = {
    fields: table.schema.fields.map(f => ({ name: f.name, type: String(f.type), nullable: f.nullable })),
    rows: table.toArray().map(r => r.toJSON()),
  }
  printJSON(out)
}
