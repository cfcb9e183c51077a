/*
 * thrift.h - the Thrift compact protocol, as much as Parquet's footer and
 * page headers need: structs, i16/i32/i64 (zigzag varints), double, binary,
 * bool, lists.  An encoder appending to a growable buffer, and a decoder that
 * walks a byte range and can skip any field it does not know.
 */
#ifndef KX_THRIFT_H
#define KX_THRIFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum tc_type {
	TC_STOP = 0, TC_TRUE = 1, TC_FALSE = 2, TC_BYTE = 3, TC_I16 = 4,
	TC_I32 = 5, TC_I64 = 6, TC_DOUBLE = 7, TC_BINARY = 8, TC_LIST = 9,
	TC_SET = 10, TC_MAP = 11, TC_STRUCT = 12,
};

/* Growable byte buffer; `failed` is set once an allocation failed, after
 * which appends are ignored (callers check once at the end). */
struct tc_buf {
	uint8_t *data;
	size_t len, cap;
	bool failed;
};

void tc_buf_put(struct tc_buf *b, const void *p, size_t n);
/* v as an unsigned LEB128 varint (Thrift compact, RLE run headers). */
void tc_buf_varint(struct tc_buf *b, uint64_t v);
void tc_buf_free(struct tc_buf *b);

#define TC_MAX_DEPTH 16

/* Encoder: field ids are relative to the enclosing struct, so nested
 * structs push the last field id. */
struct tc_enc {
	struct tc_buf *out;
	int16_t last[TC_MAX_DEPTH];
	int depth;
};

void tc_enc_init(struct tc_enc *e, struct tc_buf *out);
void tc_field_i32(struct tc_enc *e, int16_t id, int32_t v);
void tc_field_i64(struct tc_enc *e, int16_t id, int64_t v);
void tc_field_bool(struct tc_enc *e, int16_t id, bool v);
void tc_field_binary(struct tc_enc *e, int16_t id, const void *p, size_t n);
void tc_field_string(struct tc_enc *e, int16_t id, const char *s);
void tc_field_struct_begin(struct tc_enc *e, int16_t id);
void tc_field_list_begin(struct tc_enc *e, int16_t id, enum tc_type elem,
			 uint32_t n);
void tc_struct_begin(struct tc_enc *e);	/* a struct as a list element */
void tc_struct_end(struct tc_enc *e);	/* writes STOP, pops */
void tc_elem_i32(struct tc_enc *e, int32_t v);
void tc_elem_string(struct tc_enc *e, const char *s);

/* Decoder over [p, end).  Every read checks bounds; on malformed input
 * `bad` is set and reads return zeros. */
struct tc_dec {
	const uint8_t *p, *end;
	int16_t last[TC_MAX_DEPTH];
	int depth;
	bool bad;
};

void tc_dec_init(struct tc_dec *d, const void *p, size_t n);
/* Next field of the current struct: returns false at STOP (and pops). */
bool tc_next_field(struct tc_dec *d, int16_t *id, enum tc_type *type);
void tc_dec_struct_begin(struct tc_dec *d);
int64_t tc_read_int(struct tc_dec *d);	/* i16, i32 or i64 */
double tc_read_double(struct tc_dec *d);
/* Binary: pointer into the input and its length. */
const uint8_t *tc_read_binary(struct tc_dec *d, uint32_t *n);
/* List header: element type and count. */
uint32_t tc_read_list(struct tc_dec *d, enum tc_type *elem);
/* Skips a value of the given type (bool field values are in the type). */
void tc_skip(struct tc_dec *d, enum tc_type type);

#endif
