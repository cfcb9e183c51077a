# kx.vtime: virtual time (Kronos): controller, Lua binding, and the preload
# library libkxvtime.so that gives dilated processes their virtual clock.
KX_SRCS   += bindings/vtime/experiment.c bindings/vtime/spawn.c bindings/vtime/round.c \
             bindings/vtime/cgroup.c bindings/vtime/cleanup.c bindings/vtime/calibrate.c \
             bindings/vtime/lvtime.c bindings/vtime/kmod_backend.c
LUAOPEN   += kx.vtime
EXTRA_TARGETS += $(BUILD)/lib/libkxvtime.so
TEST_DEPS += $(BUILD)/lib/libkxvtime.so $(BUILD)/tests/vtime_clock

# Preloaded into other programs: no $(SAN), no host code.
$(BUILD)/lib/libkxvtime.so: bindings/vtime/preload.c bindings/vtime/shm.h
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -std=gnu11 -Wall -Wextra -Werror -fPIC -D_GNU_SOURCE \
	    -fvisibility=hidden -shared -o $@ bindings/vtime/preload.c -ldl

$(BUILD)/tests/vtime_clock: tests/vtime/vtime_clock.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -o $@ $< -lpthread

# The same program linked statically: kx.vtime must refuse it at spawn.
TEST_DEPS += $(BUILD)/tests/vtime_static
$(BUILD)/tests/vtime_static: tests/vtime/vtime_clock.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -static -o $@ $<

# The tracer registration channel (kxrun vtime tracer <-> kx.kronos).
KX_SRCS   += bindings/vtime/registry.c bindings/vtime/lregistry.c
LUAOPEN   += kx.vtime.registry

# The ping-pong client and server of experiments/vtime_pingpong.lua.
PINGPONG := $(BUILD)/experiments/pingpong_server $(BUILD)/experiments/pingpong_client
EXTRA_TARGETS += $(PINGPONG)
$(BUILD)/experiments/pingpong_%: experiments/pingpong/%.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -o $@ $<

# The fixed CPU-bound job of bench/vtime_*.lua.
EXTRA_TARGETS += $(BUILD)/bench/vtime_spin
$(BUILD)/bench/vtime_spin: bench/vtime_spin.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -o $@ $<
