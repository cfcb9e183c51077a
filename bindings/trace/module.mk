# kx.trace: process trees from eBPF tracepoints (fork, exec, exit, switch) and /proc
# samples; launched commands recorded exactly.  The Lua half (runs, parse,
# audit, CLI) is stdlib/kx/trace.lua.  Without BTF at build time the eBPF
# program is left out and the tracer says so at run time.
DEBS        += libbpf-dev clang bpftool libelf-dev zlib1g-dev ffmpeg
STATIC_LIBS += bpf elf z
TRACE_GEN := $(BUILD)/gen/trace
KX_SRCS += bindings/trace/procfs.c bindings/trace/tracer.c bindings/trace/ltrace.c \
	bindings/trace/bpfsrc.c bindings/trace/lrundir.c
KX_LIBS += -lbpf -lelf -lz
LUAOPEN += kx.trace.core
$(BUILD)/bindings/trace/%.o: override CFLAGS += -I$(TRACE_GEN)

ifeq ($(wildcard /sys/kernel/btf/vmlinux),)
$(warning kx.trace: /sys/kernel/btf/vmlinux is missing (a kernel without BTF): building without the eBPF source; trace.start{source="ebpf"} will say so)
$(BUILD)/bindings/trace/%.o: override CFLAGS += -DKX_TRACE_NO_BPF
else
$(TRACE_GEN)/vmlinux.h:
	@mkdir -p $(dir $@)
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

$(TRACE_GEN)/trace.bpf.o: bindings/trace/trace.bpf.c bindings/trace/trace_event.h $(TRACE_GEN)/vmlinux.h
	clang -O2 -g -target bpf -mcpu=v3 -D__TARGET_ARCH_x86 -I$(TRACE_GEN) -Ibindings/trace -c $< -o $@

$(TRACE_GEN)/trace.skel.h: $(TRACE_GEN)/trace.bpf.o
	bpftool gen skeleton $< name trace_bpf > $@.tmp && mv $@.tmp $@

$(BUILD)/bindings/trace/bpfsrc.o: $(TRACE_GEN)/trace.skel.h
endif

# a workload with a known answer for the tests (tests/trace/trace_burn.c)
TEST_DEPS += $(BUILD)/tests/trace/trace_burn
$(BUILD)/tests/trace/trace_burn: tests/trace/trace_burn.c
	@mkdir -p $(dir $@)
	$(CC) -O1 -Wall -Wextra -Werror -o $@ $< -lpthread
