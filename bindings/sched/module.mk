# kx.sched: Tracekit's FIFO + first-fit policy in C (policy.c), its Lua
# binding kx.sched.core, a Redis connection on the loop (rclient.c,
# kx.sched.redis.client); backends and CLI in stdlib/kx/sched*.lua.
DEBS        += libhiredis-dev redis-server ffmpeg
KX_SRCS += bindings/sched/policy.c bindings/sched/lsched.c bindings/sched/rclient.c
KX_LIBS += -lhiredis
LUAOPEN += kx.sched.core kx.sched.redis.client
