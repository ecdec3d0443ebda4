# mk/integration.mk — integration tests against a real FUSE mount (tests/integration/).
# Each script mounts its own nodes on temp dirs, needs root and /dev/fuse, and runs alone:
#   QUORUMFS=build-x/quorumfs tests/integration/cache.sh
# Together they take about 3-4 minutes. make test passes QUORUMFS for its build dir.
export QUORUMFS ?= $(BUILD)/quorumfs
TEST_CMDS += tests/integration/cli.sh
TEST_CMDS += tests/integration/basic.sh
TEST_CMDS += tests/integration/cache.sh
TEST_CMDS += tests/integration/config.sh
TEST_CMDS += tests/integration/durability.sh
TEST_CMDS += tests/integration/diskfull.sh
TEST_CMDS += tests/integration/badinput.sh
TEST_CMDS += tests/integration/races.sh
# The power-cut test (tests/integration/powercut.sh) runs the daemon under an LD_PRELOAD shim
# that keeps only what was fsynced; built without $(SAN) (a sanitizer runtime cannot be
# preloaded after libc).
TOOLS += $(BUILD)/powercut_shim.so
TEST_CMDS += tests/integration/powercut.sh
$(BUILD)/powercut_shim.so: tests/powercut/shim.c
	@mkdir -p $(dir $@)
	$(CC) $(filter-out $(SAN),$(ALL_CFLAGS)) -fPIC -shared -o $@ $< -ldl
TEST_CMDS += tests/integration/saves.sh
TEST_CMDS += tests/integration/tools.sh
TEST_CMDS += tests/integration/posix.sh
TEST_CMDS += tests/integration/install.sh
TEST_CMDS += tests/integration/poll.sh
TEST_CMDS += tests/integration/cluster.sh
TEST_CMDS += tests/integration/shards.sh
TEST_CMDS += tests/integration/partition.sh
TEST_CMDS += tests/integration/tls.sh
TEST_CMDS += tests/integration/catchup.sh
TEST_CMDS += tests/integration/catchup_waits.sh
TEST_CMDS += tests/integration/drain.sh
TEST_CMDS += tests/integration/membership.sh
TEST_CMDS += tests/integration/wiped.sh
TEST_CMDS += tests/integration/snapshot_kill.sh
TEST_CMDS += tests/integration/replicas.sh
TEST_CMDS += tests/integration/cluster_linear.sh
TEST_CMDS += tests/integration/cluster_queues.sh
TEST_CMDS += tests/integration/exec_flush.sh
TEST_CMDS += tests/integration/noquorum_write.sh
TEST_CMDS += tests/integration/xattr_restore.sh
TEST_CMDS += tests/integration/fsfix.sh
TEST_CMDS += tests/integration/fsfix_cluster.sh
TEST_CMDS += tests/integration/atomic_replace.sh
