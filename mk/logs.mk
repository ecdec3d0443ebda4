# mk/logs.mk — the logs/ namespace module (issue 11, docs/LOGS.md): replicated append-only
# logs whose segments live in files under the node's data directory. Owner: logs.
SM_SRCS       += fs/logs_sm.c
SM_UNIT_TESTS += test_logs
UNIT_TESTS    += test_logs_pcache test_logs_slots
FS_SRCS       += fs/logs_fuse.c fs/logs_pcache.c fs/logs_slots.c
TEST_CMDS     += tests/integration/logs.sh tests/integration/logs_cache.sh
# The logs/ benchmark client (tools/logbench.c; driver tools/bench-logs, run by `make bench`)
# and the 1 GB log under a 512 MB memory cap (`make soak-logs`, minutes; the scaled-down
# version, tests/integration/logs_big.sh, runs in `make test`).
TOOLS         += $(BUILD)/logbench
TEST_CMDS     += tests/integration/logs_big.sh

$(BUILD)/logbench: tools/logbench.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDLIBS)

.PHONY: soak-logs
soak-logs: all
	QUORUMFS=$(BUILD)/quorumfs LOGS_BIG_MIB=1024 LOGS_BIG_CAP_MIB=512 LOGS_BIG_SEGMENT=0 \
	    LOGS_BIG_SNAPSHOT=0 bash tests/integration/logs_big.sh
