#!/bin/bash
# libkxgpu.so interposes dlsym: another wrapper library preloaded beside it
# that looks up the next definition with dlsym(RTLD_NEXT) must still find
# libc's, in either preload order (no recursion into itself).
. "$ROOT/tests/cli/gpu_lib.sh.inc"
LIB=$BUILD/lib/libkxgpu.so
need cc
cat >"$TOP/next.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
int puts(const char *s)
{
	static __thread int depth;
	int (*real)(const char *) = (int (*)(const char *))dlsym(RTLD_NEXT, "puts");
	if (depth++ > 0) { fputs("recursion\n", stderr); return -1; }
	fputs("[wrapped] ", stdout);
	int r = real ? real(s) : -1;
	depth--;
	return r;
}
C
printf '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n' >"$TOP/main.c"
cc -shared -fPIC -o "$TOP/libnext.so" "$TOP/next.c" -ldl || die "cc"
cc -o "$TOP/main" "$TOP/main.c" || die "cc"
for order in "$LIB $TOP/libnext.so" "$TOP/libnext.so $LIB"; do
	out=$(LD_PRELOAD="$order" "$TOP/main" 2>&1)
	[ "$out" = "[wrapped] hello" ] || die "LD_PRELOAD=$order: $out"
done
echo ok
