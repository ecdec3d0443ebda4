# mk/scale.mk — the scale model of issue 10 item 5 (tests/sim/scale*.c, docs/SCALING.md):
# real Raft cores for many groups over many simulated nodes, with and without quiescence,
# frames counted per Raft message and coalesced per node pair. Owner: scale.
# `make test` runs a small cluster (its "ok" lines are the model's safety and design checks);
# `make bench` runs 100 nodes x 10,000 groups (about 1 minute of CPU, peak RSS about 1.6 GB).
SCALE_SRCS := tests/sim/scale_main.c tests/sim/scale.c tests/sim/rng.c
SCALE_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(SCALE_SRCS))

# (libcluster.a is named in full: $(CLUSTER_LIB) is defined after this file is read.)
$(BUILD)/scale: $(SCALE_OBJS) $(BUILD)/libcluster.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(SM_LDLIBS)

TOOLS      += $(BUILD)/scale $(BUILD)/scale-bug3
TEST_CMDS  += "$(BUILD)/scale --nodes 20 --groups 1000 --idle-s 4 --load-s 4 --kill-s 8 --load 200" \
              "$(BUILD)/scale --nodes 20 --groups 1000 --idle-s 4 --load-s 4 --kill-s 8 --load 200 --seed 2 --kill-in-load" \
              "tests/sim/scale_bites.sh $(BUILD)"
# The figures of docs/SCALING.md: both designs at the default liveness (500 ms / 1500 ms), then
# quiescence alone with a faster and a slower liveness (the failover trade-off).
BENCH_CMDS += "$(BUILD)/scale --nodes 100 --groups 10000" \
              "$(BUILD)/scale --nodes 100 --groups 10000 --quiesce on --live-ms 200 --live-timeout-ms 600" \
              "$(BUILD)/scale --nodes 100 --groups 10000 --quiesce on --live-ms 1000 --live-timeout-ms 5000"

# The same model over cluster/raft.c with known bug 3 (a vote granted twice in one term,
# mk/raft.mk builds that object): its election-safety check must catch it
# (tests/sim/scale_bites.sh).
$(BUILD)/scale-bug3: $(BUILD)/obj-bug3/cluster/raft.o $(SCALE_OBJS) $(BUILD)/libcluster.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(SM_LDLIBS)
