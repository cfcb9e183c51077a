# kx.redis: a Redis client for tasks (hiredis async + its libuv adapter).
KX_SRCS += bindings/redis/lredis.c
KX_LIBS += -lhiredis
LUAOPEN += kx.redis
