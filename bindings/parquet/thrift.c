/* thrift.c - Thrift compact protocol encoder and decoder (see thrift.h). */
#include "thrift.h"

#include <stdlib.h>
#include <string.h>

void tc_buf_put(struct tc_buf *b, const void *p, size_t n)
{
	if (b->failed || n == 0)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *d = realloc(b->data, cap);
		if (!d) {
			b->failed = true;
			return;
		}
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

void tc_buf_free(struct tc_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/* ---- encoder ------------------------------------------------------------ */

static void put_byte(struct tc_enc *e, uint8_t v)
{
	tc_buf_put(e->out, &v, 1);
}

void tc_buf_varint(struct tc_buf *out, uint64_t v)
{
	uint8_t b[10];
	int n = 0;
	while (v >= 0x80) {
		b[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	b[n++] = (uint8_t)v;
	tc_buf_put(out, b, n);
}

static void put_varint(struct tc_enc *e, uint64_t v)
{
	tc_buf_varint(e->out, v);
}

static uint64_t zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

void tc_enc_init(struct tc_enc *e, struct tc_buf *out)
{
	memset(e, 0, sizeof(*e));
	e->out = out;
}

static void field_header(struct tc_enc *e, int16_t id, enum tc_type t)
{
	int16_t delta = id - e->last[e->depth];
	if (delta > 0 && delta <= 15) {
		put_byte(e, (uint8_t)(delta << 4 | t));
	} else {
		put_byte(e, (uint8_t)t);
		put_varint(e, zigzag(id));
	}
	e->last[e->depth] = id;
}

void tc_field_i32(struct tc_enc *e, int16_t id, int32_t v)
{
	field_header(e, id, TC_I32);
	put_varint(e, zigzag(v));
}

void tc_field_i64(struct tc_enc *e, int16_t id, int64_t v)
{
	field_header(e, id, TC_I64);
	put_varint(e, zigzag(v));
}

void tc_field_bool(struct tc_enc *e, int16_t id, bool v)
{
	field_header(e, id, v ? TC_TRUE : TC_FALSE);
}

void tc_field_binary(struct tc_enc *e, int16_t id, const void *p, size_t n)
{
	field_header(e, id, TC_BINARY);
	put_varint(e, n);
	tc_buf_put(e->out, p, n);
}

void tc_field_string(struct tc_enc *e, int16_t id, const char *s)
{
	tc_field_binary(e, id, s, strlen(s));
}

static void push(struct tc_enc *e)
{
	if (e->depth + 1 >= TC_MAX_DEPTH) {
		e->out->failed = true;
		return;
	}
	e->last[++e->depth] = 0;
}

void tc_field_struct_begin(struct tc_enc *e, int16_t id)
{
	field_header(e, id, TC_STRUCT);
	push(e);
}

void tc_struct_begin(struct tc_enc *e)
{
	push(e);
}

void tc_struct_end(struct tc_enc *e)
{
	put_byte(e, TC_STOP);
	if (e->depth > 0)
		e->depth--;
}

void tc_field_list_begin(struct tc_enc *e, int16_t id, enum tc_type elem,
			 uint32_t n)
{
	field_header(e, id, TC_LIST);
	if (n < 15) {
		put_byte(e, (uint8_t)(n << 4 | elem));
	} else {
		put_byte(e, (uint8_t)(0xf0 | elem));
		put_varint(e, n);
	}
}

void tc_elem_i32(struct tc_enc *e, int32_t v)
{
	put_varint(e, zigzag(v));
}

void tc_elem_string(struct tc_enc *e, const char *s)
{
	size_t n = strlen(s);
	put_varint(e, n);
	tc_buf_put(e->out, s, n);
}

/* ---- decoder ------------------------------------------------------------ */

void tc_dec_init(struct tc_dec *d, const void *p, size_t n)
{
	memset(d, 0, sizeof(*d));
	d->p = p;
	d->end = d->p + n;
}

static uint8_t get_byte(struct tc_dec *d)
{
	if (d->bad || d->p >= d->end) {
		d->bad = true;
		return 0;
	}
	return *d->p++;
}

static uint64_t get_varint(struct tc_dec *d)
{
	uint64_t v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		uint8_t b = get_byte(d);
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return v;
	}
	d->bad = true;
	return 0;
}

static int64_t unzigzag(uint64_t v)
{
	return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

void tc_dec_struct_begin(struct tc_dec *d)
{
	if (d->depth + 1 >= TC_MAX_DEPTH) {
		d->bad = true;
		return;
	}
	d->last[++d->depth] = 0;
}

bool tc_next_field(struct tc_dec *d, int16_t *id, enum tc_type *type)
{
	uint8_t b = get_byte(d);
	if (d->bad || b == TC_STOP) {
		if (d->depth > 0)
			d->depth--;
		return false;
	}
	*type = b & 0x0f;
	if (b >> 4)
		*id = d->last[d->depth] + (b >> 4);
	else
		*id = (int16_t)unzigzag(get_varint(d));
	d->last[d->depth] = *id;
	return !d->bad;
}

int64_t tc_read_int(struct tc_dec *d)
{
	return unzigzag(get_varint(d));
}

double tc_read_double(struct tc_dec *d)
{
	double v = 0;
	if (d->end - d->p < 8) {
		d->bad = true;
		return 0;
	}
	memcpy(&v, d->p, 8);
	d->p += 8;
	return v;
}

const uint8_t *tc_read_binary(struct tc_dec *d, uint32_t *n)
{
	uint64_t len = get_varint(d);
	if (d->bad || len > (uint64_t)(d->end - d->p)) {
		d->bad = true;
		*n = 0;
		return NULL;
	}
	const uint8_t *p = d->p;
	d->p += len;
	*n = (uint32_t)len;
	return p;
}

uint32_t tc_read_list(struct tc_dec *d, enum tc_type *elem)
{
	uint8_t b = get_byte(d);
	uint64_t n = b >> 4;
	*elem = b & 0x0f;
	if (n == 15)
		n = get_varint(d);
	/* Every element takes at least one byte: a larger count is a lie. */
	if (n > (uint64_t)(d->end - d->p)) {
		d->bad = true;
		return 0;
	}
	return (uint32_t)n;
}

static void skip(struct tc_dec *d, enum tc_type type, int level)
{
	int16_t id;
	enum tc_type t;
	uint32_t n;

	if (level > TC_MAX_DEPTH) {
		d->bad = true;
		return;
	}
	switch (type) {
	case TC_TRUE:
	case TC_FALSE:
		break;
	case TC_BYTE:
		get_byte(d);
		break;
	case TC_I16:
	case TC_I32:
	case TC_I64:
		get_varint(d);
		break;
	case TC_DOUBLE:
		tc_read_double(d);
		break;
	case TC_BINARY:
		tc_read_binary(d, &n);
		break;
	case TC_LIST:
	case TC_SET:
		n = tc_read_list(d, &t);
		for (uint32_t i = 0; i < n && !d->bad; i++) {
			if (t == TC_TRUE || t == TC_FALSE)
				get_byte(d);
			else
				skip(d, t, level + 1);
		}
		break;
	case TC_MAP: {
		n = (uint32_t)get_varint(d);
		if (n == 0)
			break;
		uint8_t kv = get_byte(d);
		for (uint32_t i = 0; i < n && !d->bad; i++) {
			skip(d, kv >> 4, level + 1);
			skip(d, kv & 0x0f, level + 1);
		}
		break;
	}
	case TC_STRUCT:
		tc_dec_struct_begin(d);
		while (!d->bad && tc_next_field(d, &id, &t))
			skip(d, t, level + 1);
		break;
	default:
		d->bad = true;
	}
}

void tc_skip(struct tc_dec *d, enum tc_type type)
{
	skip(d, type, 0);
}
