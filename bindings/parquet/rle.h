/*
 * rle.h - Parquet's RLE/bit-packed hybrid encoding (definition levels and
 * dictionary indices), shared by the writer and the reader.
 */
#ifndef KX_PQ_RLE_H
#define KX_PQ_RLE_H

#include <stddef.h>
#include <stdint.h>

#include "thrift.h"

/* Appends n values of `width` bits (0..32) as runs: repeats of 8 or more
 * become RLE runs, the rest bit-packed groups of 8 (the last zero-padded). */
void pq_rle_encode(struct tc_buf *out, const uint32_t *v, size_t n, int width);

/* Decodes exactly n values from [p, p+len).  Returns the bytes consumed, or
 * -1 when the input is short or malformed, or a value is >= limit. */
long pq_rle_decode(const uint8_t *p, size_t len, int width, uint32_t *v,
		   size_t n, uint32_t limit);

/* Bits needed for values 0..max (at least 1). */
int pq_bit_width(uint32_t max);

#endif
