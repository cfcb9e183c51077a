# kx.sched: Tracekit's FIFO + first-fit policy in C (policy.c), its Lua
# binding kx.sched.core; backends and CLI in stdlib/kx/sched*.lua.
KX_SRCS += bindings/sched/policy.c bindings/sched/lsched.c
LUAOPEN += kx.sched.core
