/* rle.c - RLE/bit-packed hybrid (see rle.h). */
#include "rle.h"


int pq_bit_width(uint32_t max)
{
	int w = 1;
	while (w < 32 && (max >> w))
		w++;
	return w;
}

static void emit_packed(struct tc_buf *out, const uint32_t *v, size_t n,
			int width)
{
	size_t groups = (n + 7) / 8;
	uint8_t buf[32];	/* 8 values of up to 32 bits */

	if (n == 0)
		return;
	tc_buf_varint(out, groups << 1 | 1);
	for (size_t g = 0; g < groups; g++) {
		uint64_t acc = 0;
		int bits = 0, nb = 0;
		for (size_t k = 0; k < 8; k++) {
			size_t i = g * 8 + k;
			uint64_t x = i < n ? v[i] : 0;
			acc |= x << bits;
			bits += width;
			while (bits >= 8) {
				buf[nb++] = (uint8_t)acc;
				acc >>= 8;
				bits -= 8;
			}
		}
		tc_buf_put(out, buf, nb);	/* 8 * width bits: whole bytes */
	}
}

static void emit_run(struct tc_buf *out, uint32_t value, size_t count,
		     int width)
{
	uint8_t b[4];
	int nb = (width + 7) / 8;

	tc_buf_varint(out, (uint64_t)count << 1);
	for (int k = 0; k < nb; k++)
		b[k] = (uint8_t)(value >> (8 * k));
	tc_buf_put(out, b, nb);
}

void pq_rle_encode(struct tc_buf *out, const uint32_t *v, size_t n, int width)
{
	size_t i = 0, pending = 0;	/* v[pending..i) waits to be packed */

	while (i < n) {
		size_t r = 1;
		while (i + r < n && v[i + r] == v[i])
			r++;
		if (r >= 8) {
			/* Packed runs hold multiples of 8 values: top up the
			 * pending values from this run first. */
			size_t k = (8 - (i - pending) % 8) % 8;
			if (r - k >= 8) {
				i += k;
				emit_packed(out, v + pending, i - pending, width);
				emit_run(out, v[i], r - k, width);
				i += r - k;
				pending = i;
				continue;
			}
		}
		i += r;
	}
	emit_packed(out, v + pending, n - pending, width);
}

static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return 0;
	}
	return -1;
}

long pq_rle_decode(const uint8_t *p, size_t len, int width, uint32_t *v,
		   size_t n, uint32_t limit)
{
	const uint8_t *start = p, *end = p + len;
	size_t got = 0;
	uint64_t mask = width >= 32 ? 0xffffffffu : ((1ull << width) - 1);

	if (width < 0 || width > 32)
		return -1;
	while (got < n) {
		uint64_t h;
		if (get_varint(&p, end, &h) < 0)
			return -1;
		if (h & 1) {
			uint64_t count = (h >> 1) * 8;
			uint64_t bytes = (h >> 1) * (uint64_t)width;
			if (count == 0 || bytes > (uint64_t)(end - p))
				return -1;
			uint64_t acc = 0;
			int bits = 0;
			const uint8_t *q = p;
			for (uint64_t k = 0; k < count; k++) {
				while (bits < width) {
					acc |= (uint64_t)*q++ << bits;
					bits += 8;
				}
				uint32_t x = (uint32_t)(acc & mask);
				acc >>= width;
				bits -= width;
				if (got < n) {
					if (x >= limit)
						return -1;
					v[got++] = x;
				}
			}
			p += bytes;
		} else {
			uint64_t count = h >> 1;
			int nb = (width + 7) / 8;
			uint32_t x = 0;
			if (count == 0 || nb > end - p)
				return -1;
			for (int k = 0; k < nb; k++)
				x |= (uint32_t)p[k] << (8 * k);
			p += nb;
			if (x >= limit)
				return -1;
			for (uint64_t k = 0; k < count && got < n; k++)
				v[got++] = x;
		}
	}
	return (long)(p - start);
}
