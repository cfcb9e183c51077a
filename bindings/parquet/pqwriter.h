/*
 * pqwriter.h - the Parquet writer's inside, shared by its two halves:
 * parquet.c (open, values, rows, footer, close) and pqpages.c (pages,
 * column chunks, row groups).  Not part of the module's interface
 * (parquet.h is).
 */
#ifndef KX_PQWRITER_H
#define KX_PQWRITER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kx.h"
#include "parquet.h"
#include "thrift.h"

#define STATS_MAX_STRING 256	/* longer min/max strings: no min/max */

struct column {
	struct pq_column spec;
	int physical;

	/* the page being filled */
	struct tc_buf plain;	/* PLAIN values (PLAIN columns) */
	uint32_t *idx;		/* dictionary indices (dictionary columns) */
	size_t nidx, idxcap;
	uint32_t *def;		/* definition levels, one per row */
	size_t nrows, defcap;
	int64_t page_nulls;

	/* the row group's dictionary: PLAIN-encoded entries */
	struct tc_buf dict;
	size_t *dict_off;	/* where each entry's raw bytes start */
	uint32_t *dict_len;
	size_t ndict, dictcap;
	uint32_t *slots;	/* open addressing: entry + 1, 0 = free */
	size_t nslots;

	/* the row group's pages, stored form, headers included */
	struct tc_buf chunk;
	int64_t chunk_values, chunk_nulls, chunk_uncompressed;

	/* chunk statistics */
	bool has_minmax, stats_off;
	int64_t imin, imax;
	double dmin, dmax;
	struct tc_buf smin, smax;

	bool done_this_row;
};

struct pq_writer {
	struct kx_atomic file;	/* written beside its path, renamed at close */
	FILE *fp;		/* on file.fd */
	int64_t offset;		/* bytes written so far */
	char *schema_name;
	struct pq_options opt;
	int ncols;
	struct column *cols;
	int64_t rows, rg_rows;
	struct tc_buf rowgroups;	/* encoded RowGroup structs */
	uint32_t nrowgroups;
	struct tc_buf levels, values, body, packed;	/* page assembly */
	bool failed;
	char err[256];
};

/* Records the writer's first failure (formatted into w->err); -1. */
int pq_fail(pq_writer *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The column's buffered values as a data page appended to its chunk. */
int pq_flush_page(pq_writer *w, struct column *c);

/* Every column's chunk (dictionary page first) into the file, and the
 * row group's entry for the footer. */
int pq_flush_row_group(pq_writer *w);

/* n bytes at the end of the file, counted in w->offset. */
int pq_write_all(pq_writer *w, const void *p, size_t n);

#endif
