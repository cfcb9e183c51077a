/* parquet.c - streaming Parquet writer: open, values, rows, footer, close
 * (see parquet.h; pages and row groups in pqpages.c). */
#include "pqwriter.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


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

int pq_fail(pq_writer *w, const char *fmt, ...)
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

	if (!w) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	w->file.fd = -1;
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
	if (!w->cols || !w->schema_name) {
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
	if (kx_atomic_begin(&w->file, path, 0644, err, errlen) < 0)
		goto fail;
	w->fp = fdopen(w->file.fd, "wb");
	if (!w->fp || fwrite("PAR1", 1, 4, w->fp) != 4) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	w->offset = 4;
	return w;
fail:
	pq_abort(w);
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


static struct column *begin_value(pq_writer *w, int col, bool null)
{
	struct column *c;
	if (w->failed)
		return NULL;
	if (col < 0 || col >= w->ncols) {
		pq_fail(w, "no column %d", col);
		return NULL;
	}
	c = &w->cols[col];
	if (c->done_this_row) {
		pq_fail(w, "column %s: two values in one row", c->spec.name);
		return NULL;
	}
	if (null && !c->spec.optional) {
		pq_fail(w, "column %s is REQUIRED: null value", c->spec.name);
		return NULL;
	}
	if (grow((void **)&c->def, &c->defcap, c->nrows + 1, 4) < 0) {
		pq_fail(w, "out of memory");
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
			return pq_fail(w, "out of memory");
		c->idx[c->nidx++] = (uint32_t)e;
	} else {
		if (c->physical == PQ_PT_BYTE_ARRAY) {
			uint32_t len = (uint32_t)n;
			tc_buf_put(&c->plain, &len, 4);
		}
		tc_buf_put(&c->plain, raw, n);
		if (c->plain.failed)
			return pq_fail(w, "out of memory");
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
		return pq_fail(w, "column %s is %s, not %s", c->spec.name,
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
		return pq_fail(w, "column %s: string too long", c->spec.name);
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
			return pq_fail(w, "column %s: no value in row %lld",
				    c->spec.name, (long long)w->rows);
		c->done_this_row = false;
		if (page_value_bytes(c) + c->nrows / 8 >= w->opt.page_bytes &&
		    pq_flush_page(w, c) < 0)
			return -1;
		held += c->chunk.len + c->dict.len;
		if (c->dict.len >= w->opt.dict_bytes)
			held = SIZE_MAX;
	}
	w->rows++;
	w->rg_rows++;
	if (w->rg_rows >= (int64_t)w->opt.row_group_rows ||
	    held >= w->opt.row_group_bytes)
		return pq_flush_row_group(w);
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
			pq_fail(w, "row %lld not ended", (long long)w->rows);
	if (!w->failed && pq_flush_row_group(w) == 0) {
		encode_footer(w, &footer);
		uint32_t n = (uint32_t)footer.len;
		if (footer.failed)
			pq_fail(w, "out of memory");
		else if (pq_write_all(w, footer.data, footer.len) == 0 &&
			 pq_write_all(w, &n, 4) == 0 &&
			 pq_write_all(w, "PAR1", 4) == 0) {
			if (fflush(w->fp) != 0 || fsync(fileno(w->fp)) != 0)
				pq_fail(w, "%s: %s", w->file.path, strerror(errno));
		}
	}
	tc_buf_free(&footer);
	if (fclose(w->fp) != 0)
		pq_fail(w, "%s: %s", w->file.path, strerror(errno));
	w->fp = NULL;
	w->file.fd = -1;	/* closed with fp, synced above */
	char cerr[256];
	if (!w->failed && kx_atomic_commit(&w->file, cerr, sizeof(cerr)) < 0)
		pq_fail(w, "%s", cerr);
	if (w->failed) {
		kx_atomic_abort(&w->file);
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
	if (w->fp) {
		fclose(w->fp);
		w->file.fd = -1;
	}
	kx_atomic_abort(&w->file);
	free_writer(w);
}
