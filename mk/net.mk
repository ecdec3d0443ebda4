# mk/net.mk — node-to-node networking of cluster/: frame codec (cluster/frame.c) and the TCP
# transport (cluster/transport.c), their unit tests. Owner: net.
