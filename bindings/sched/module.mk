# kx.sched: a Redis connection on the loop (rclient.c, kx.sched.redis.client);
# the policy, the backends and the CLI are Lua (stdlib/kx/sched*.lua).
KX_SRCS += bindings/sched/rclient.c
KX_LIBS += -lhiredis
LUAOPEN += kx.sched.redis.client
