// read.mjs FILE - dumps a Parquet file as JSON with hyparquet, a reader
// kxrun did not write: { schema, num_rows, row_groups, rows }.
// INT64 values print as numbers when exact, else as strings.
import { load, fail, printJSON } from './lib.mjs'

const { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } = await load('hyparquet')
const { compressors } = await load('hyparquet-compressors')

const path = process.argv[2]
if (!path) fail('usage: node read.mjs FILE.parquet', 2)
const file = await asyncBufferFromFile(path)
const meta = await parquetMetadataAsync(file)
const rows = await parquetReadObjects({ file, compressors })
const out = {
  created_by: meta.created_by,
  num_rows: meta.num_rows,
  schema: meta.schema.map(s => ({
    name: s.name,
    type: s.type,
    repetition_type: s.repetition_type,
    converted_type: s.converted_type,
    logical_type: s.logical_type?.type,
    num_children: s.num_children,
  })),
  row_groups: meta.row_groups.map(rg => ({
    num_rows: rg.num_rows,
    columns: rg.columns.map(c => ({
      path: c.meta_data.path_in_schema.join('.'),
      type: c.meta_data.type,
      codec: c.meta_data.codec,
      encodings: c.meta_data.encodings,
      num_values: c.meta_data.num_values,
      dictionary: c.meta_data.dictionary_page_offset !== undefined,
      statistics: c.meta_data.statistics && {
        null_count: c.meta_data.statistics.null_count,
        min: c.meta_data.statistics.min_value,
        max: c.meta_data.statistics.max_value,
      },
    })),
  })),
  // TIMESTAMP columns come back as Date: print their epoch ms.
  rows: rows.map(r => Object.fromEntries(Object.entries(r).map(
    ([k, v]) => [k, v instanceof Date ? { timestamp_ms: v.getTime() } : v]))),
}
printJSON(out)
