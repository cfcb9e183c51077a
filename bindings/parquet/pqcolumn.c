/* pqcolumn.c - the Parquet reader's pages and flat column values, CRCs
 * and bounds checked (parquet.h, pqreader.h). */
#include "pqreader.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snappy_dl.h"
#include <zlib.h>
#include <zstd.h>

#include "rle.h"
#include "thrift.h"

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
			pq_errf(err, errlen, "uncompressed page size mismatch");
			return NULL;
		}
		return src;
	}
	if (want > *cap || !*dst) {
		uint8_t *p = realloc(*dst, want ? want : 1);
		if (!p) {
			pq_errf(err, errlen, "out of memory");
			return NULL;
		}
		*dst = p;
		*cap = want;
	}
	if (codec == PQ_SNAPPY) {
		size_t len = want;
		const struct pq_snappy *sn = pq_snappy();
		if (!sn) {
			pq_errf(err, errlen, "snappy: libsnappy.so.1 cannot be loaded");
			return NULL;
		}
		if (sn->uncompress((const char *)src, n, (char *)*dst,
				   &len) != SNAPPY_OK || len != want) {
			pq_errf(err, errlen, "snappy: corrupt page");
			return NULL;
		}
	} else if (codec == PQ_ZSTD) {
		size_t r = ZSTD_decompress(*dst, want, src, n);
		if (ZSTD_isError(r) || r != want) {
			pq_errf(err, errlen, "zstd: corrupt page");
			return NULL;
		}
	} else {
		pq_errf(err, errlen, "unsupported codec %d", codec);
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
		return pq_errf(err, errlen, "page holds more values than the "
			    "column chunk");
	def = malloc((n ? n : 1) * sizeof(*def));
	where = malloc((n ? n : 1) * sizeof(*where));
	idx32 = malloc((n ? n : 1) * sizeof(*idx32));
	if (!def || !where || !idx32) {
		pq_errf(err, errlen, "out of memory");
		goto out;
	}
	if (optional) {
		if (pq_rle_decode(levels, nlevels, 1, def, n, 2) < 0) {
			pq_errf(err, errlen, "corrupt definition levels");
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
			pq_errf(err, errlen, "truncated PLAIN values");
			goto out;
		}
	} else if (h->encoding == PQ_ENC_RLE_DICTIONARY ||
		   h->encoding == PQ_ENC_PLAIN_DICTIONARY) {
		if (!dict->loaded) {
			pq_errf(err, errlen, "dictionary page missing");
			goto out;
		}
		if (present > 0 &&
		    (nvals < 1 ||
		     pq_rle_decode(vals + 1, nvals - 1, vals[0], idx32,
				   present, (uint32_t)dict->n) < 0)) {
			pq_errf(err, errlen, "corrupt dictionary indices");
			goto out;
		}
		for (int64_t k = 0; k < present; k++)
			dict_copy(dict, o, idx32[k], where[k]);
	} else {
		pq_errf(err, errlen, "unsupported encoding %d", h->encoding);
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
		return pq_errf(err, errlen, "no column %d in row group %d", col,
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
		return pq_errf(err, errlen, "column %s: chunk out of range",
			    f->schema[col + 1].name);
	buf = malloc(size ? size : 1);
	out->null = calloc(m->num_values ? m->num_values : 1, sizeof(bool));
	if (!buf || !out->null || alloc_plain(&o, m->type, m->num_values,
					      &strbuf) < 0) {
		pq_errf(err, errlen, "out of memory");
		goto out;
	}
	if (pq_read_at(f->fd, buf, size, start) < 0) {
		pq_errf(err, errlen, "cannot read column chunk");
		goto out;
	}
	for (int64_t pos = 0; got < m->num_values;) {
		struct tc_dec d;
		struct page_hdr h;
		const uint8_t *body, *data;
		size_t hlen;

		if (pos >= size) {
			pq_errf(err, errlen, "chunk ends after %lld of %lld values",
			     (long long)got, (long long)m->num_values);
			goto out;
		}
		tc_dec_init(&d, buf + pos, size - pos);
		decode_page_header(&d, &h);
		hlen = d.p - (buf + pos);
		if (d.bad || h.stored < 0 || h.uncompressed < 0 ||
		    h.stored > size - pos - (int64_t)hlen) {
			pq_errf(err, errlen, "corrupt page header at %lld",
			     (long long)(start + pos));
			goto out;
		}
		body = buf + pos + hlen;
		pos += hlen + h.stored;
		if (h.has_crc && crc32(0, body, h.stored) != h.crc) {
			pq_errf(err, errlen, "page at %lld: CRC mismatch",
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
				pq_errf(err, errlen, "corrupt dictionary page");
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
		pq_errf(err, errlen, "out of memory");
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
			pq_errf(err, errlen, "out of memory");
			goto out;
		}
		for (int64_t i = 0; i < got; i++)
			out->str[i] = out->null[i] ? NULL
						   : out->strbuf + o.off[i];
	}
	rc = 0;
	goto out;
short_page:
	pq_errf(err, errlen, "column %s: truncated page",
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
