/* parquet.c - streaming Parquet writer (see parquet.h). */
#include "parquet.h"

#include <errno.h>
#include <math.h>
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
	char *path, *tmp;
	FILE *fp;
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

struct pq_options pq_defaults(void)
{
	return (struct pq_options){
		.codec = PQ_ZSTD,
		.zstd_level = 3,
		.page_version = 1,
		.crc = true,
		.page_bytes = 256 << 10,
		.row_group_rows = 1 << 20,
		.row_group_bytes = 32 << 20,
		.dict_bytes = 1 << 20,
		.created_by = "kxrun parquet writer",
	};
}

static int fail(pq_writer *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int fail(pq_writer *w, const char *fmt, ...)
{
	va_list ap;
	if (w->failed)
		return -1;
	va_start(ap, fmt);
	vsnprintf(w->err, sizeof(w->err), fmt, ap);
	va_end(ap);
	w->failed = true;
	return -1;
}

const char *pq_error(const pq_writer *w)
{
	return w->err;
}

int64_t pq_rows(const pq_writer *w)
{
	return w->rows;
}

static void free_writer(pq_writer *w)
{
	for (int i = 0; i < w->ncols; i++) {
		struct column *c = &w->cols[i];
		tc_buf_free(&c->plain);
		tc_buf_free(&c->dict);
		tc_buf_free(&c->chunk);
		tc_buf_free(&c->smin);
		tc_buf_free(&c->smax);
		free(c->idx);
		free(c->def);
		free(c->dict_off);
		free(c->dict_len);
		free(c->slots);
		free((char *)c->spec.name);
	}
	free(w->cols);
	tc_buf_free(&w->rowgroups);
	tc_buf_free(&w->levels);
	tc_buf_free(&w->values);
	tc_buf_free(&w->body);
	tc_buf_free(&w->packed);
	free(w->schema_name);
	free(w->path);
	free(w->tmp);
	free(w);
}

pq_writer *pq_open(const char *path, const char *schema_name,
		   const struct pq_column *cols, int ncols,
		   const struct pq_options *opt, char *err, size_t errlen)
{
	static const int physical[] = {
		[PQ_INT32] = PQ_PT_INT32, [PQ_INT64] = PQ_PT_INT64,
		[PQ_DOUBLE] = PQ_PT_DOUBLE, [PQ_STRING] = PQ_PT_BYTE_ARRAY,
		[PQ_TIMESTAMP_MS] = PQ_PT_INT64,
	};
	pq_writer *w = calloc(1, sizeof(*w));
	int fd;

	if (!w) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	w->opt = opt ? *opt : pq_defaults();
	if (w->opt.codec != PQ_UNCOMPRESSED && w->opt.codec != PQ_SNAPPY &&
	    w->opt.codec != PQ_ZSTD) {
		snprintf(err, errlen, "unsupported codec %d", w->opt.codec);
		goto fail;
	}
	if (w->opt.page_version != 1 && w->opt.page_version != 2) {
		snprintf(err, errlen, "page_version must be 1 or 2");
		goto fail;
	}
	if (ncols <= 0) {
		snprintf(err, errlen, "a schema needs at least one column");
		goto fail;
	}
	if (!w->opt.page_bytes)
		w->opt.page_bytes = 1;
	if (!w->opt.row_group_rows)
		w->opt.row_group_rows = 1;
	w->ncols = ncols;
	w->cols = calloc(ncols, sizeof(*w->cols));
	w->schema_name = strdup(schema_name);
	w->path = strdup(path);
	if (!w->cols || !w->schema_name || !w->path ||
	    asprintf(&w->tmp, "%s.tmp.XXXXXX", path) < 0) {
		w->tmp = NULL;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (int i = 0; i < ncols; i++) {
		if (cols[i].type > PQ_TIMESTAMP_MS || !cols[i].name ||
		    !*cols[i].name) {
			snprintf(err, errlen, "column %d: bad type or name", i);
			goto fail;
		}
		w->cols[i].spec = cols[i];
		w->cols[i].spec.name = strdup(cols[i].name);
		w->cols[i].physical = physical[cols[i].type];
	}
	fd = mkstemp(w->tmp);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", w->path, strerror(errno));
		free(w->tmp);
		w->tmp = NULL;
		goto fail;
	}
	fchmod(fd, 0644);
	w->fp = fdopen(fd, "wb");
	if (!w->fp || fwrite("PAR1", 1, 4, w->fp) != 4) {
		snprintf(err, errlen, "%s: %s", w->path, strerror(errno));
		if (!w->fp)
			close(fd);
		goto fail;
	}
	w->offset = 4;
	return w;
fail:
	if (w->fp)
		fclose(w->fp);
	if (w->tmp)
		unlink(w->tmp);
	free_writer(w);
	return NULL;
}

/* ---- values ------------------------------------------------------------- */

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap * 2 : 1024;
	while (n < need)
		n *= 2;
	void *q = realloc(*p, n * elem);
	if (!q)
		return -1;
	*p = q;
	*cap = n;
	return 0;
}

static uint64_t hash_bytes(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

static int dict_rehash(struct column *c, size_t nslots)
{
	uint32_t *s = calloc(nslots, sizeof(*s));
	if (!s)
		return -1;
	for (size_t e = 0; e < c->ndict; e++) {
		size_t h = hash_bytes(c->dict.data + c->dict_off[e],
				      c->dict_len[e]) & (nslots - 1);
		while (s[h])
			h = (h + 1) & (nslots - 1);
		s[h] = (uint32_t)e + 1;
	}
	free(c->slots);
	c->slots = s;
	c->nslots = nslots;
	return 0;
}

/* Index of the raw value in the dictionary, added when new; -1 on ENOMEM. */
static int64_t dict_index(struct column *c, const void *raw, size_t n)
{
	size_t h;

	if (c->ndict * 2 >= c->nslots &&
	    dict_rehash(c, c->nslots ? c->nslots * 2 : 1024) < 0)
		return -1;
	h = hash_bytes(raw, n) & (c->nslots - 1);
	while (c->slots[h]) {
		uint32_t e = c->slots[h] - 1;
		if (c->dict_len[e] == n &&
		    memcmp(c->dict.data + c->dict_off[e], raw, n) == 0)
			return e;
		h = (h + 1) & (c->nslots - 1);
	}
	if (grow((void **)&c->dict_off, &c->dictcap, c->ndict + 1,
		 sizeof(size_t)) < 0)
		return -1;
	c->dict_len = realloc(c->dict_len, c->dictcap * sizeof(uint32_t));
	if (!c->dict_len)
		return -1;
	if (c->physical == PQ_PT_BYTE_ARRAY) {
		uint32_t len = (uint32_t)n;
		tc_buf_put(&c->dict, &len, 4);
	}
	c->dict_off[c->ndict] = c->dict.len;
	c->dict_len[c->ndict] = (uint32_t)n;
	tc_buf_put(&c->dict, raw, n);
	if (c->dict.failed)
		return -1;
	c->slots[h] = (uint32_t)c->ndict + 1;
	return c->ndict++;
}

static size_t page_value_bytes(const struct column *c)
{
	return c->spec.dictionary ? c->nidx * 4 : c->plain.len;
}

static int flush_page(pq_writer *w, struct column *c);
static int flush_row_group(pq_writer *w);

static struct column *begin_value(pq_writer *w, int col, bool null)
{
	struct column *c;
	if (w->failed)
		return NULL;
	if (col < 0 || col >= w->ncols) {
		fail(w, "no column %d", col);
		return NULL;
	}
	c = &w->cols[col];
	if (c->done_this_row) {
		fail(w, "column %s: two values in one row", c->spec.name);
		return NULL;
	}
	if (null && !c->spec.optional) {
		fail(w, "column %s is REQUIRED: null value", c->spec.name);
		return NULL;
	}
	if (grow((void **)&c->def, &c->defcap, c->nrows + 1, 4) < 0) {
		fail(w, "out of memory");
		return NULL;
	}
	c->def[c->nrows++] = null ? 0 : 1;
	c->done_this_row = true;
	if (null) {
		c->page_nulls++;
		c->chunk_nulls++;
	}
	return c;
}

static int add_raw(pq_writer *w, struct column *c, const void *raw, size_t n)
{
	if (c->spec.dictionary) {
		int64_t e = dict_index(c, raw, n);
		if (e < 0 || grow((void **)&c->idx, &c->idxcap, c->nidx + 1,
				  4) < 0)
			return fail(w, "out of memory");
		c->idx[c->nidx++] = (uint32_t)e;
	} else {
		if (c->physical == PQ_PT_BYTE_ARRAY) {
			uint32_t len = (uint32_t)n;
			tc_buf_put(&c->plain, &len, 4);
		}
		tc_buf_put(&c->plain, raw, n);
		if (c->plain.failed)
			return fail(w, "out of memory");
	}
	return 0;
}

static int check_type(pq_writer *w, struct column *c, enum pq_type t)
{
	static const char *names[] = { "INT32", "INT64", "DOUBLE", "STRING",
				       "TIMESTAMP_MS" };
	if (c->spec.type == PQ_TIMESTAMP_MS && t == PQ_INT64)
		return 0;
	if (c->spec.type != t)
		return fail(w, "column %s is %s, not %s", c->spec.name,
			    names[c->spec.type], names[t]);
	return 0;
}

static int add_int(pq_writer *w, int col, int64_t v, enum pq_type t)
{
	struct column *c = begin_value(w, col, false);
	if (!c || check_type(w, c, t) < 0)
		return -1;
	if (!c->has_minmax || v < c->imin)
		c->imin = v;
	if (!c->has_minmax || v > c->imax)
		c->imax = v;
	c->has_minmax = true;
	if (t == PQ_INT32) {
		int32_t x = (int32_t)v;
		return add_raw(w, c, &x, 4);
	}
	return add_raw(w, c, &v, 8);
}

int pq_int32(pq_writer *w, int col, int32_t v)
{
	return add_int(w, col, v, PQ_INT32);
}

int pq_int64(pq_writer *w, int col, int64_t v)
{
	return add_int(w, col, v, PQ_INT64);
}

int pq_double(pq_writer *w, int col, double v)
{
	struct column *c = begin_value(w, col, false);
	if (!c || check_type(w, c, PQ_DOUBLE) < 0)
		return -1;
	/* NaN has no order: it stays out of the statistics.  Zero is written
	 * as -0 for a minimum and +0 for a maximum (parquet.thrift). */
	if (!isnan(v)) {
		double lo = v == 0 ? -0.0 : v, hi = v == 0 ? 0.0 : v;
		if (!c->has_minmax || lo < c->dmin)
			c->dmin = lo;
		if (!c->has_minmax || hi > c->dmax)
			c->dmax = hi;
		c->has_minmax = true;
	}
	return add_raw(w, c, &v, 8);
}

static int bytes_cmp(const struct tc_buf *a, const char *s, size_t n)
{
	size_t m = a->len < n ? a->len : n;
	int r = memcmp(a->data, s, m);
	if (r)
		return r;
	return a->len < n ? -1 : a->len > n;
}

int pq_string(pq_writer *w, int col, const char *s, size_t len)
{
	struct column *c = begin_value(w, col, false);
	if (!c || check_type(w, c, PQ_STRING) < 0)
		return -1;
	if (len > INT32_MAX)
		return fail(w, "column %s: string too long", c->spec.name);
	if (len > STATS_MAX_STRING)
		c->stats_off = true;
	if (!c->stats_off) {
		if (!c->has_minmax || bytes_cmp(&c->smin, s, len) > 0) {
			c->smin.len = 0;
			tc_buf_put(&c->smin, s, len);
		}
		if (!c->has_minmax || bytes_cmp(&c->smax, s, len) < 0) {
			c->smax.len = 0;
			tc_buf_put(&c->smax, s, len);
		}
		c->has_minmax = true;
	}
	return add_raw(w, c, s, len);
}

int pq_null(pq_writer *w, int col)
{
	return begin_value(w, col, true) ? 0 : -1;
}

int pq_end_row(pq_writer *w)
{
	size_t held = 0;

	if (w->failed)
		return -1;
	for (int i = 0; i < w->ncols; i++) {
		struct column *c = &w->cols[i];
		if (!c->done_this_row)
			return fail(w, "column %s: no value in row %lld",
				    c->spec.name, (long long)w->rows);
		c->done_this_row = false;
		if (page_value_bytes(c) + c->nrows / 8 >= w->opt.page_bytes &&
		    flush_page(w, c) < 0)
			return -1;
		held += c->chunk.len + c->dict.len;
		if (c->dict.len >= w->opt.dict_bytes)
			held = SIZE_MAX;
	}
	w->rows++;
	w->rg_rows++;
	if (w->rg_rows >= (int64_t)w->opt.row_group_rows ||
	    held >= w->opt.row_group_bytes)
		return flush_row_group(w);
	return 0;
}

/* ---- pages -------------------------------------------------------------- */

/* Compresses src into w->packed; the stored bytes. */
static int compress_page(pq_writer *w, const uint8_t *src, size_t n)
{
	struct tc_buf *out = &w->packed;
	size_t cap;

	out->len = 0;
	switch (w->opt.codec) {
	case PQ_UNCOMPRESSED:
		tc_buf_put(out, src, n);
		return out->failed ? fail(w, "out of memory") : 0;
	case PQ_SNAPPY:
		if (!pq_snappy())
			return fail(w, "snappy: libsnappy.so.1 cannot be loaded");
		cap = pq_snappy()->max_compressed_length(n);
		break;
	default:
		cap = ZSTD_compressBound(n);
	}
	if (cap > out->cap) {
		uint8_t *d = realloc(out->data, cap);
		if (!d)
			return fail(w, "out of memory");
		out->data = d;
		out->cap = cap;
	}
	if (w->opt.codec == PQ_SNAPPY) {
		size_t len = cap;
		if (pq_snappy()->compress((const char *)src, n, (char *)out->data,
					  &len) != SNAPPY_OK)
			return fail(w, "snappy compression failed");
		out->len = len;
	} else {
		size_t r = ZSTD_compress(out->data, cap, src, n,
					 w->opt.zstd_level);
		if (ZSTD_isError(r))
			return fail(w, "zstd: %s", ZSTD_getErrorName(r));
		out->len = r;
	}
	return 0;
}

/* Appends a page header and its stored body to the column's chunk. */
static void put_page(pq_writer *w, struct tc_buf *dst, int64_t *uncomp,
		     int type, size_t uncompressed, const uint8_t *body, size_t stored,
		     void (*sub)(struct tc_enc *, const void *), const void *ud)
{
	struct tc_buf hdr = { 0 };
	struct tc_enc e;

	tc_enc_init(&e, &hdr);
	tc_field_i32(&e, 1, type);
	tc_field_i32(&e, 2, (int32_t)uncompressed);
	tc_field_i32(&e, 3, (int32_t)stored);
	if (w->opt.crc)
		tc_field_i32(&e, 4, (int32_t)crc32(0, body, (uInt)stored));
	sub(&e, ud);
	tc_struct_end(&e);
	tc_buf_put(dst, hdr.data, hdr.len);
	tc_buf_put(dst, body, stored);
	*uncomp += hdr.len + uncompressed;
	if (hdr.failed)
		dst->failed = true;
	tc_buf_free(&hdr);
}

struct data_page_info {
	int64_t values, nulls;
	int encoding;
	size_t def_bytes;	/* v2: bytes of levels ahead of the values */
	bool compressed;
};

static void data_page_v1(struct tc_enc *e, const void *ud)
{
	const struct data_page_info *p = ud;
	tc_field_struct_begin(e, 5);
	tc_field_i32(e, 1, (int32_t)p->values);
	tc_field_i32(e, 2, p->encoding);
	tc_field_i32(e, 3, PQ_ENC_RLE);
	tc_field_i32(e, 4, PQ_ENC_RLE);
	tc_struct_end(e);
}

static void data_page_v2(struct tc_enc *e, const void *ud)
{
	const struct data_page_info *p = ud;
	tc_field_struct_begin(e, 8);
	tc_field_i32(e, 1, (int32_t)p->values);
	tc_field_i32(e, 2, (int32_t)p->nulls);
	tc_field_i32(e, 3, (int32_t)p->values);	/* rows: flat schema */
	tc_field_i32(e, 4, p->encoding);
	tc_field_i32(e, 5, (int32_t)p->def_bytes);
	tc_field_i32(e, 6, 0);
	tc_field_bool(e, 7, p->compressed);
	tc_struct_end(e);
}

static int flush_page(pq_writer *w, struct column *c)
{
	struct data_page_info info = {
		.values = (int64_t)c->nrows,
		.nulls = c->page_nulls,
		.encoding = c->spec.dictionary ? PQ_ENC_RLE_DICTIONARY
					       : PQ_ENC_PLAIN,
		.compressed = w->opt.codec != PQ_UNCOMPRESSED,
	};
	struct tc_buf *lv = &w->levels, *val = &w->values, *body = &w->body;

	if (c->nrows == 0)
		return 0;
	lv->len = val->len = body->len = 0;
	if (c->spec.optional)
		pq_rle_encode(lv, c->def, c->nrows, 1);
	if (c->spec.dictionary) {
		uint8_t width = (uint8_t)pq_bit_width(
		    c->ndict ? (uint32_t)c->ndict - 1 : 0);
		tc_buf_put(val, &width, 1);
		pq_rle_encode(val, c->idx, c->nidx, width);
	} else {
		tc_buf_put(val, c->plain.data, c->plain.len);
	}
	if (w->opt.page_version == 1) {
		if (c->spec.optional) {
			uint32_t n = (uint32_t)lv->len;
			tc_buf_put(body, &n, 4);
			tc_buf_put(body, lv->data, lv->len);
		}
		tc_buf_put(body, val->data, val->len);
		if (lv->failed || val->failed || body->failed)
			return fail(w, "out of memory");
		if (compress_page(w, body->data, body->len) < 0)
			return -1;
		put_page(w, &c->chunk, &c->chunk_uncompressed, 0, body->len,
			 w->packed.data, w->packed.len, data_page_v1, &info);
	} else {
		/* v2: levels stay uncompressed ahead of the values. */
		if (lv->failed || val->failed)
			return fail(w, "out of memory");
		if (compress_page(w, val->data, val->len) < 0)
			return -1;
		info.def_bytes = lv->len;
		tc_buf_put(body, lv->data, lv->len);
		tc_buf_put(body, w->packed.data, w->packed.len);
		put_page(w, &c->chunk, &c->chunk_uncompressed, 3,
			 lv->len + val->len, body->data, body->len,
			 data_page_v2, &info);
	}
	if (body->failed || c->chunk.failed)
		return fail(w, "out of memory");
	c->chunk_values += c->nrows;
	c->nrows = c->nidx = c->plain.len = 0;
	c->page_nulls = 0;
	return 0;
}

static void dict_page_header(struct tc_enc *e, const void *ud)
{
	const struct column *c = ud;
	tc_field_struct_begin(e, 7);
	tc_field_i32(e, 1, (int32_t)c->ndict);
	tc_field_i32(e, 2, PQ_ENC_PLAIN);
	tc_struct_end(e);
}

static int write_all(pq_writer *w, const void *p, size_t n)
{
	if (n && fwrite(p, 1, n, w->fp) != n)
		return fail(w, "%s: %s", w->path, strerror(errno));
	w->offset += n;
	return 0;
}

static void encode_stat(const struct column *c, struct tc_enc *e, int id,
			bool max)
{
	int32_t i32;
	int64_t i64;
	double d;

	switch (c->physical) {
	case PQ_PT_INT32:
		i32 = (int32_t)(max ? c->imax : c->imin);
		tc_field_binary(e, id, &i32, 4);
		break;
	case PQ_PT_INT64:
		i64 = max ? c->imax : c->imin;
		tc_field_binary(e, id, &i64, 8);
		break;
	case PQ_PT_DOUBLE:
		d = max ? c->dmax : c->dmin;
		tc_field_binary(e, id, &d, 8);
		break;
	default:
		tc_field_binary(e, id, max ? c->smax.data : c->smin.data,
				max ? c->smax.len : c->smin.len);
	}
}

/* Writes one column's chunk and its ColumnChunk entry. */
static int write_chunk(pq_writer *w, struct column *c, struct tc_enc *e,
		       int64_t *uncomp_total, int64_t *comp_total)
{
	int64_t start = w->offset, dict_off = -1, data_off, uncomp = 0;

	if (c->spec.dictionary) {
		w->body.len = 0;
		if (compress_page(w, c->dict.data, c->dict.len) < 0)
			return -1;
		put_page(w, &w->body, &uncomp, 2, c->dict.len, w->packed.data,
			 w->packed.len, dict_page_header, c);
		if (w->body.failed)
			return fail(w, "out of memory");
		dict_off = w->offset;
		if (write_all(w, w->body.data, w->body.len) < 0)
			return -1;
	}
	data_off = w->offset;
	if (write_all(w, c->chunk.data, c->chunk.len) < 0)
		return -1;
	uncomp += c->chunk_uncompressed;

	tc_struct_begin(e);
	tc_field_i64(e, 2, start);
	tc_field_struct_begin(e, 3);
	tc_field_i32(e, 1, c->physical);
	tc_field_list_begin(e, 2, TC_I32, c->spec.dictionary ? 3 : 2);
	tc_elem_i32(e, PQ_ENC_PLAIN);
	tc_elem_i32(e, PQ_ENC_RLE);
	if (c->spec.dictionary)
		tc_elem_i32(e, PQ_ENC_RLE_DICTIONARY);
	tc_field_list_begin(e, 3, TC_BINARY, 1);
	tc_elem_string(e, c->spec.name);
	tc_field_i32(e, 4, w->opt.codec);
	tc_field_i64(e, 5, c->chunk_values);
	tc_field_i64(e, 6, uncomp);
	tc_field_i64(e, 7, w->offset - start);
	tc_field_i64(e, 9, data_off);
	if (dict_off >= 0)
		tc_field_i64(e, 11, dict_off);
	tc_field_struct_begin(e, 12);
	tc_field_i64(e, 3, c->chunk_nulls);
	if (c->has_minmax && !c->stats_off) {
		encode_stat(c, e, 5, true);
		encode_stat(c, e, 6, false);
	}
	tc_struct_end(e);	/* Statistics */
	tc_struct_end(e);	/* ColumnMetaData */
	tc_struct_end(e);	/* ColumnChunk */

	*uncomp_total += uncomp;
	*comp_total += w->offset - start;
	return 0;
}

static void reset_chunk(struct column *c)
{
	c->chunk.len = c->dict.len = 0;
	c->ndict = 0;
	if (c->slots)
		memset(c->slots, 0, c->nslots * sizeof(*c->slots));
	c->chunk_values = c->chunk_nulls = c->chunk_uncompressed = 0;
	c->has_minmax = c->stats_off = false;
}

static int flush_row_group(pq_writer *w)
{
	struct tc_enc e;
	int64_t start = w->offset, uncomp = 0, comp = 0;

	if (w->rg_rows == 0)
		return 0;
	for (int i = 0; i < w->ncols; i++)
		if (flush_page(w, &w->cols[i]) < 0)
			return -1;
	tc_enc_init(&e, &w->rowgroups);
	tc_struct_begin(&e);
	tc_field_list_begin(&e, 1, TC_STRUCT, (uint32_t)w->ncols);
	for (int i = 0; i < w->ncols; i++) {
		if (write_chunk(w, &w->cols[i], &e, &uncomp, &comp) < 0)
			return -1;
		reset_chunk(&w->cols[i]);
	}
	tc_field_i64(&e, 2, uncomp);
	tc_field_i64(&e, 3, w->rg_rows);
	tc_field_i64(&e, 5, start);
	tc_field_i64(&e, 6, comp);
	tc_struct_end(&e);
	if (w->rowgroups.failed)
		return fail(w, "out of memory");
	w->nrowgroups++;
	w->rg_rows = 0;
	return 0;
}

/* ---- footer ------------------------------------------------------------- */

static void encode_footer(pq_writer *w, struct tc_buf *out)
{
	struct tc_enc e;

	tc_enc_init(&e, out);
	tc_field_i32(&e, 1, 1);
	tc_field_list_begin(&e, 2, TC_STRUCT, (uint32_t)w->ncols + 1);
	tc_struct_begin(&e);
	tc_field_string(&e, 4, w->schema_name);
	tc_field_i32(&e, 5, w->ncols);
	tc_struct_end(&e);
	for (int i = 0; i < w->ncols; i++) {
		const struct column *c = &w->cols[i];
		tc_struct_begin(&e);
		tc_field_i32(&e, 1, c->physical);
		tc_field_i32(&e, 3, c->spec.optional ? PQ_OPTIONAL
						     : PQ_REQUIRED);
		tc_field_string(&e, 4, c->spec.name);
		if (c->physical == PQ_PT_BYTE_ARRAY) {
			tc_field_i32(&e, 6, 0);	/* ConvertedType UTF8 */
			tc_field_struct_begin(&e, 10);	/* LogicalType */
			tc_field_struct_begin(&e, 1);	/* STRING */
			tc_struct_end(&e);
			tc_struct_end(&e);
		} else if (c->spec.type == PQ_TIMESTAMP_MS) {
			tc_field_i32(&e, 6, 9);	/* TIMESTAMP_MILLIS */
			tc_field_struct_begin(&e, 10);	/* LogicalType */
			tc_field_struct_begin(&e, 8);	/* TIMESTAMP */
			tc_field_bool(&e, 1, true);	/* isAdjustedToUTC */
			tc_field_struct_begin(&e, 2);	/* unit */
			tc_field_struct_begin(&e, 1);	/* MILLIS */
			tc_struct_end(&e);
			tc_struct_end(&e);
			tc_struct_end(&e);
			tc_struct_end(&e);
		}
		tc_struct_end(&e);
	}
	tc_field_i64(&e, 3, w->rows);
	tc_field_list_begin(&e, 4, TC_STRUCT, w->nrowgroups);
	tc_buf_put(out, w->rowgroups.data, w->rowgroups.len);
	tc_field_string(&e, 6, w->opt.created_by ? w->opt.created_by
						  : "kxrun");
	/* min_value/max_value are in each type's natural order. */
	tc_field_list_begin(&e, 7, TC_STRUCT, (uint32_t)w->ncols);
	for (int i = 0; i < w->ncols; i++) {
		tc_struct_begin(&e);
		tc_field_struct_begin(&e, 1);	/* TYPE_ORDER */
		tc_struct_end(&e);
		tc_struct_end(&e);
	}
	tc_struct_end(&e);
}

int pq_close(pq_writer *w, char *err, size_t errlen)
{
	struct tc_buf footer = { 0 };
	int rc = -1;

	for (int i = 0; i < w->ncols && !w->failed; i++)
		if (w->cols[i].done_this_row)
			fail(w, "row %lld not ended", (long long)w->rows);
	if (!w->failed && flush_row_group(w) == 0) {
		encode_footer(w, &footer);
		uint32_t n = (uint32_t)footer.len;
		if (footer.failed)
			fail(w, "out of memory");
		else if (write_all(w, footer.data, footer.len) == 0 &&
			 write_all(w, &n, 4) == 0 &&
			 write_all(w, "PAR1", 4) == 0) {
			if (fflush(w->fp) != 0 || fsync(fileno(w->fp)) != 0)
				fail(w, "%s: %s", w->path, strerror(errno));
		}
	}
	tc_buf_free(&footer);
	if (fclose(w->fp) != 0)
		fail(w, "%s: %s", w->path, strerror(errno));
	w->fp = NULL;
	if (!w->failed && rename(w->tmp, w->path) != 0)
		fail(w, "%s: %s", w->path, strerror(errno));
	if (w->failed) {
		unlink(w->tmp);
		snprintf(err, errlen, "%s", w->err);
	} else {
		rc = 0;
	}
	free_writer(w);
	return rc;
}

void pq_abort(pq_writer *w)
{
	if (!w)
		return;
	if (w->fp)
		fclose(w->fp);
	unlink(w->tmp);
	free_writer(w);
}
