# mk/queues.mk — queues/ and locks/ namespace modules (issue 4). Owner: queues.
# Sources join libfs; unit tests of the apply logic; integration scripts on a real mount;
# the benchmark client (tools/queuebench) and its driver (tools/bench-queues).
# fs/ntable.c (named-object table) and fs/front.c (FUSE front helpers) are shared helpers
# that queues/ introduced; locks/ and later namespaces can use them too.
SM_SRCS    += fs/queues_sm.c fs/locks_sm.c
SM_UNIT_TESTS += test_queues test_locks
FS_SRCS    += fs/session.c fs/front.c fs/queues_fuse.c fs/locks_fuse.c
TEST_CMDS  += tests/integration/queues.sh tests/integration/locks.sh
TOOLS      += $(BUILD)/queuebench
BENCH_CMDS += "tools/bench-queues --build $(BUILD)"

$(BUILD)/queuebench: tools/queuebench.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDLIBS)
