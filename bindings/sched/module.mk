# kx.sched: a Redis connection on the loop (rclient.c, kx.sched.redis.client),
# the task launcher (launch.c, its zygotes zygote.c, its worker side
# llaunch.c: kx.sched.launch);
# the policy, the backends and the CLI are Lua (stdlib/kx/sched*.lua).
DEBS        += libhiredis-dev redis-server ffmpeg
KX_SRCS += bindings/sched/rclient.c bindings/sched/launch.c bindings/sched/zygote.c bindings/sched/llaunch.c
KX_LIBS += -lhiredis
STATIC_LIBS += hiredis
LUAOPEN += kx.sched.redis.client kx.sched.launch
