# mk/net.mk — node-to-node networking of cluster/: the frame codec (cluster/frame.c) and
# its unit test. Owner: net. The libFuzzer target tests/fuzz/fuzz_frame.c is built by
# tests/fuzz/run.
CLUSTER_SRCS       += cluster/frame.c
CLUSTER_UNIT_TESTS += test_frame
