/* pqpages.c - the Parquet writer's pages, column chunks and row groups
 * (see pqwriter.h). */
#include "pqwriter.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "snappy_dl.h"
#include <zlib.h>
#include <zstd.h>

#include "rle.h"

/* Compresses src into w->packed; the stored bytes. */
static int compress_page(pq_writer *w, const uint8_t *src, size_t n)
{
	struct tc_buf *out = &w->packed;
	size_t cap;

	out->len = 0;
	switch (w->opt.codec) {
	case PQ_UNCOMPRESSED:
		tc_buf_put(out, src, n);
		return out->failed ? pq_fail(w, "out of memory") : 0;
	case PQ_SNAPPY:
		if (!pq_snappy())
			return pq_fail(w, "snappy: libsnappy.so.1 cannot be loaded");
		cap = pq_snappy()->max_compressed_length(n);
		break;
	default:
		cap = ZSTD_compressBound(n);
	}
	if (cap > out->cap) {
		uint8_t *d = realloc(out->data, cap);
		if (!d)
			return pq_fail(w, "out of memory");
		out->data = d;
		out->cap = cap;
	}
	if (w->opt.codec == PQ_SNAPPY) {
		size_t len = cap;
		if (pq_snappy()->compress((const char *)src, n, (char *)out->data,
					  &len) != SNAPPY_OK)
			return pq_fail(w, "snappy compression failed");
		out->len = len;
	} else {
		size_t r = ZSTD_compress(out->data, cap, src, n,
					 w->opt.zstd_level);
		if (ZSTD_isError(r))
			return pq_fail(w, "zstd: %s", ZSTD_getErrorName(r));
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

int pq_flush_page(pq_writer *w, struct column *c)
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
			return pq_fail(w, "out of memory");
		if (compress_page(w, body->data, body->len) < 0)
			return -1;
		put_page(w, &c->chunk, &c->chunk_uncompressed, 0, body->len,
			 w->packed.data, w->packed.len, data_page_v1, &info);
	} else {
		/* v2: levels stay uncompressed ahead of the values. */
		if (lv->failed || val->failed)
			return pq_fail(w, "out of memory");
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
		return pq_fail(w, "out of memory");
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

int pq_write_all(pq_writer *w, const void *p, size_t n)
{
	if (n && fwrite(p, 1, n, w->fp) != n)
		return pq_fail(w, "%s: %s", w->file.path, strerror(errno));
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
			return pq_fail(w, "out of memory");
		dict_off = w->offset;
		if (pq_write_all(w, w->body.data, w->body.len) < 0)
			return -1;
	}
	data_off = w->offset;
	if (pq_write_all(w, c->chunk.data, c->chunk.len) < 0)
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

int pq_flush_row_group(pq_writer *w)
{
	struct tc_enc e;
	int64_t start = w->offset, uncomp = 0, comp = 0;

	if (w->rg_rows == 0)
		return 0;
	for (int i = 0; i < w->ncols; i++)
		if (pq_flush_page(w, &w->cols[i]) < 0)
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
		return pq_fail(w, "out of memory");
	w->nrowgroups++;
	w->rg_rows = 0;
	return 0;
}
