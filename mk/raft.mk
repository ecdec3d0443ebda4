# mk/raft.mk — the pure Raft core (cluster/raft*.c), its scenario tests and its benchmark.
CLUSTER_SRCS += cluster/raft.c cluster/raft_log.c cluster/raft_msg.c
CLUSTER_UNIT_TESTS += test_raft
TOOLS        += $(BUILD)/raft_bench
BENCH_CMDS   += $(BUILD)/raft_bench

# (libcluster.a is named in full: $(CLUSTER_LIB) is defined after this file is read.)
$(BUILD)/raft_bench: tools/raft_bench.c $(BUILD)/libcluster.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

# --- Deterministic simulator (tests/sim/, tools/sim) and its checker's unit test. Owner: sim.
# It links the fs state machine too (tests/sim/fsm.c, `--sm fs`), so it needs libfs.
# (libfs.a and libcluster.a are named in full: $(FS_LIB)/$(CLUSTER_LIB) come later.)
SIM_SRCS := tests/sim/main.c tests/sim/sim.c tests/sim/rng.c tests/sim/net.c tests/sim/kv.c \
            tests/sim/fsm.c tests/sim/disk.c tests/sim/invariant.c tests/sim/linearize.c \
            tests/sim/alloc.c
SIM_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(SIM_SRCS))
# Allocation failures reach the Raft core through the linker (tests/sim/alloc.h).
SIM_LDFLAGS := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc

$(BUILD)/sim: $(SIM_OBJS) $(BUILD)/libfs.a $(BUILD)/libcluster.a
	$(CC) $(ALL_CFLAGS) $(SIM_LDFLAGS) -o $@ $^ $(LDLIBS)

# The same simulator over cluster/raft.c built with -DRAFT_BUG=n (known bug n switched on).
# The object comes before libcluster, so the archive's correct raft.o is never pulled in.
# (libcluster.a is named in full: $(CLUSTER_LIB) is defined after this file is read.)
$(BUILD)/obj-bug%/cluster/raft.o: cluster/raft.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DRAFT_BUG=$* -MMD -MP -c $< -o $@

$(BUILD)/sim-bug%: $(BUILD)/obj-bug%/cluster/raft.o $(SIM_OBJS) $(BUILD)/libfs.a \
                   $(BUILD)/libcluster.a
	$(CC) $(ALL_CFLAGS) $(SIM_LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/test_linearize: tests/unit/test_linearize.c $(BUILD)/obj/tests/sim/linearize.o \
                               $(BUILD)/obj/tests/sim/rng.o
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

-include $(wildcard $(BUILD)/obj-bug*/cluster/*.d)

TOOLS     += $(BUILD)/sim $(BUILD)/sim-bug1 $(BUILD)/sim-bug2 $(BUILD)/sim-bug3 \
             $(BUILD)/tests/test_linearize
TEST_CMDS += $(BUILD)/tests/test_linearize "$(BUILD)/sim --seeds 1000 --from 1" \
             "$(BUILD)/sim --sm fs --seeds 300 --from 1" "tests/sim/bugs_caught.sh $(BUILD)" \
             "$(BUILD)/sim --groups 4 --seeds 500 --from 1" \
             "$(BUILD)/sim --sm fs --groups 4 --seeds 1 --from 2297 --nodes 3"
# (the last: simulator finding 7, a same-term vote during a lease, tests/sim/FINDINGS.md)

# The long run (tests/sim/README.md): SOAK_SEEDS seeds from SOAK_FROM, a range make test never
# runs, rotating kv/fs and 1/4 groups per chunk of SOAK_CHUNK seeds; progress, a summary, a
# non-zero exit on any failure. The whole default range takes hours (README.md).
SOAK_FROM  ?= 1000001
SOAK_SEEDS ?= 100000
SOAK_CHUNK ?= 1000
.PHONY: soak
soak: $(BUILD)/sim
	tests/sim/soak.sh $(BUILD) $(SOAK_FROM) $(SOAK_SEEDS) $(SOAK_CHUNK)
