/*
 * lrundir.h - kx.trace.core's functions for a run directory and its
 * processes (lrundir.c): the run's lock (core.lock, core.lock_holder,
 * core.signal_holder), CTS/ published whole (core.tmpdir_beside,
 * core.publish_dir, core.discard_dir), and small helpers (core.stat,
 * core.now_ms, core.free_bytes, core.check_match, core.bpf_log).
 */
#ifndef KX_TRACE_LRUNDIR_H
#define KX_TRACE_LRUNDIR_H

#include "kx.h"

/* Adds them to the module table on top of the stack (and registers the
 * lock's class). */
void trace_rundir_open(lua_State *L);

#endif
