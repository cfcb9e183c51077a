# kx.rfork: remote fork (MITOSIS) - C core, restorer, TCP and RDMA transports,
# Lua binding.  libibverbs is opened at run time (dlopen): only its headers
# (libibverbs-dev) are needed to build.
DEBS        += libibverbs-dev criu iproute2
RFORK_CORE := bindings/rfork/ctx.c bindings/rfork/restorer.c bindings/rfork/tcp.c \
              bindings/rfork/identity.c bindings/rfork/holder.c bindings/rfork/holder_rdma.c \
              bindings/rfork/learn.c bindings/rfork/procstate.c bindings/rfork/prepare.c bindings/rfork/resume.c \
              bindings/rfork/prefetch.c bindings/rfork/pager.c bindings/rfork/pagerloop.c bindings/rfork/pjoin.c bindings/rfork/pcache.c bindings/rfork/verbs.c \
              bindings/rfork/rdma.c bindings/rfork/agent.c bindings/rfork/container.c
# kxrun's side of a resumed child (descriptors, loop, thread pool), the Lua
# binding and its bench helper; the core above knows nothing of kxrun.
KX_SRCS   += $(RFORK_CORE) bindings/rfork/hostfds.c bindings/rfork/hostloop.c \
             bindings/rfork/workpool.c bindings/rfork/lrfork.c bindings/rfork/bench.c \
             bindings/rfork/hugealloc.c bindings/rfork/zygote.c bindings/rfork/template.c \
             bindings/rfork/resume_main.c
LUAOPEN   += kx.rfork
# `kxrun rfork resume` before the host starts (resume_main.c)
EARLY_MAINS += rf_early_main
TEST_DEPS += $(BUILD)/tests/rfork_basic $(BUILD)/tests/lua/kx/_resume_test.so

# kx._resume_test: a module only the tests load (package.cpath), which
# makes a child in the state a resumed one is in; it uses kxrun's own
# symbols (-rdynamic), so it links nothing.
$(BUILD)/tests/lua/kx/_resume_test.so: tests/rfork/resume_test.c bindings/rfork/hostside.h host/kx.h | $(BUILD)/.deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Ibindings/rfork -shared -o $@ $<

$(BUILD)/tests/unit/test_resume: override CFLAGS += -Ibindings/rfork

# The restorer runs copied to another address with nothing else mapped:
# no instrumentation, no calls out, no constants outside its section.  The
# build fails when its section needs relocations (it would not be
# position independent).
RFORK_RESTORER_CFLAGS := -ffreestanding -fno-builtin -fno-stack-protector \
    -fno-sanitize=all -fcf-protection=none -fno-jump-tables \
    -fno-tree-loop-distribute-patterns -fno-asynchronous-unwind-tables -fno-exceptions \
    -mgeneral-regs-only -fno-tree-vectorize -fno-store-merging
$(BUILD)/bindings/rfork/restorer.o: bindings/rfork/restorer.c bindings/rfork/internal.h | $(BUILD)/.deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(RFORK_RESTORER_CFLAGS) -c -o $@.tmp $<
	@if objdump -r -j rfork_restorer $@.tmp | grep -q 'R_X86_64'; then \
	    echo "restorer.c: section rfork_restorer has relocations:"; \
	    objdump -r -j rfork_restorer $@.tmp; rm -f $@.tmp; exit 1; fi
	@mv $@.tmp $@

# The benchmark's spawner (bench/rfork.lua, the README's recipe): whole
# processes, N times, C at once.
EXTRA_TARGETS += $(BUILD)/bench/rfork_spawn
$(BUILD)/bench/rfork_spawn: bench/rfork_spawn.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -Wall -Wextra -Werror -o $@ $<

# A small C program that prepares and resumes itself (no Lua, no host but
# its plain-C descriptor passing).
$(BUILD)/tests/rfork_basic: tests/rfork/rfork_basic.c $(RFORK_CORE:%.c=$(BUILD)/%.o) \
                           $(BUILD)/host/fdpass.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Ibindings/rfork $(LDFLAGS) -o $@ $^ -ldl
