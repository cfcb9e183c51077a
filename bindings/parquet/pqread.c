/* pqread.c - a small Parquet reader: footer and flat columns (parquet.h). */
#include "parquet.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snappy_dl.h"
#include <zlib.h>
#include <zstd.h>

#include "rle.h"
#include "thrift.h"

#define FOOTER_MAX (64u << 20)
#define PAGE_MAX (1u << 30)

static int errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

static int read_at(int fd, void *buf, size_t n, int64_t off)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = pread(fd, (char *)buf + got, n - got, off + got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		got += r;
	}
	return 0;
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
				return errf(err, errlen, "out of memory");
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
				return errf(err, errlen, "out of memory");
			for (uint32_t i = 0; i < n && !d.bad; i++) {
				f->nrow_groups++;
				int r = decode_row_group(&d, &f->row_groups[i],
							 pq_ncolumns(f));
				if (r == -1)
					return errf(err, errlen, "out of memory");
				if (r == -2)
					return errf(err, errlen,
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
		return errf(err, errlen, "malformed footer (thrift)");
	if (!have_schema || f->nschema < 1)
		return errf(err, errlen, "footer has no schema");
	for (int i = 0; i < f->nschema; i++)
		if (!f->schema[i].name)
			return errf(err, errlen, "schema element %d: no name", i);
	if (f->schema[0].num_children != f->nschema - 1)
		return errf(err, errlen, "nested schemas are not supported");
	return 0;
}

struct pq_file *pq_read_open(const char *path, char *err, size_t errlen)
{
	struct pq_file *f = calloc(1, sizeof(*f));
	uint8_t head[4], tail[8], *buf = NULL;
	struct stat st;
	uint32_t len;

	if (!f) {
		errf(err, errlen, "out of memory");
		return NULL;
	}
	f->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (f->fd < 0 || fstat(f->fd, &st) < 0) {
		errf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	f->size = st.st_size;
	if (f->size < 12 || read_at(f->fd, head, 4, 0) < 0 ||
	    read_at(f->fd, tail, 8, f->size - 8) < 0 ||
	    memcmp(head, "PAR1", 4) || memcmp(tail + 4, "PAR1", 4)) {
		errf(err, errlen, "%s: not a Parquet file (no PAR1 magic)",
		     path);
		goto fail;
	}
	memcpy(&len, tail, 4);
	if (len > FOOTER_MAX || len > f->size - 12) {
		errf(err, errlen, "%s: footer length %u out of range", path,
		     len);
		goto fail;
	}
	buf = malloc(len ? len : 1);
	if (!buf || read_at(f->fd, buf, len, f->size - 8 - len) < 0) {
		errf(err, errlen, "%s: cannot read footer", path);
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

/* ---- column values ------------------------------------------------------ */

struct page_hdr {
	int type;
	int32_t uncompressed, stored;
	bool has_crc;
	uint32_t crc;
	int64_t num_values;
	int encoding;
	int32_t def_bytes, rep_bytes;
	bool is_compressed;
};

static void decode_page_header(struct tc_dec *d, struct page_hdr *h)
{
	int16_t id, sid;
	enum tc_type t, st;

	memset(h, 0, sizeof(*h));
	h->type = -1;
	h->is_compressed = true;
	while (tc_next_field(d, &id, &t)) {
		if (id == 1 && t == TC_I32) {
			h->type = (int)tc_read_int(d);
		} else if (id == 2 && t == TC_I32) {
			h->uncompressed = (int32_t)tc_read_int(d);
		} else if (id == 3 && t == TC_I32) {
			h->stored = (int32_t)tc_read_int(d);
		} else if (id == 4 && t == TC_I32) {
			h->crc = (uint32_t)tc_read_int(d);
			h->has_crc = true;
		} else if ((id == 5 || id == 7 || id == 8) && t == TC_STRUCT) {
			tc_dec_struct_begin(d);
			while (tc_next_field(d, &sid, &st)) {
				if (sid == 1 && st == TC_I32)
					h->num_values = tc_read_int(d);
				else if (id != 8 && sid == 2 && st == TC_I32)
					h->encoding = (int)tc_read_int(d);
				else if (id == 8 && sid == 4 && st == TC_I32)
					h->encoding = (int)tc_read_int(d);
				else if (id == 8 && sid == 5 && st == TC_I32)
					h->def_bytes = (int32_t)tc_read_int(d);
				else if (id == 8 && sid == 6 && st == TC_I32)
					h->rep_bytes = (int32_t)tc_read_int(d);
				else if (id == 8 && sid == 7 &&
					 (st == TC_TRUE || st == TC_FALSE))
					h->is_compressed = st == TC_TRUE;
				else
					tc_skip(d, st);
			}
		} else {
			tc_skip(d, t);
		}
	}
}

/* Decompresses [src, src+n) into *dst (grown as needed) of exactly want
 * bytes; returns the pointer to use (src itself when uncompressed). */
static const uint8_t *decompress(int codec, const uint8_t *src, size_t n,
				 size_t want, uint8_t **dst, size_t *cap,
				 char *err, size_t errlen)
{
	if (codec == PQ_UNCOMPRESSED) {
		if (n != want) {
			errf(err, errlen, "uncompressed page size mismatch");
			return NULL;
		}
		return src;
	}
	if (want > *cap || !*dst) {
		uint8_t *p = realloc(*dst, want ? want : 1);
		if (!p) {
			errf(err, errlen, "out of memory");
			return NULL;
		}
		*dst = p;
		*cap = want;
	}
	if (codec == PQ_SNAPPY) {
		size_t len = want;
		const struct pq_snappy *sn = pq_snappy();
		if (!sn) {
			errf(err, errlen, "snappy: libsnappy.so.1 cannot be loaded");
			return NULL;
		}
		if (sn->uncompress((const char *)src, n, (char *)*dst,
				   &len) != SNAPPY_OK || len != want) {
			errf(err, errlen, "snappy: corrupt page");
			return NULL;
		}
	} else if (codec == PQ_ZSTD) {
		size_t r = ZSTD_decompress(*dst, want, src, n);
		if (ZSTD_isError(r) || r != want) {
			errf(err, errlen, "zstd: corrupt page");
			return NULL;
		}
	} else {
		errf(err, errlen, "unsupported codec %d", codec);
		return NULL;
	}
	return *dst;
}

struct plain_out {
	int type;
	int64_t *i64;
	double *f64;
	size_t *off;		/* strings: offset into strbuf */
	uint32_t *len;
	struct tc_buf *strbuf;
};

/* Decodes n PLAIN values of the column's type into out at indexes idx[]. */
static long decode_plain(const uint8_t *p, size_t size, size_t n,
			 const struct plain_out *o, const int64_t *idx)
{
	size_t pos = 0;
	for (size_t k = 0; k < n; k++) {
		int64_t at = idx ? idx[k] : (int64_t)k;
		int32_t i32;
		uint32_t len;

		switch (o->type) {
		case PQ_PT_INT32:
			if (size - pos < 4)
				return -1;
			memcpy(&i32, p + pos, 4);
			o->i64[at] = i32;
			pos += 4;
			break;
		case PQ_PT_INT64:
			if (size - pos < 8)
				return -1;
			memcpy(&o->i64[at], p + pos, 8);
			pos += 8;
			break;
		case PQ_PT_DOUBLE:
			if (size - pos < 8)
				return -1;
			memcpy(&o->f64[at], p + pos, 8);
			pos += 8;
			break;
		case PQ_PT_BYTE_ARRAY:
			if (size - pos < 4)
				return -1;
			memcpy(&len, p + pos, 4);
			pos += 4;
			if (size - pos < len)
				return -1;
			o->off[at] = o->strbuf->len;
			o->len[at] = len;
			tc_buf_put(o->strbuf, p + pos, len);
			tc_buf_put(o->strbuf, "", 1);
			pos += len;
			break;
		default:
			return -1;
		}
	}
	return (long)pos;
}

void pq_values_free(struct pq_values *v)
{
	free(v->null);
	free(v->i64);
	free(v->f64);
	free(v->str);
	free(v->len);
	free(v->strbuf);
	memset(v, 0, sizeof(*v));
}

struct dict {
	struct tc_buf strbuf;
	struct plain_out o;
	int64_t n;
	bool loaded;
};

static void dict_free(struct dict *d)
{
	tc_buf_free(&d->strbuf);
	free(d->o.i64);
	free(d->o.f64);
	free(d->o.off);
	free(d->o.len);
}

/* Copies dictionary entry e into output slot at. */
static void dict_copy(struct dict *d, const struct plain_out *o, uint32_t e,
		      int64_t at)
{
	switch (o->type) {
	case PQ_PT_INT32:
	case PQ_PT_INT64:
		o->i64[at] = d->o.i64[e];
		break;
	case PQ_PT_DOUBLE:
		o->f64[at] = d->o.f64[e];
		break;
	default:
		o->off[at] = o->strbuf->len;
		o->len[at] = d->o.len[e];
		tc_buf_put(o->strbuf, d->strbuf.data + d->o.off[e],
			   d->o.len[e] + 1);
	}
}

static int alloc_plain(struct plain_out *o, int type, int64_t n,
		       struct tc_buf *strbuf)
{
	size_t m = n ? (size_t)n : 1;
	o->type = type;
	o->strbuf = strbuf;
	if (type == PQ_PT_DOUBLE)
		o->f64 = calloc(m, sizeof(double));
	else if (type == PQ_PT_BYTE_ARRAY) {
		o->off = calloc(m, sizeof(size_t));
		o->len = calloc(m, sizeof(uint32_t));
	} else
		o->i64 = calloc(m, sizeof(int64_t));
	return (o->f64 || o->i64 || (o->off && o->len)) ? 0 : -1;
}

/* Reads the values of one data page into o at [*got, *got + nvalues). */
static int data_page(const struct page_hdr *h, const uint8_t *levels,
		     size_t nlevels, const uint8_t *vals, size_t nvals,
		     bool optional, struct dict *dict, const struct plain_out *o,
		     bool *null, int64_t *got, int64_t total, char *err,
		     size_t errlen)
{
	int64_t n = h->num_values, present = 0;
	uint32_t *def = NULL, *idx32 = NULL;
	int64_t *where = NULL;
	int rc = -1;

	if (n < 0 || n > total - *got)
		return errf(err, errlen, "page holds more values than the "
			    "column chunk");
	def = malloc((n ? n : 1) * sizeof(*def));
	where = malloc((n ? n : 1) * sizeof(*where));
	idx32 = malloc((n ? n : 1) * sizeof(*idx32));
	if (!def || !where || !idx32) {
		errf(err, errlen, "out of memory");
		goto out;
	}
	if (optional) {
		if (pq_rle_decode(levels, nlevels, 1, def, n, 2) < 0) {
			errf(err, errlen, "corrupt definition levels");
			goto out;
		}
	} else {
		for (int64_t i = 0; i < n; i++)
			def[i] = 1;
	}
	for (int64_t i = 0; i < n; i++) {
		null[*got + i] = def[i] == 0;
		if (def[i])
			where[present++] = *got + i;
	}
	if (h->encoding == PQ_ENC_PLAIN) {
		if (decode_plain(vals, nvals, present, o, where) < 0) {
			errf(err, errlen, "truncated PLAIN values");
			goto out;
		}
	} else if (h->encoding == PQ_ENC_RLE_DICTIONARY ||
		   h->encoding == PQ_ENC_PLAIN_DICTIONARY) {
		if (!dict->loaded) {
			errf(err, errlen, "dictionary page missing");
			goto out;
		}
		if (present > 0 &&
		    (nvals < 1 ||
		     pq_rle_decode(vals + 1, nvals - 1, vals[0], idx32,
				   present, (uint32_t)dict->n) < 0)) {
			errf(err, errlen, "corrupt dictionary indices");
			goto out;
		}
		for (int64_t k = 0; k < present; k++)
			dict_copy(dict, o, idx32[k], where[k]);
	} else {
		errf(err, errlen, "unsupported encoding %d", h->encoding);
		goto out;
	}
	*got += n;
	rc = 0;
out:
	free(def);
	free(where);
	free(idx32);
	return rc;
}

int pq_read_column(struct pq_file *f, int row_group, int col,
		   struct pq_values *out, char *err, size_t errlen)
{
	const struct pq_chunk_meta *m;
	struct dict dict = { 0 };
	struct tc_buf strbuf = { 0 };
	struct plain_out o = { 0 };
	uint8_t *buf = NULL, *scratch = NULL;
	size_t scap = 0;
	int64_t start, size, got = 0;
	bool optional;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (row_group < 0 || row_group >= f->nrow_groups || col < 0 ||
	    col >= pq_ncolumns(f))
		return errf(err, errlen, "no column %d in row group %d", col,
			    row_group);
	m = &f->row_groups[row_group].chunks[col];
	optional = f->schema[col + 1].repetition == PQ_OPTIONAL;
	start = m->dictionary_page_offset >= 0 &&
			m->dictionary_page_offset < m->data_page_offset
		    ? m->dictionary_page_offset
		    : m->data_page_offset;
	size = m->total_compressed_size;
	if (start < 4 || size < 0 || start + size > f->size - 8 ||
	    size > PAGE_MAX || m->num_values < 0 ||
	    m->num_values > (1 << 28))
		return errf(err, errlen, "column %s: chunk out of range",
			    f->schema[col + 1].name);
	buf = malloc(size ? size : 1);
	out->null = calloc(m->num_values ? m->num_values : 1, sizeof(bool));
	if (!buf || !out->null || alloc_plain(&o, m->type, m->num_values,
					      &strbuf) < 0) {
		errf(err, errlen, "out of memory");
		goto out;
	}
	if (read_at(f->fd, buf, size, start) < 0) {
		errf(err, errlen, "cannot read column chunk");
		goto out;
	}
	for (int64_t pos = 0; got < m->num_values;) {
		struct tc_dec d;
		struct page_hdr h;
		const uint8_t *body, *data;
		size_t hlen;

		if (pos >= size) {
			errf(err, errlen, "chunk ends after %lld of %lld values",
			     (long long)got, (long long)m->num_values);
			goto out;
		}
		tc_dec_init(&d, buf + pos, size - pos);
		decode_page_header(&d, &h);
		hlen = d.p - (buf + pos);
		if (d.bad || h.stored < 0 || h.uncompressed < 0 ||
		    h.stored > size - pos - (int64_t)hlen) {
			errf(err, errlen, "corrupt page header at %lld",
			     (long long)(start + pos));
			goto out;
		}
		body = buf + pos + hlen;
		pos += hlen + h.stored;
		if (h.has_crc && crc32(0, body, h.stored) != h.crc) {
			errf(err, errlen, "page at %lld: CRC mismatch",
			     (long long)(body - buf + start));
			goto out;
		}
		if (h.type == 2) {	/* dictionary page */
			data = decompress(m->codec, body, h.stored,
					  h.uncompressed, &scratch, &scap, err,
					  errlen);
			if (!data)
				goto out;
			dict_free(&dict);
			memset(&dict, 0, sizeof(dict));
			if (h.num_values < 0 || h.num_values > h.uncompressed ||
			    alloc_plain(&dict.o, m->type, h.num_values,
					&dict.strbuf) < 0 ||
			    decode_plain(data, h.uncompressed, h.num_values,
					 &dict.o, NULL) < 0) {
				errf(err, errlen, "corrupt dictionary page");
				goto out;
			}
			dict.n = h.num_values;
			dict.loaded = true;
		} else if (h.type == 0) {	/* data page v1 */
			uint32_t nlev = 0;
			size_t skip = 0;
			data = decompress(m->codec, body, h.stored,
					  h.uncompressed, &scratch, &scap, err,
					  errlen);
			if (!data)
				goto out;
			if (optional) {
				if (h.uncompressed < 4)
					goto short_page;
				memcpy(&nlev, data, 4);
				if (nlev > (uint32_t)h.uncompressed - 4)
					goto short_page;
				skip = 4 + nlev;
			}
			if (data_page(&h, data + 4, nlev, data + skip,
				      h.uncompressed - skip, optional, &dict,
				      &o, out->null, &got, m->num_values, err,
				      errlen) < 0)
				goto out;
		} else if (h.type == 3) {	/* data page v2 */
			size_t lev = (size_t)h.def_bytes;
			if (h.def_bytes < 0 || h.rep_bytes != 0 ||
			    lev > (size_t)h.stored ||
			    lev > (size_t)h.uncompressed)
				goto short_page;
			data = decompress(h.is_compressed ? m->codec : 0,
					  body + lev, h.stored - lev,
					  h.uncompressed - lev, &scratch, &scap,
					  err, errlen);
			if (!data)
				goto out;
			if (data_page(&h, body, lev, data, h.uncompressed - lev,
				      optional, &dict, &o, out->null, &got,
				      m->num_values, err, errlen) < 0)
				goto out;
		}
		/* other page types (index pages) carry no values */
	}
	if (strbuf.failed) {
		errf(err, errlen, "out of memory");
		goto out;
	}
	out->n = got;
	out->i64 = o.i64;
	out->f64 = o.f64;
	out->len = o.len;
	o.i64 = NULL;
	o.f64 = NULL;
	o.len = NULL;
	if (m->type == PQ_PT_BYTE_ARRAY) {
		out->strbuf = (char *)strbuf.data;
		strbuf.data = NULL;
		out->str = calloc(got ? got : 1, sizeof(char *));
		if (!out->str) {
			errf(err, errlen, "out of memory");
			goto out;
		}
		for (int64_t i = 0; i < got; i++)
			out->str[i] = out->null[i] ? NULL
						   : out->strbuf + o.off[i];
	}
	rc = 0;
	goto out;
short_page:
	errf(err, errlen, "column %s: truncated page",
	     f->schema[col + 1].name);
out:
	dict_free(&dict);
	tc_buf_free(&strbuf);
	free(o.i64);
	free(o.f64);
	free(o.off);
	free(o.len);
	free(buf);
	free(scratch);
	if (rc < 0)
		pq_values_free(out);
	return rc;
}
