// check-crc.mjs FILE... - checks every page's CRC of Parquet files
// independently of kxrun: the page headers read by hyparquet's own Thrift
// decoder, the CRC-32 computed by Node's zlib over the page bytes as stored
// (after the header, compressed), as the Parquet format defines it.
// hyparquet itself reads the crc field but never checks it.
// Prints {"file", "pages", "first_data_offset"} per file as a JSON line;
// exits 1 naming the first page whose CRC is missing or wrong.
import { readFileSync } from 'node:fs'
import { crc32 } from 'node:zlib'
import { load, fail } from './lib.mjs'

const { parquetMetadata } = await load('hyparquet')
const { parquetHeader } = await load('hyparquet/src/column.js')
if (typeof crc32 !== 'function') fail('this node has no zlib.crc32 (node >= 20.15 needed)', 3)

let bad = 0
for (const path of process.argv.slice(2)) {
  const bytes = readFileSync(path)
  const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)
  const meta = parquetMetadata(buf)
  let pages = 0
  let first
  for (const [g, rg] of meta.row_groups.entries()) {
    for (const col of rg.columns) {
      const m = col.meta_data
      const start = Number(m.dictionary_page_offset ?? m.data_page_offset)
      const end = start + Number(m.total_compressed_size)
      const reader = { view: new DataView(buf), offset: start }
      while (reader.offset < end) {
        const at = reader.offset
        const header = parquetHeader(reader)
        const data = bytes.subarray(reader.offset, reader.offset + header.compressed_page_size)
        first ??= reader.offset
        const where = `${path}: row group ${g}, column ${m.path_in_schema.join('.')}, page at ${at}`
        if (header.crc === undefined) {
          console.error(`${where}: no CRC`)
          bad++
        } else if ((crc32(data) >>> 0) !== (header.crc >>> 0)) {
          console.error(`${where}: CRC ${(header.crc >>> 0).toString(16)} in the header, ` +
            `${(crc32(data) >>> 0).toString(16)} computed`)
          bad++
        }
        reader.offset += header.compressed_page_size
        pages++
      }
    }
  }
  console.log(JSON.stringify({ file: path, pages, first_data_offset: first }))
}
process.exit(bad ? 1 : 0)
