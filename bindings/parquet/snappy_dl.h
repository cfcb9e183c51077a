/*
 * snappy_dl.h - libsnappy, loaded on first use.  It is C++ and would pull
 * libstdc++ into every kxrun start (a third of its start-up) for a codec
 * most runs never touch.
 */
#ifndef KX_PARQUET_SNAPPY_DL_H
#define KX_PARQUET_SNAPPY_DL_H

#include <snappy-c.h>

struct pq_snappy {
	snappy_status (*compress)(const char *in, size_t n, char *out,
				  size_t *out_len);
	snappy_status (*uncompress)(const char *in, size_t n, char *out,
				    size_t *out_len);
	size_t (*max_compressed_length)(size_t n);
};

/* The library's functions, or NULL when libsnappy.so.1 cannot be loaded. */
const struct pq_snappy *pq_snappy(void);

#endif
