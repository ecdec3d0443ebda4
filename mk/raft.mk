# mk/raft.mk — the pure Raft core (cluster/raft*.c), its scenario tests and its benchmark.
CLUSTER_SRCS += cluster/raft.c cluster/raft_log.c cluster/raft_msg.c
