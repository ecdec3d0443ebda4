# mk/storage.mk — the storage layer of cluster/: CRC32C, the WAL, snapshots and the
# single-node group (cluster/group.h), their unit tests and a short fuzz pass. Owner: storage.
CLUSTER_SRCS += cluster/fileio.c cluster/crc32c.c cluster/wal.c cluster/snapshot.c cluster/group_solo.c
CLUSTER_UNIT_TESTS += test_crc32c test_wal test_snapshot test_group_solo
# a short fuzz pass: 3 s per target (make test has a 20-minute budget; longer: make fuzz, or
# tests/fuzz/run 600)
TEST_CMDS += "tests/fuzz/run 3"
# The shared Raft store: every group's entries, hard state and snapshot metadata in one WAL.
CLUSTER_SRCS += cluster/rstore.c
CLUSTER_UNIT_TESTS += test_rstore
