// read-arrow.mjs FILE... - dumps Parquet files as JSON, one line each, with parquet-wasm
// (Apache arrow-rs's parquet crate compiled to WebAssembly), a second
// reader kxrun did not write: { fields: [{name, type, nullable}], rows }.
// INT64 values print as numbers when exact, else as strings; timestamps
// as epoch ms.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'

const dir = process.env.KXRUN_NODE_DIR ??
  new URL('../../build/node/', import.meta.url).pathname
const req = createRequire(dir + '/package.json')
async function load(name) {
  try {
    return await import(pathToFileURL(req.resolve(name)))
  } catch (e) {
    console.error(`read-arrow.mjs: ${name} is not installed in ${dir} (run make): ${e.message}`)
    process.exit(3)
  }
}
const paths = process.argv.slice(2)
if (!paths.length) {
  console.error('usage: node read-arrow.mjs FILE.parquet...')
  process.exit(2)
}
const pw = await load('parquet-wasm')
const { tableFromIPC } = await load('apache-arrow')
const big = (k, v) => typeof v === 'bigint'
  ? (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString())
  : v
for (const path of paths) {
  const table = tableFromIPC(pw.readParquet(new Uint8Array(readFileSync(path))).intoIPCStream())
  const out = {
    fields: table.schema.fields.map(f => ({ name: f.name, type: String(f.type), nullable: f.nullable })),
    rows: table.toArray().map(r => r.toJSON()),
  }
  process.stdout.write(JSON.stringify(out, big) + '\n')
}
