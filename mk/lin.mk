# mk/lin.mk — cluster history recorders and checkers (tests/lin/): histrec records register
# reads and writes on the mounts of a cluster, lincheck checks them with the simulator's
# linearizability checker (tests/sim/linearize.c); tests/integration/cluster_linear.sh runs
# them against tools/cluster and finds them next to $QUORUMFS.
LIN_COMMON := $(BUILD)/obj/tests/lin/lmount.o

$(BUILD)/histrec: $(BUILD)/obj/tests/lin/histrec.o $(LIN_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^

$(BUILD)/lincheck: $(BUILD)/obj/tests/lin/lincheck.o $(BUILD)/obj/tests/sim/linearize.o
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^

TOOLS += $(BUILD)/histrec $(BUILD)/lincheck

# qrec drives and records one queue's producers, consumers and poppers (tests/lin/qcheck.py
# checks its log); tests/integration/cluster_queues.sh.
$(BUILD)/qrec: $(BUILD)/obj/tests/lin/qrec.o $(LIN_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^

TOOLS += $(BUILD)/qrec

# shardof prints the shard of a path, as the nodes route it (the tests kill that shard's
# leader). (libfs_sm.a and libcluster.a are named in full: $(SM_LIB)/$(CLUSTER_LIB) come later.)
$(BUILD)/shardof: $(BUILD)/obj/tests/lin/shardof.o $(BUILD)/libfs_sm.a $(BUILD)/libcluster.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(SM_LDLIBS)

TOOLS += $(BUILD)/shardof
