# kxrun - `make run` and `make test` set up everything they need.
#
# Modules plug in through bindings/<name>/module.mk, which may add to:
#   KX_SRCS        C sources linked into kxrun (and into build/libkx.a)
#   KX_LIBS        linker flags they need (-lNAME)
#   STATIC_LIBS    NAMEs of KX_LIBS linked from their static archive where
#                  Debian ships one (fewer objects for the dynamic loader)
#   DEBS           Debian packages they need (build, tests, experiments)
#   LUAOPEN        Lua module names registered in package.preload
#                  (kx.gpu -> luaopen_kx_gpu, kx.vtime.core -> luaopen_kx_vtime_core)
#   EARLY_MAINS    C functions int f(int argc, char **argv) that main() asks,
#                  before the host builds anything, whether they take the
#                  command line (host/kx.h: kx_early_mains)
#   EXTRA_TARGETS  other products (preload libraries in build/lib/, ...)
#   TEST_DEPS      what the tests need built besides kxrun
#   UNIT_LIBS      extra link flags for cmocka units
# and define their own rules.  Compiler flags of a module go on its own
# objects only, as target-specific variables:
#   $(BUILD)/bindings/<name>/%.o: override CFLAGS += -I...

PREFIX   ?= /usr/local
CC       ?= gcc
BUILD    ?= build
SAN      ?=
BIN      ?= kxrun

PKGS      := lua5.4 libuv libedit jansson
OPT      ?= -O2 -g
override CFLAGS += $(OPT) -std=gnu11 -Wall -Wextra -Werror -Wno-format-truncation -fPIC -D_GNU_SOURCE $(SAN) \
            -Ihost $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS  += $(SAN) -rdynamic -Wl,--as-needed -Wl,-O1
# libedit's own dependencies are named for its static archive (with
# --as-needed a dynamic libedit leaves them out)
KX_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -ltinfo -lbsd -lmd -lm -ldl -lpthread

KX_SRCS       := $(filter-out host/main.c,$(wildcard host/*.c))
LUAOPEN       := kx
EARLY_MAINS   :=
EXTRA_TARGETS :=
TEST_DEPS     :=
UNIT_LIBS     :=
STATIC_LIBS   := lua5.4 jansson edit tinfo bsd md
# Debian packages the host, its build and the test harness need; each
# module's module.mk adds its own.
DEBS := build-essential pkg-config liblua5.4-dev lua5.4 libuv1-dev libedit-dev \
        libjansson-dev libcmocka-dev lua-busted python3 util-linux procps tmux
# kx.lab (stdlib only, no binding): reports rendered in Chromium by its
# tests, rocks installed through luarocks.
DEBS += chromium luarocks

MODULE_MKS := $(sort $(wildcard bindings/*/module.mk))
include $(MODULE_MKS)

STDLIB_FILES := $(sort $(shell find stdlib -name '*.lua' 2>/dev/null))
KX_OBJS      := $(KX_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/gen/modules.o $(BUILD)/gen/stdlib.o
UNIT_SRCS    := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS    := $(UNIT_SRCS:%.c=$(BUILD)/%)

.PHONY: all deps run test test-long bench asan clean install
.DEFAULT_GOAL := all

all: deps $(BIN) $(EXTRA_TARGETS)

deps: $(BUILD)/.deps
$(BUILD)/.deps: Makefile $(MODULE_MKS)
	@./host/deps.sh $(sort $(DEBS))
	@mkdir -p $(BUILD) && touch $@

# kxvt.ko and the VM test bed: make test-vm, make bench-vm.
include kmod/kmod.mk

# Libraries with a static archive are linked in: fewer objects for the
# dynamic loader, half of kxrun's start-up against lua5.4's.
STATIC_DIR   := /usr/lib/$(shell $(CC) -print-multiarch 2>/dev/null)
STATIC_FOUND := $(foreach l,$(sort $(STATIC_LIBS)),$(if $(wildcard $(STATIC_DIR)/lib$(l).a),$(l)))
LINK_LIBS     = $(foreach f,$(KX_LIBS),$(if $(filter $(f:-l%=%),$(STATIC_FOUND)),-l:lib$(f:-l%=%).a,$(f)))

$(BIN): $(BUILD)/main.o $(BUILD)/libkx.a
	$(CC) $(LDFLAGS) -o $@ $(BUILD)/main.o -Wl,--whole-archive $(BUILD)/libkx.a \
	    -Wl,--no-whole-archive $(LINK_LIBS)

$(BUILD)/main.o: host/main.c host/*.h | $(BUILD)/.deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/libkx.a: $(KX_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c | $(BUILD)/.deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# package.preload table of every native module, and the modules' early mains.
$(BUILD)/gen/modules.c: Makefile $(MODULE_MKS)
	@mkdir -p $(dir $@)
	@{ echo '#include <lua.h>'; echo '#include <lauxlib.h>'; \
	   for m in $(LUAOPEN); do echo "int luaopen_$$(echo $$m | tr . _)(lua_State *L);"; done; \
	   echo 'const luaL_Reg kx_native_modules[] = {'; \
	   for m in $(LUAOPEN); do echo "  {\"$$m\", luaopen_$$(echo $$m | tr . _)},"; done; \
	   echo '  {0, 0}};'; \
	   for f in $(EARLY_MAINS); do echo "int $$f(int argc, char **argv);"; done; \
	   echo 'int (*const kx_early_mains[])(int, char **) = {'; \
	   for f in $(EARLY_MAINS); do echo "  $$f,"; done; \
	   echo '  0};'; } > $@.tmp && mv $@.tmp $@

# stdlib/*.lua compiled into the binary as source (chunk names keep FILE:LINE).
$(BUILD)/embed: host/tools/embed.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -Wall -Wextra -o $@ $<

$(BUILD)/gen/stdlib.c: $(BUILD)/embed $(STDLIB_FILES)
	@mkdir -p $(dir $@)
	$(BUILD)/embed stdlib $(STDLIB_FILES) > $@.tmp && mv $@.tmp $@

$(BUILD)/gen/%.o: $(BUILD)/gen/%.c
	$(CC) $(CFLAGS) -c -o $@ $<

# cmocka units: each tests/unit/test_X.c links against libkx.a (and may
# include the shared fixtures tests/unit/*.h).
$(BUILD)/tests/unit/%: tests/unit/%.c $(wildcard tests/unit/*.h) $(BUILD)/libkx.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libkx.a $(UNIT_LIBS) $(KX_LIBS) -lcmocka

run: all
	./$(BIN) experiments/quickstart.lua

test: all $(UNIT_BINS) $(TEST_DEPS)
	@BUILD=$(BUILD) KXRUN=$(abspath $(BIN)) ./tests/run.sh

test-long: all $(UNIT_BINS) $(TEST_DEPS)
	@BUILD=$(BUILD) KXRUN=$(abspath $(BIN)) KXRUN_TEST_LONG=1 ./tests/run.sh

bench: all
	@./bench/run.sh

# The same tests under AddressSanitizer and UBSan, in a build of their own,
# with the host's own checks on (KX_CHECKS: e.g. kx_wake on a task that is
# not waiting aborts).  Preload libraries are built without sanitizers
# (they go into other programs).
# intercept_tls_get_addr=0: LeakSanitizer's tracking of dynamic TLS reads a
# garbage block of a dlopen'd OpenCL driver (PoCL) and crashes at exit
# ("Tracer caught signal 11", "DTLS 6 at 0x84-0x400001186").
asan:
	ASAN_OPTIONS=$${ASAN_OPTIONS:+$$ASAN_OPTIONS:}intercept_tls_get_addr=0 \
	$(MAKE) BUILD=build-asan BIN=build-asan/kxrun OPT="-O1 -g" \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -DKX_CHECKS" test

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/kxrun $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/kxrun
	install -m 0644 docs/kxrun.1 $(DESTDIR)$(PREFIX)/share/man/man1/kxrun.1
	ln -sf kxrun $(DESTDIR)$(PREFIX)/bin/chronos   # kxrun gpu, by Chronos's name
	for f in $(BUILD)/lib/*; do [ -f "$$f" ] || continue; \
	    case $$f in *.so) m=0644 ;; *) m=0755 ;; esac; \
	    install -m $$m "$$f" $(DESTDIR)$(PREFIX)/lib/kxrun/; done

clean:
	rm -rf build build-asan kxrun node_modules
