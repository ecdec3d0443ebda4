# mk/net.mk — node-to-node networking of cluster/: the frame codec (cluster/frame.c), the TCP
# transport (cluster/transport.c) and their unit tests. Owner: net. The libFuzzer target
# tests/fuzz/fuzz_frame.c is built and run by tests/fuzz/run.
CLUSTER_SRCS       += cluster/frame.c cluster/transport.c
CLUSTER_UNIT_TESTS += test_frame test_transport
