# mk/net.mk — node-to-node networking of cluster/: the frame codec (cluster/frame.c), the TCP
# transport with optional mutual TLS (cluster/transport.c) and their unit tests. Owner: net.
# The libFuzzer target tests/fuzz/fuzz_frame.c is built and run by tests/fuzz/run.
CLUSTER_SRCS       += cluster/frame.c cluster/transport.c
CLUSTER_UNIT_TESTS += test_frame test_transport
# TLS (OpenSSL's libssl) is part of libcluster, so every link of it takes libssl: LDLIBS and
# SM_LDLIBS are simply expanded in the Makefile, before this file is read, so these append.
SSL_LDLIBS         := $(shell pkg-config --libs libssl 2>/dev/null || echo -lssl)
LDLIBS             += $(SSL_LDLIBS)
SM_LDLIBS          += $(SSL_LDLIBS)
# test_transport_tls makes its certificates with the openssl command (package openssl).
CLUSTER_UNIT_TESTS += test_transport_tls
# Status queries: the client side (cluster/status_client.c) of `quorumfs cluster status`, and
# the unit test of both sides (the member's answer is in cluster/transport.c).
CLUSTER_SRCS       += cluster/status_client.c cluster/admin_client.c
CLUSTER_UNIT_TESTS += test_status_query
# admin requests on the peer port (cluster drain|undrain): frames, transport, client
CLUSTER_UNIT_TESTS += test_admin
