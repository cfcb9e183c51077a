/* lgpu.h - shared between the kx.gpu binding's files. */
#ifndef KX_GPU_LGPU_H
#define KX_GPU_LGPU_H

#include <lua.h>

#include "ledger.h"

/* partition:exec{argv..., grace=, env=}: runs argv in the partition with
 * libkxgpu.so preloaded, signals its process group at expiry; the table is
 * at argidx.  Suspends the calling task until the program ends. */
int kxgpu_exec(lua_State *L, const struct kxgpu_partition *p, int argidx);

/* The ledger of the current state directory, opened once (NULL with a
 * message in err); lstate.c. */
kxgpu_ledger *kxgpu_lua_ledger(char *err, size_t errlen);

/* gpu.state_dir([dir | false]) (lstate.c). */
int kxgpu_state_dir(lua_State *L);

/* Releases id (lrelease.c); the options table {force=, grace=} is at index
 * opts (may be none).  Returns as a Lua function: true | nil, message; by
 * force, suspends the task until the partition's programs are gone.  Sets
 * *released once the partition takes no new program. */
int kxgpu_release(lua_State *L, const char *id, int opts, int *released);

/* Releases id by force without waiting (<close>); failures other than "not
 * found" (it expired) are reported on stderr. */
void kxgpu_release_quietly(const char *id);

/* gpu.serve(): the ledger daemon (lserve.c); never returns normally. */
int kxgpu_serve(lua_State *L);

#endif
