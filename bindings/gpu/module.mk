# kx.gpu: GPU partitions (ledger, OpenCL device probe, Lua binding) and the
# enforcement library libkxgpu.so preloaded into programs run in a partition.
DEBS        += ocl-icd-opencl-dev opencl-headers pocl-opencl-icd clinfo
KX_SRCS   += bindings/gpu/ledger.c bindings/gpu/ledger_file.c \
             bindings/gpu/remote.c bindings/gpu/helpers.c \
             bindings/gpu/usage.c bindings/gpu/members.c bindings/gpu/devices.c \
             bindings/gpu/lgpu.c bindings/gpu/lstate.c bindings/gpu/lexec.c \
             bindings/gpu/lrelease.c bindings/gpu/lserve.c
LUAOPEN   += kx.gpu
EXTRA_TARGETS += $(BUILD)/lib/libkxgpu.so $(BUILD)/lib/kxgpu-guard
TEST_DEPS += $(BUILD)/tests/gpu_alloc

# Preloaded into other programs: no $(SAN), no host code.
$(BUILD)/lib/libkxgpu.so: bindings/gpu/preload.c bindings/gpu/usage.c \
                          bindings/gpu/usage.h
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -std=gnu11 -Wall -Wextra -Werror -fPIC -D_GNU_SOURCE \
	    -fvisibility=hidden -shared \
	    -o $@ bindings/gpu/preload.c bindings/gpu/usage.c -ldl -lpthread

# The leader of a partition program's group (guard.c): static, so that the
# enforcement library preloaded for the program does not load into it.
$(BUILD)/lib/kxgpu-guard: bindings/gpu/guard.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -static \
	    -o $@ $<

# A small OpenCL program that allocates buffers, for the enforcement tests.
$(BUILD)/tests/gpu_alloc: tests/gpu/gpu_alloc.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE \
	    -o $@ $< -lOpenCL

# The same for the CUDA driver API (dlopen'd: builds without CUDA).
TEST_DEPS += $(BUILD)/tests/cuda_alloc
$(BUILD)/tests/cuda_alloc: tests/gpu/cuda_alloc.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -o $@ $< -ldl

# Allocation micro-benchmark for bench/gpu_ledger.lua.
EXTRA_TARGETS += $(BUILD)/tests/alloc_bench
$(BUILD)/tests/alloc_bench: tests/gpu/alloc_bench.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -o $@ $< -lOpenCL
