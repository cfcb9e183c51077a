/* stdlib_embed.h - Lua sources of stdlib/ compiled into the binary. */
#ifndef KX_STDLIB_EMBED_H
#define KX_STDLIB_EMBED_H
#include <stddef.h>

struct kx_embedded {
	const char *module;    /* "kx.trace" */
	const char *chunkname; /* "@kx/trace.lua" */
	const char *source;
	size_t len;
};

/* Terminated by an entry whose module is NULL. */
extern const struct kx_embedded kx_stdlib[];

#endif
