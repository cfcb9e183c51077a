# kmod/: kxvt.ko, the kernel backend of kx.vtime, and the VM test bed
# (tests/vm/) where it and other kernel-side tests are built and run:
#
#   make test-vm     builds kxvt.ko against Debian's 6.1 kernel, boots that
#                    kernel in QEMU (TCG) and runs tests/vm/*.sh inside
#   make bench-vm    the benchmarks of tests/vm/ (# vm-mode: bench)
#   make kmod        just the module ($(BUILD)/kmod/kxvt.ko)
#
# The guest kernel and its headers are Debian's packages unpacked into
# $(KXVM_DIR) (tests/vm/bed/kernel.sh), never installed on this machine.
# VM=CASE (a substring of a case's name) picks cases.

KXVM_DIR ?= build/vm
export KXVM_DIR
KXVT_KO  := $(BUILD)/kmod/kxvt.ko
KMOD_SRC := $(sort $(wildcard kmod/*.c kmod/*.h)) kmod/Kbuild

DEBS += qemu-system-x86 busybox-static
$(BUILD)/.deps: kmod/kmod.mk

# Debian's kernel for the guest, fetched once by `make` (deps); a machine
# that cannot fetch it says so here and skips the VM smoke test.
deps: $(KXVM_DIR)/.fetched
$(KXVM_DIR)/.fetched:
	@mkdir -p $(KXVM_DIR)
	@tests/vm/bed/kernel.sh >/dev/null || echo "make: the VM bed has no kernel yet (make test-vm fetches it again)" >&2
	@touch $@

# Built in $(BUILD)/kmod from a copy of kmod/ (kbuild writes beside its
# sources); the kernel's own make must not see this make's variables.
$(KXVT_KO): $(KMOD_SRC)
	@rel=$$(tests/vm/bed/kernel.sh) || exit 1; \
	src=$(abspath $(KXVM_DIR))/kernel/$$rel/usr/src; \
	mkdir -p $(BUILD)/kmod && cp $(KMOD_SRC) $(BUILD)/kmod/ && \
	env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS $(MAKE) -s \
	    -C $$src/linux-headers-$${rel%-amd64}-common O=$$src/linux-headers-$$rel \
	    M=$(abspath $(BUILD)/kmod) modules

# The guest's helpers: the module's test driver (ioctl checks, fuzz,
# rounds) and a statically linked member for the clock tests (no
# LD_PRELOAD can reach it).
KMOD_TOOLS := $(BUILD)/tests/kxvt_test $(BUILD)/tests/kxvt_clock
$(BUILD)/tests/kxvt_test: tests/vm/kxvt_test.c kmod/kxvt.h
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -Ikmod -o $@ $< -lpthread -lm
$(BUILD)/tests/kxvt_clock: tests/vm/kxvt_clock.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -static -o $@ $<

.PHONY: kmod test-vm bench-vm
kmod: $(KXVT_KO)

test-vm: all $(TEST_DEPS) $(KXVT_KO) $(KMOD_TOOLS)
	@BUILD=$(BUILD) KXRUN=$(BIN) tests/vm/bed/run.sh --mode test $(VM)

bench-vm: all $(TEST_DEPS) $(KXVT_KO) $(KMOD_TOOLS)
	@BUILD=$(BUILD) KXRUN=$(BIN) tests/vm/bed/run.sh --mode bench $(VM)

# make test's VM smoke (tests/cli/vm_smoke.sh) needs the module where the
# guest kernel is here; on a new machine the kernel arrives with deps, in
# this same make, so it is asked after deps rather than when this file is read.
TEST_DEPS += vm-smoke-deps
.PHONY: vm-smoke-deps
vm-smoke-deps: | deps
	@if tests/vm/bed/kernel.sh --release >/dev/null 2>&1; then \
	    $(MAKE) --no-print-directory BUILD=$(BUILD) $(KXVT_KO) $(KMOD_TOOLS); fi
