# quorumfs — plain make. Source lists are explicit; each area keeps its list in mk/<area>.mk.
#   make          build the quorumfs binary (build/quorumfs)
#   make run      install missing packages, build, mount the embedded node at ./mnt
#   make test     install missing packages, build, run every test; last line "N passed, N failed"
#   make bench    run the benchmarks (figures go to docs/PERFORMANCE.md by hand)
#   make asan     build and run the unit tests under -fsanitize=address,undefined
#   make fuzz     build with clang and run each libFuzzer target for FUZZ_SECONDS (default 60)
#   make install  install the binary, man page and systemd unit under PREFIX (default /usr/local),
#                 staged under DESTDIR if set; make uninstall removes them (docs/INSTALL.md)

BUILD   ?= build
CC      ?= cc
OPT     ?= -O2
SAN     ?=
CFLAGS  ?=
PKGS    := fuse3 liblz4 libcrypto
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ALL_CFLAGS  = -std=gnu11 $(OPT) -g -Wall -Wextra -Werror -Wno-unused-parameter \
              -D_GNU_SOURCE -DFUSE_USE_VERSION=314 -I. $(PKG_CFLAGS) $(SAN) $(CFLAGS)
LDLIBS  := $(PKG_LIBS) -lpthread -lm
# What a link without FUSE code needs (libcluster and the state machines: lz4, CRC, hashes).
SM_LDLIBS := $(shell pkg-config --libs liblz4 libcrypto 2>/dev/null) -lpthread -lm

# Plain `make` builds the daemon and the tools, whatever rule a fragment defines first.
.DEFAULT_GOAL := all

# Filled in by the mk/*.mk fragments.
CLUSTER_SRCS :=
SM_SRCS      :=
FS_SRCS      :=
SM_UNIT_TESTS :=
UNIT_TESTS   :=
CLUSTER_UNIT_TESTS :=
TEST_CMDS    :=
TOOLS        :=
BENCH_CMDS   :=

include mk/core.mk
include mk/storage.mk
include mk/raft.mk
include mk/integration.mk
include mk/bench.mk
include mk/queues.mk
include mk/net.mk
include mk/multiraft.mk
include mk/lin.mk
include mk/services.mk
include mk/logs.mk
include mk/search.mk
include mk/jobs.mk
include mk/scale.mk

# Three libraries. libcluster: cluster/, which knows nothing of files, builds and tests
# alone. libfs_sm: the state-machine halves of fs/ (fragments list them in SM_SRCS),
# deterministic and without FUSE code. libfs: all of fs/ but main.c (the daemon and the
# simulator link it). Unit tests of the state machines (SM_UNIT_TESTS) link libfs_sm and
# libcluster only, without libfuse.
FS_SRCS     := $(sort $(FS_SRCS) $(SM_SRCS))
CLUSTER_LIB := $(BUILD)/libcluster.a
SM_LIB      := $(BUILD)/libfs_sm.a
FS_LIB      := $(BUILD)/libfs.a
LIB         := $(FS_LIB) $(CLUSTER_LIB)
ALL_UNIT    := $(SM_UNIT_TESTS) $(UNIT_TESTS) $(CLUSTER_UNIT_TESTS)

.PHONY: all run test unit bench asan fuzz clean deps
# `make print-VAR` prints a variable (tests/fuzz/run asks for SM_SRCS).
print-%:
	@echo $($*)

all: $(BUILD)/quorumfs $(TOOLS)

deps:
	@tools/install-deps

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(CLUSTER_LIB): $(patsubst %.c,$(BUILD)/obj/%.o,$(CLUSTER_SRCS))
	@rm -f $@
	ar rcs $@ $^

$(SM_LIB): $(patsubst %.c,$(BUILD)/obj/%.o,$(SM_SRCS))
	@rm -f $@
	ar rcs $@ $^

$(FS_LIB): $(patsubst %.c,$(BUILD)/obj/%.o,$(FS_SRCS))
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/quorumfs: $(BUILD)/obj/fs/main.o $(LIB)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

# Unit tests of cluster/ modules link only libcluster; those of the state machines
# libfs_sm and libcluster (no FUSE); the others libfs and libcluster.
$(addprefix $(BUILD)/tests/,$(CLUSTER_UNIT_TESTS)): $(BUILD)/tests/%: tests/unit/%.c $(CLUSTER_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(CLUSTER_LIB) $(LDLIBS)

$(addprefix $(BUILD)/tests/,$(SM_UNIT_TESTS)): $(BUILD)/tests/%: tests/unit/%.c $(SM_LIB) $(CLUSTER_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(SM_LIB) $(CLUSTER_LIB) $(SM_LDLIBS)

$(addprefix $(BUILD)/tests/,$(UNIT_TESTS)): $(BUILD)/tests/%: tests/unit/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIB) $(LDLIBS)

run: deps
	@$(MAKE) --no-print-directory all
	@mkdir -p mnt
	$(BUILD)/quorumfs mount ./mnt --data ./data
	@echo "quorumfs is mounted at ./mnt (data in ./data). Unmount with: fusermount3 -u ./mnt"

unit: $(addprefix $(BUILD)/tests/,$(ALL_UNIT))

test: deps
	@$(MAKE) --no-print-directory all unit
	@tests/run $(addprefix $(BUILD)/tests/,$(ALL_UNIT)) $(TEST_CMDS)

asan:
	@$(MAKE) --no-print-directory BUILD=build-asan SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" OPT=-O1 unit
	@tests/run $(addprefix build-asan/tests/,$(ALL_UNIT))

FUZZ_SECONDS ?= 60
fuzz: deps
	@tests/fuzz/run $(FUZZ_SECONDS)

bench: deps all
	@for c in $(BENCH_CMDS); do $$c || exit 1; done

clean:
	rm -rf build build-asan build-fuzz

# make install [PREFIX=/usr/local] [DESTDIR=]: what `mount -t fuse.quorumfs` and fstab need is
# the binary on the PATH that mount.fuse3 runs it with: mount(8) drops the caller's PATH, so
# /bin/sh's default applies (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin),
# and fuse3's /sbin/mount.fuse serves every fuse.<subtype> (docs/INSTALL.md).
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
.PHONY: install uninstall
install: $(BUILD)/quorumfs
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(UNITDIR)
	install -m 755 $(BUILD)/quorumfs $(DESTDIR)$(BINDIR)/quorumfs
	install -m 644 docs/quorumfs.1 $(DESTDIR)$(MANDIR)/man1/quorumfs.1
	sed 's|/usr/local/bin/quorumfs|$(BINDIR)/quorumfs|g' tools/quorumfs@.service \
	    >$(DESTDIR)$(UNITDIR)/quorumfs@.service
	chmod 644 $(DESTDIR)$(UNITDIR)/quorumfs@.service
	@case ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:" in \
	    *":$(BINDIR):"*) ;; \
	    *) echo "note: mount -t fuse.quorumfs and fstab look for quorumfs in /usr/local/bin," \
	            "/usr/bin, /bin, ... only; link $(BINDIR)/quorumfs there (docs/INSTALL.md)" ;; \
	esac

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/quorumfs $(DESTDIR)$(MANDIR)/man1/quorumfs.1 \
	    $(DESTDIR)$(UNITDIR)/quorumfs@.service

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
