# mk/queues.mk — queues/ and locks/ namespace modules (issue 4). Owner: queues.
# Sources join libfs; unit tests of the apply logic; integration scripts on a real mount;
# the benchmark client (tools/queuebench) and its driver (tools/bench-queues).
FS_SRCS    += fs/session.c fs/queues.c fs/locks.c
UNIT_TESTS += test_queues test_locks
TEST_CMDS  += tests/integration/queues.sh tests/integration/locks.sh
