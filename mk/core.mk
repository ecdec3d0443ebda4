# The quorumfs daemon: the FUSE side (fs/) and the shared cluster/ basics. Owner: core.
CLUSTER_SRCS  += cluster/err.c cluster/assert.c cluster/placement.c
# The shard's state machine (libfs_sm, no FUSE): the shard, the object tree, the state
# machines of cache/ and config/ and of the session table, the registry, and their pure
# helpers (fs/ntable.c: the named-object table of queues/ and locks/).
SM_SRCS       += fs/names.c fs/cmd.c fs/snapio.c fs/effects.c fs/ntable.c fs/state.c \
                 fs/tree_sm.c fs/cache_sm.c fs/config_sm.c fs/session_sm.c fs/ns_sm.c \
                 fs/route.c
SM_UNIT_TESTS += test_names test_state test_route
SM_UNIT_TESTS += test_tree
# The FUSE side: the node, the mount and routing, the tree front and its namespaces' fronts.
FS_SRCS       += fs/metrics.c fs/node.c fs/status.c fs/mount.c fs/ns.c fs/dirlist.c \
                 fs/tree_fuse.c fs/tree_file.c fs/fuse_io.c fs/cache_fuse.c fs/config_fuse.c \
                 fs/watch.c fs/evstream.c fs/intr.c fs/testhook.c fs/cli_cluster.c \
                 fs/admin.c
