/* pqread.c - a small Parquet reader: the footer (parquet.h; the column
 * values in pqcolumn.c). */
#include "pqreader.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kx.h"
#include "thrift.h"

int pq_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

int pq_read_at(int fd, void *buf, size_t n, int64_t off)
{
	return kx_pread_all(fd, buf, n, (off_t)off) == (ssize_t)n ? 0 : -1;
}

static char *dup_bin(const uint8_t *p, uint32_t n)
{
	char *s = malloc(n + 1);
	if (s) {
		memcpy(s, p, n);
		s[n] = 0;
	}
	return s;
}

static void decode_schema_elem(struct tc_dec *d, struct pq_schema_elem *s)
{
	int16_t id;
	enum tc_type t;
	uint32_t n;
	const uint8_t *p;

	s->type = s->repetition = s->converted_type = -1;
	tc_dec_struct_begin(d);
	while (tc_next_field(d, &id, &t)) {
		if (id == 1 && t == TC_I32) {
			s->type = (int)tc_read_int(d);
		} else if (id == 3 && t == TC_I32) {
			s->repetition = (int)tc_read_int(d);
		} else if (id == 4 && t == TC_BINARY) {
			p = tc_read_binary(d, &n);
			free(s->name);
			s->name = p ? dup_bin(p, n) : NULL;
		} else if (id == 5 && t == TC_I32) {
			s->num_children = (int)tc_read_int(d);
		} else if (id == 6 && t == TC_I32) {
			s->converted_type = (int)tc_read_int(d);
		} else if (id == 10 && t == TC_STRUCT) {
			tc_dec_struct_begin(d);	/* LogicalType union */
			while (tc_next_field(d, &id, &t)) {
				if (id == 1 && t == TC_STRUCT)
					s->logical_string = true;
				if (id == 8 && t == TC_STRUCT)
					s->logical_timestamp = true;
				tc_skip(d, t);
			}
		} else {
			tc_skip(d, t);
		}
	}
}

static void decode_stats(struct tc_dec *d, struct pq_stats *st)
{
	int16_t id;
	enum tc_type t;
	uint32_t n;
	const uint8_t *p;

	tc_dec_struct_begin(d);
	while (tc_next_field(d, &id, &t)) {
		if (id == 3 && t == TC_I64) {
			st->null_count = tc_read_int(d);
			st->has_null_count = true;
		} else if ((id == 5 || id == 6) && t == TC_BINARY) {
			p = tc_read_binary(d, &n);
			uint8_t *dst = id == 5 ? st->max : st->min;
			uint32_t m = n < sizeof(st->max) ? n : sizeof(st->max);
			if (p)
				memcpy(dst, p, m);
			if (id == 5) {
				st->max_len = n;
				st->has_max = true;
			} else {
				st->min_len = n;
				st->has_min = true;
			}
		} else {
			tc_skip(d, t);
		}
	}
}

static void decode_column_meta(struct tc_dec *d, struct pq_chunk_meta *m)
{
	int16_t id;
	enum tc_type t, et;

	tc_dec_struct_begin(d);
	while (tc_next_field(d, &id, &t)) {
		if (id == 1 && t == TC_I32) {
			m->type = (int)tc_read_int(d);
		} else if (id == 2 && t == TC_LIST) {
			uint32_t n = tc_read_list(d, &et);
			for (uint32_t i = 0; i < n && !d->bad; i++) {
				int64_t v = tc_read_int(d);
				if (m->nencodings < 8)
					m->encodings[m->nencodings++] = (int)v;
			}
		} else if (id == 4 && t == TC_I32) {
			m->codec = (int)tc_read_int(d);
		} else if (id == 5 && t == TC_I64) {
			m->num_values = tc_read_int(d);
		} else if (id == 7 && t == TC_I64) {
			m->total_compressed_size = tc_read_int(d);
		} else if (id == 9 && t == TC_I64) {
			m->data_page_offset = tc_read_int(d);
		} else if (id == 11 && t == TC_I64) {
			m->dictionary_page_offset = tc_read_int(d);
		} else if (id == 12 && t == TC_STRUCT) {
			decode_stats(d, &m->stats);
		} else {
			tc_skip(d, t);
		}
	}
}

static int decode_row_group(struct tc_dec *d, struct pq_row_group *rg,
			    int ncols)
{
	int16_t id;
	enum tc_type t, et;
	int seen = -1;

	rg->chunks = calloc(ncols ? ncols : 1, sizeof(*rg->chunks));
	if (!rg->chunks)
		return -1;
	tc_dec_struct_begin(d);
	while (tc_next_field(d, &id, &t)) {
		if (id == 1 && t == TC_LIST) {
			uint32_t n = tc_read_list(d, &et);
			seen = (int)n;
			for (uint32_t i = 0; i < n && !d->bad; i++) {
				struct pq_chunk_meta scratch, *m;
				m = (int)i < ncols ? &rg->chunks[i] : &scratch;
				memset(m, 0, sizeof(*m));
				m->dictionary_page_offset = -1;
				tc_dec_struct_begin(d);	/* ColumnChunk */
				while (tc_next_field(d, &id, &t)) {
					if (id == 3 && t == TC_STRUCT)
						decode_column_meta(d, m);
					else
						tc_skip(d, t);
				}
			}
		} else if (id == 3 && t == TC_I64) {
			rg->num_rows = tc_read_int(d);
		} else {
			tc_skip(d, t);
		}
	}
	return seen == ncols ? 0 : -2;
}

void pq_read_close(struct pq_file *f)
{
	if (!f)
		return;
	for (int i = 0; i < f->nschema; i++)
		free(f->schema[i].name);
	free(f->schema);
	for (int i = 0; i < f->nrow_groups; i++)
		free(f->row_groups[i].chunks);
	free(f->row_groups);
	free(f->created_by);
	if (f->fd >= 0)
		close(f->fd);
	free(f);
}

int pq_ncolumns(const struct pq_file *f)
{
	return f->nschema > 0 ? f->nschema - 1 : 0;
}

static int decode_footer(struct pq_file *f, const uint8_t *buf, uint32_t len,
			 char *err, size_t errlen)
{
	struct tc_dec d;
	int16_t id;
	enum tc_type t, et;
	uint32_t n;
	const uint8_t *p;
	bool have_schema = false;

	tc_dec_init(&d, buf, len);
	while (tc_next_field(&d, &id, &t)) {
		if (id == 1 && t == TC_I32) {
			f->version = (int)tc_read_int(&d);
		} else if (id == 2 && t == TC_LIST && !have_schema) {
			n = tc_read_list(&d, &et);
			f->schema = calloc(n ? n : 1, sizeof(*f->schema));
			if (!f->schema)
				return pq_errf(err, errlen, "out of memory");
			f->nschema = (int)n;
			for (uint32_t i = 0; i < n && !d.bad; i++)
				decode_schema_elem(&d, &f->schema[i]);
			have_schema = true;
		} else if (id == 3 && t == TC_I64) {
			f->num_rows = tc_read_int(&d);
		} else if (id == 4 && t == TC_LIST && have_schema) {
			n = tc_read_list(&d, &et);
			f->row_groups = calloc(n ? n : 1,
					       sizeof(*f->row_groups));
			if (!f->row_groups)
				return pq_errf(err, errlen, "out of memory");
			for (uint32_t i = 0; i < n && !d.bad; i++) {
				f->nrow_groups++;
				int r = decode_row_group(&d, &f->row_groups[i],
							 pq_ncolumns(f));
				if (r == -1)
					return pq_errf(err, errlen, "out of memory");
				if (r == -2)
					return pq_errf(err, errlen,
						    "row group %u: column count "
						    "differs from the schema", i);
			}
		} else if (id == 6 && t == TC_BINARY) {
			p = tc_read_binary(&d, &n);
			free(f->created_by);
			f->created_by = p ? dup_bin(p, n) : NULL;
		} else {
			tc_skip(&d, t);
		}
	}
	if (d.bad)
		return pq_errf(err, errlen, "malformed footer (thrift)");
	if (!have_schema || f->nschema < 1)
		return pq_errf(err, errlen, "footer has no schema");
	for (int i = 0; i < f->nschema; i++)
		if (!f->schema[i].name)
			return pq_errf(err, errlen, "schema element %d: no name", i);
	if (f->schema[0].num_children != f->nschema - 1)
		return pq_errf(err, errlen, "nested schemas are not supported");
	return 0;
}

struct pq_file *pq_read_open(const char *path, char *err, size_t errlen)
{
	struct pq_file *f = calloc(1, sizeof(*f));
	uint8_t head[4], tail[8], *buf = NULL;
	struct stat st;
	uint32_t len;

	if (!f) {
		pq_errf(err, errlen, "out of memory");
		return NULL;
	}
	f->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (f->fd < 0 || fstat(f->fd, &st) < 0) {
		pq_errf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	f->size = st.st_size;
	if (f->size < 12 || pq_read_at(f->fd, head, 4, 0) < 0 ||
	    pq_read_at(f->fd, tail, 8, f->size - 8) < 0 ||
	    memcmp(head, "PAR1", 4) || memcmp(tail + 4, "PAR1", 4)) {
		pq_errf(err, errlen, "%s: not a Parquet file (no PAR1 magic)",
		     path);
		goto fail;
	}
	memcpy(&len, tail, 4);
	if (len > FOOTER_MAX || len > f->size - 12) {
		pq_errf(err, errlen, "%s: footer length %u out of range", path,
		     len);
		goto fail;
	}
	buf = malloc(len ? len : 1);
	if (!buf || pq_read_at(f->fd, buf, len, f->size - 8 - len) < 0) {
		pq_errf(err, errlen, "%s: cannot read footer", path);
		goto fail;
	}
	if (decode_footer(f, buf, len, err, errlen) < 0) {
		size_t m = strlen(err);
		char tmp[256];
		snprintf(tmp, sizeof(tmp), "%s: %.*s", path, (int)m, err);
		snprintf(err, errlen, "%s", tmp);
		goto fail;
	}
	free(buf);
	return f;
fail:
	free(buf);
	pq_read_close(f);
	return NULL;
}
