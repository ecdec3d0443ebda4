# mk/scale.mk — the scale model of issue 10 item 5 (tests/sim/scale*.c, docs/SCALING.md):
# real Raft cores for many groups over many simulated nodes, with and without quiescence,
# frames counted per Raft message and coalesced per node pair. Owner: scale.
# `make test` runs a small cluster (its "ok" lines are the model's safety and design checks);
# `make bench` runs 100 nodes x 10,000 groups (about 2 minutes of CPU, under 1.5 GB).
SCALE_SRCS := tests/sim/scale_main.c tests/sim/scale.c tests/sim/rng.c
SCALE_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(SCALE_SRCS))

# (libcluster.a is named in full: $(CLUSTER_LIB) is defined after this file is read.)
$(BUILD)/scale: $(SCALE_OBJS) $(BUILD)/libcluster.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(SM_LDLIBS)

TOOLS      += $(BUILD)/scale
TEST_CMDS  += "$(BUILD)/scale --nodes 12 --groups 400 --idle-s 4 --load-s 4 --kill-s 8 --load 200"
BENCH_CMDS += "$(BUILD)/scale --nodes 100 --groups 10000"
