# mk/logs.mk — the logs/ namespace module (issue 11, docs/LOGS.md): replicated append-only
# logs whose segments live in files under the node's data directory. Owner: logs.
SM_SRCS       += fs/logs_sm.c
SM_UNIT_TESTS += test_logs
FS_SRCS       += fs/logs_fuse.c
TEST_CMDS     += tests/integration/logs.sh
