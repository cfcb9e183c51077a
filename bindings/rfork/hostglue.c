/*
 * hostglue.c - fallbacks for the host's part of a resume (host/resume.c,
 * built on another branch).  Weak: the host's definitions replace them when
 * linked in.  Without them a resumed child gets no fresh event loop: plain
 * Lua works, anything that waits on the loop does not.
 */
#include <lua.h>
#include <stdlib.h>

#include "kx.h"

__attribute__((weak)) void *kx_resume_capture(size_t *len, char *err, size_t errlen)
{
	(void)err, (void)errlen;
	*len = 0;
	return malloc(1);   /* an empty blob: nothing to hand over */
}

__attribute__((weak)) int kx_reset_after_resume(lua_State *L, const void *blob, size_t len,
                                                char *err, size_t errlen)
{
	(void)L, (void)blob, (void)len, (void)err, (void)errlen;
	return 0;
}
