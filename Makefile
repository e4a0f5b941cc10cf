# Chute — one GNU Makefile for the whole tree.
#
#   make                 build everything that exists (objects under build/)
#   make check           C unit tests, then the pytest system suite
#   make check SANITIZE=1  the same, built with ASan+UBSan (under build/san/)
#   make fuzz            build the libFuzzer targets with clang, smoke-run each
#   make bench           print the performance figures (see docs/BENCHMARKS.md)
#   make demo            relay + two paired devices + a delivered file
#   make install PREFIX=/usr/local DESTDIR=
#   make deb             Debian packages chuted and chute into build/deb/
#   make clean
#
# Every target except clean first runs packaging/deps.sh, which installs
# missing Debian packages (as root) or says which ones to install.

SHELL := /bin/bash
.DEFAULT_GOAL := all

PREFIX   ?= /usr/local
DESTDIR  ?=
SANITIZE ?= 0
PYTHON   ?= /usr/bin/python3
PYTEST_ARGS ?=
FUZZ_SECONDS ?= 10
VERSION  := 0.1.0

# --- dependencies -----------------------------------------------------------
# Run deps.sh at parse time: pkg-config below needs the -dev packages present.
DEPS_GROUP := check
ifneq ($(filter fuzz,$(MAKECMDGOALS)),)
DEPS_GROUP := fuzz
endif
ifneq ($(filter bench,$(MAKECMDGOALS)),)
DEPS_GROUP := bench
endif
ifneq ($(filter deb,$(MAKECMDGOALS)),)
DEPS_GROUP := deb
endif
ifneq ($(filter demo,$(MAKECMDGOALS)),)
DEPS_GROUP := demo
endif
ifeq ($(CHUTE_DEPS_DONE),)
ifneq ($(filter-out clean,$(or $(MAKECMDGOALS),all)),)
DEPS_RC := $(shell packaging/deps.sh $(DEPS_GROUP) >&2; echo $$?)
ifneq ($(DEPS_RC),0)
$(error packaging/deps.sh $(DEPS_GROUP) failed (see above))
endif
export CHUTE_DEPS_DONE := 1
endif
endif

# --- flags ------------------------------------------------------------------
ifeq ($(SANITIZE),1)
BUILD    ?= build/san
OPT      := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
            -fno-sanitize-recover=all
LDSAN    := -fsanitize=address,undefined
else
BUILD    ?= build
OPT      := -O2 -g -D_FORTIFY_SOURCE=2
LDSAN    :=
endif

pc_cflags = $(shell pkg-config --cflags $(1) 2>/dev/null)
pc_libs   = $(shell pkg-config --libs $(1) 2>/dev/null)
pc_exists = $(shell pkg-config --exists $(1) 2>/dev/null && echo yes)

LIB_PKGS    := libsodium sqlite3 jansson libcurl
SERVER_PKGS := libmicrohttpd
FS_PKGS     := fuse3
TOOL_PKGS   :=
OPT_DEFS    :=
ifeq ($(call pc_exists,libsystemd),yes)
SERVER_PKGS += libsystemd
OPT_DEFS    += -DHAVE_LIBSYSTEMD=1
endif
ifeq ($(call pc_exists,libqrencode),yes)
TOOL_PKGS   += libqrencode
OPT_DEFS    += -DHAVE_LIBQRENCODE=1
endif

WARN     := -std=c11 -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wvla \
            -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
HARDEN   := -fstack-protector-strong -fPIE -fstack-clash-protection
DEFS     := -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -DCHUTE_VERSION='"$(VERSION)"' \
            $(OPT_DEFS)
ALL_PKGS := $(LIB_PKGS) $(SERVER_PKGS) $(FS_PKGS) $(TOOL_PKGS) zlib
# chutefs's request loop takes the 3.12 configuration (fs/main.c).
ifneq ($(filter-out clean,$(or $(MAKECMDGOALS),all)),)
ifneq ($(shell pkg-config --atleast-version=3.12 fuse3 2>/dev/null && echo yes),yes)
$(error chutefs needs libfuse 3.12 or later (pkg-config fuse3: $(shell pkg-config --modversion fuse3 2>/dev/null || echo none)))
endif
endif
CFLAGS   ?=
LDFLAGS  ?=
CPPFLAGS_ALL := -Ilib $(DEFS) $(call pc_cflags,$(ALL_PKGS))
CFLAGS_ALL   := $(WARN) $(HARDEN) $(OPT) $(CFLAGS)
LDFLAGS_ALL  := -pie -Wl,-z,relro,-z,now -Wl,--as-needed $(LDSAN) $(LDFLAGS)

LIB_LIBS    := $(call pc_libs,$(LIB_PKGS)) -lpthread
SERVER_LIBS := $(call pc_libs,$(SERVER_PKGS)) $(LIB_LIBS)
FS_LIBS     := $(call pc_libs,$(FS_PKGS)) $(LIB_LIBS)
TOOL_LIBS   := $(call pc_libs,$(TOOL_PKGS)) $(LIB_LIBS)
TEST_LIBS   := $(call pc_libs,zlib) $(LIB_LIBS)

# --- sources ----------------------------------------------------------------
LIB_SRC      := $(wildcard lib/*.c)
SERVER_SRC   := $(wildcard server/*.c)
FS_SRC       := $(wildcard fs/*.c)
PAIRTOOL_SRC := $(wildcard pairtool/*.c)
UNIT_SRC     := $(wildcard tests/unit/test_*.c)
TOOLS_SRC    := $(wildcard tests/tools/*.c)
BENCH_SRC    := $(wildcard tests/bench/*.c)
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)

# Objects live under obj/ so that pairtool/*.o never collide with the
# program build/pairtool.
obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIBCHUTE  := $(BUILD)/libchute.a
PROGRAMS  := $(if $(SERVER_SRC),$(BUILD)/chuted) \
             $(if $(FS_SRC),$(BUILD)/chutefs) \
             $(if $(PAIRTOOL_SRC),$(BUILD)/pairtool)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/t/%,$(UNIT_SRC))
TOOL_BINS := $(patsubst tests/tools/%.c,$(BUILD)/tools/%,$(TOOLS_SRC))
BENCH_BINS:= $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))
FAULT_SHIM:= $(BUILD)/shim/libfaults.so

.PHONY: all check unit system fuzz bench demo install clean deb
.SECONDARY:
all: $(LIBCHUTE) $(PROGRAMS) $(TOOL_BINS) $(FAULT_SHIM)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(LIBCHUTE): $(call obj,$(LIB_SRC))
	@mkdir -p $(@D)
	rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/chuted: $(call obj,$(SERVER_SRC)) $(LIBCHUTE)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) $^ $(SERVER_LIBS) -o $@
$(BUILD)/chutefs: $(call obj,$(FS_SRC)) $(LIBCHUTE)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) $^ $(FS_LIBS) -o $@
$(BUILD)/pairtool: $(call obj,$(PAIRTOOL_SRC)) $(LIBCHUTE)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) $^ $(TOOL_LIBS) -o $@

# Unit tests and test tools: one .c each, linked against libchute.
$(BUILD)/t/%: $(BUILD)/obj/tests/unit/%.o $(LIBCHUTE)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) $^ $(TEST_LIBS) -o $@
# A unit test of a relay module links that module too.
$(BUILD)/t/test_syncer: $(BUILD)/obj/server/syncer.o
$(BUILD)/t/test_ratelimit: $(BUILD)/obj/server/ratelimit.o
$(BUILD)/tools/%: $(BUILD)/obj/tests/tools/%.o $(LIBCHUTE)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) $^ $(TEST_LIBS) -o $@
# The fault-injection preload of the system tests: no sanitizer (it runs
# ahead of the runtime) and no 64-bit file-offset renames (it defines both
# pwrite and pwrite64 itself).
$(FAULT_SHIM): tests/shim/faults.c
	@mkdir -p $(@D)
	$(CC) -std=c11 -Wall -Wextra -Werror -O2 -D_FORTIFY_SOURCE=2 -fstack-protector-strong \
	  -fPIC -shared -Wl,-z,relro,-z,now $< -ldl -o $@
$(BUILD)/bench/%: $(BUILD)/obj/tests/bench/%.o $(LIBCHUTE)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) $^ $(TEST_LIBS) -o $@

# --- tests ------------------------------------------------------------------
export CHUTE_BUILD   = $(abspath $(BUILD))
export CHUTE_VECTORS = $(abspath tests/vectors)
export ASAN_OPTIONS  = abort_on_error=1:detect_leaks=1
export UBSAN_OPTIONS = print_stacktrace=1:halt_on_error=1

check: all $(UNIT_BINS)
	@$(MAKE) --no-print-directory unit system

unit: $(UNIT_BINS)
	@fail=0; for t in $(UNIT_BINS); do \
	  echo "== $$t"; $$t || fail=1; \
	done; exit $$fail

# pytest exits 5 when it collects nothing; that is a failure here too.
system: all
	@if ls tests/system/test_*.py >/dev/null 2>&1; then \
	  cd tests/system && $(PYTHON) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS); \
	else echo "no system tests yet"; fi

# --- fuzzing ----------------------------------------------------------------
FUZZ_BUILD := build/fuzz
FUZZ_CC    := clang
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined $(DEFS) -Ilib \
              $(call pc_cflags,$(ALL_PKGS)) -std=c11 -Wall -Wextra -Werror \
              -Wno-unused-parameter
FUZZ_BINS  := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(FUZZ_SRC))

$(FUZZ_BUILD)/%: tests/fuzz/%.c $(LIB_SRC) $(wildcard lib/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) $< $(LIB_SRC) $(LIB_LIBS) -o $@

fuzz: $(FUZZ_BINS)
	@for f in $(FUZZ_BINS); do \
	  n=$$(basename $$f); corpus=tests/fuzz/corpus/$$n; \
	  work=$(FUZZ_BUILD)/corpus/$$n; mkdir -p $$work; \
	  echo "== $$n ($(FUZZ_SECONDS)s)"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 \
	      $$work $$( [ -d $$corpus ] && echo $$corpus ) 2>&1 | tail -n 2; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done

# --- benchmarks, demo, install ----------------------------------------------
bench: all $(BENCH_BINS)
	@tests/bench/run.sh

# packaging/demo.sh: relay + two paired devices + a delivered file; on a
# terminal it then stays up until Ctrl-C. It cleans up after itself.
demo: all
	@packaging/demo.sh

# Programs, man pages, systemd units (system: chuted; user: chutefs) and the
# example relay configuration. The deb moves the example to /etc/chute.
MANDIR  := $(DESTDIR)$(PREFIX)/share/man
UNITDIR := $(DESTDIR)$(PREFIX)/lib/systemd
DOCDIR  := $(DESTDIR)$(PREFIX)/share/doc/chute

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/sbin
	$(if $(filter %/chutefs,$(PROGRAMS)),install -m 0755 $(BUILD)/chutefs $(DESTDIR)$(PREFIX)/bin/)
	$(if $(filter %/pairtool,$(PROGRAMS)),install -m 0755 $(BUILD)/pairtool $(DESTDIR)$(PREFIX)/bin/)
	$(if $(filter %/chuted,$(PROGRAMS)),install -m 0755 $(BUILD)/chuted $(DESTDIR)$(PREFIX)/sbin/)
	install -d $(MANDIR)/man1 $(MANDIR)/man8 $(UNITDIR)/system $(UNITDIR)/user $(DOCDIR)
	install -m 0644 packaging/man/chutefs.1 packaging/man/pairtool.1 $(MANDIR)/man1/
	install -m 0644 packaging/man/chuted.8 $(MANDIR)/man8/
	install -m 0644 packaging/systemd/chuted.service $(UNITDIR)/system/
	install -m 0644 packaging/systemd/chutefs.service $(UNITDIR)/user/
	install -m 0644 packaging/chuted.conf.example $(DOCDIR)/

# Debian packages from a clean copy of the tracked tree (plus uncommitted
# edits of tracked files); the .deb files are left in build/deb/.
DEB_DIR := build/deb
DEB_SRC := $(DEB_DIR)/chute-$(VERSION)

deb:
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_SRC)
	git ls-files -z --cached | grep -zv '^packaging/debian/' | \
	  xargs -0 cp --parents -d -t $(DEB_SRC) 2>/dev/null || \
	  { echo "make deb: copying the tree failed (a git checkout is needed)" >&2; exit 1; }
	cp -r packaging/debian $(DEB_SRC)/debian
	cd $(DEB_SRC) && env -u MAKEFLAGS -u MFLAGS -u CHUTE_DEPS_DONE \
	  DEB_BUILD_OPTIONS="nocheck $(DEB_BUILD_OPTIONS)" dpkg-buildpackage -us -uc -b
	@ls -l $(DEB_DIR)/*.deb

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
