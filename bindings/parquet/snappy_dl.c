/* snappy_dl.c - libsnappy loaded on first use (see snappy_dl.h). */
#include <dlfcn.h>
#include <pthread.h>

#include "snappy_dl.h"

static struct pq_snappy lib;
static int loaded;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void)
{
	void *h = dlopen("libsnappy.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return;
	*(void **)&lib.compress = dlsym(h, "snappy_compress");
	*(void **)&lib.uncompress = dlsym(h, "snappy_uncompress");
	*(void **)&lib.max_compressed_length = dlsym(h, "snappy_max_compressed_length");
	loaded = lib.compress && lib.uncompress && lib.max_compressed_length;
}

const struct pq_snappy *pq_snappy(void)
{
	pthread_once(&once, load);   /* exports run on the thread pool */
	return loaded ? &lib : NULL;
}
