# kx.trace: process trees sampled from /proc, launched commands recorded
# exactly; the Lua half (runs, parse, audit, CLI) is stdlib/kx/trace.lua.
KX_SRCS += bindings/trace/procfs.c bindings/trace/tracer.c bindings/trace/ltrace.c
LUAOPEN += kx.trace.core
