// lib.mjs - what the readers here share: loading the npm packages from
// where `make` installed them (build/node, from this directory's
// package-lock.json, or $KXRUN_NODE_DIR), and JSON output with INT64
// values as numbers when exact, else as strings.
import { createRequire } from 'node:module'
import { basename } from 'node:path'
import { pathToFileURL } from 'node:url'

const dir = process.env.KXRUN_NODE_DIR ??
  new URL('../../build/node/', import.meta.url).pathname
const req = createRequire(dir + '/package.json')
const script = basename(process.argv[1] ?? 'node')

// The module name as installed; exits 3 naming it when it is not.
export async function load(name) {
  try {
    return await import(pathToFileURL(req.resolve(name)))
  } catch (e) {
    console.error(`${script}: ${name} is not installed in ${dir} (run make): ${e.message}`)
    process.exit(3)
  }
}

export function fail(msg, code) {
  console.error(`${script}: ${msg}`)
  process.exit(code)
}

const big = (k, v) => typeof v === 'bigint'
  ? (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString())
  : v

// One JSON line on stdout.
export function printJSON(value) {
  process.stdout.write(JSON.stringify(value, big) + '\n')
}
