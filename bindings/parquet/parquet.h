/*
 * parquet.h - a streaming Parquet writer and a small reader, in plain C.
 *
 * Writer.  A flat schema (one level, no nesting, no repetition) of columns
 * INT32, INT64, DOUBLE, STRING (BYTE_ARRAY annotated STRING/UTF8) or
 * TIMESTAMP_MS (INT64 annotated TIMESTAMP, ms, UTC), each
 * REQUIRED or OPTIONAL, each PLAIN or RLE_DICTIONARY encoded.  Rows are
 * written value by value:
 *
 *     struct pq_column cols[] = {
 *         { "id", PQ_INT32, .dictionary = false },
 *         { "name", PQ_STRING, .optional = true, .dictionary = true },
 *     };
 *     struct pq_options o = pq_defaults();    // ZSTD, pages v1, CRC on
 *     pq_writer *w = pq_open("out.parquet", "resource", cols, 2, &o, err, sizeof err);
 *     pq_int32(w, 0, 7); pq_null(w, 1); pq_end_row(w);
 *     ...
 *     pq_close(w, err, sizeof err);            // or pq_abort(w)
 *
 * Memory is bounded whatever the number of rows: values gather into pages
 * (pq_options.page_bytes), pages into a row group that is written out once it
 * holds row_group_rows rows or row_group_bytes bytes, or once a dictionary
 * reaches dict_bytes.  Only the footer's per-row-group entries stay.
 *
 * The file is written under a temporary name in the same directory and
 * renamed by pq_close: it is complete or absent (pq_abort and a failed
 * pq_close remove the temporary file).
 *
 * Every column chunk carries statistics (min_value/max_value, null_count)
 * and every page a CRC-32 of its bytes as stored.  Data pages are v1 or v2
 * (pq_options.page_version).  Codecs: none, SNAPPY, ZSTD.
 *
 * Reader.  Enough to check a file: the footer (schema, row groups, column
 * metadata and statistics), and a column chunk's values with definition
 * levels, PLAIN or dictionary encoded, pages v1 or v2, any of the three
 * codecs, CRCs checked when present.  Used by the OpenDC verifier and tests.
 */
#ifndef KX_PARQUET_H
#define KX_PARQUET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parquet's own enum values (parquet.thrift). */
enum pq_physical { PQ_PT_BOOLEAN = 0, PQ_PT_INT32 = 1, PQ_PT_INT64 = 2,
		   PQ_PT_INT96 = 3, PQ_PT_FLOAT = 4, PQ_PT_DOUBLE = 5,
		   PQ_PT_BYTE_ARRAY = 6, PQ_PT_FIXED = 7 };
enum pq_codec { PQ_UNCOMPRESSED = 0, PQ_SNAPPY = 1, PQ_ZSTD = 6 };
enum pq_encoding { PQ_ENC_PLAIN = 0, PQ_ENC_PLAIN_DICTIONARY = 2,
		   PQ_ENC_RLE = 3, PQ_ENC_RLE_DICTIONARY = 8 };
enum pq_repetition { PQ_REQUIRED = 0, PQ_OPTIONAL = 1, PQ_REPEATED = 2 };

/* Column types the writer offers.  PQ_TIMESTAMP_MS is INT64 annotated
 * TIMESTAMP(isAdjustedToUTC, MILLIS), written with pq_int64. */
enum pq_type { PQ_INT32, PQ_INT64, PQ_DOUBLE, PQ_STRING, PQ_TIMESTAMP_MS };

struct pq_column {
	const char *name;
	enum pq_type type;
	bool optional;		/* OPTIONAL (nulls allowed), else REQUIRED */
	bool dictionary;	/* RLE_DICTIONARY, else PLAIN */
};

struct pq_options {
	enum pq_codec codec;
	int zstd_level;
	int page_version;	/* 1 or 2 */
	bool crc;
	size_t page_bytes;	/* values per page, encoded, before codec */
	size_t row_group_rows;
	size_t row_group_bytes;	/* pages held for the row group, stored */
	size_t dict_bytes;	/* a dictionary this big ends the row group */
	const char *created_by;
};

struct pq_options pq_defaults(void);

typedef struct pq_writer pq_writer;

pq_writer *pq_open(const char *path, const char *schema_name,
		   const struct pq_column *cols, int ncols,
		   const struct pq_options *opt, char *err, size_t errlen);

/* One value for column col of the current row; each column exactly once per
 * row.  Return 0, or -1 with the reason in pq_error(w); after a failure the
 * writer only accepts pq_abort. */
int pq_int32(pq_writer *w, int col, int32_t v);
int pq_int64(pq_writer *w, int col, int64_t v);
int pq_double(pq_writer *w, int col, double v);
int pq_string(pq_writer *w, int col, const char *s, size_t len);
int pq_null(pq_writer *w, int col);	/* OPTIONAL columns only */
int pq_end_row(pq_writer *w);

const char *pq_error(const pq_writer *w);
int64_t pq_rows(const pq_writer *w);

/* Writes the footer, renames into place, frees w (always).  0 or -1. */
int pq_close(pq_writer *w, char *err, size_t errlen);
/* Removes the temporary file and frees w. */
void pq_abort(pq_writer *w);

/* ---- reader ------------------------------------------------------------- */

struct pq_schema_elem {
	char *name;
	int type;		/* enum pq_physical, -1 for a group */
	int repetition;		/* enum pq_repetition, -1 when absent */
	int num_children;
	int converted_type;	/* -1 when absent; 0 = UTF8 */
	bool logical_string;	/* LogicalType STRING */
	bool logical_timestamp;	/* LogicalType TIMESTAMP */
};

struct pq_stats {
	bool has_min, has_max, has_null_count;
	uint8_t min[64], max[64];	/* raw bytes (cut at 64 for strings) */
	uint32_t min_len, max_len;
	int64_t null_count;
};

struct pq_chunk_meta {
	int type;
	int codec;
	int64_t num_values;
	int64_t data_page_offset;
	int64_t dictionary_page_offset;	/* -1 when absent */
	int64_t total_compressed_size;
	int nencodings;
	int encodings[8];
	struct pq_stats stats;
};

struct pq_row_group {
	int64_t num_rows;
	struct pq_chunk_meta *chunks;	/* one per leaf column */
};

struct pq_file {
	int version;
	int64_t num_rows;
	int nschema;
	struct pq_schema_elem *schema;	/* [0] is the root */
	int nrow_groups;
	struct pq_row_group *row_groups;
	char *created_by;
	/* private */
	int fd;
	int64_t size;
};

/* Opens path and decodes its footer.  NULL with a message on failure. */
struct pq_file *pq_read_open(const char *path, char *err, size_t errlen);
void pq_read_close(struct pq_file *f);
int pq_ncolumns(const struct pq_file *f);	/* leaves: nschema - 1 */

/* The values of one column chunk, decoded.  For BYTE_ARRAY, str[i] points
 * into `strbuf`, len[i] bytes followed by a NUL (NULL for a null).  null[i]
 * is true for a null (OPTIONAL) value. */
struct pq_values {
	int64_t n;
	bool *null;
	int64_t *i64;		/* INT32 and INT64 */
	double *f64;		/* DOUBLE */
	const char **str;	/* BYTE_ARRAY */
	uint32_t *len;
	char *strbuf;
};

int pq_read_column(struct pq_file *f, int row_group, int col,
		   struct pq_values *out, char *err, size_t errlen);
void pq_values_free(struct pq_values *v);

#endif
