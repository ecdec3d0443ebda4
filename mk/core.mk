# The quorumfs daemon: the FUSE side (fs/) and the shared cluster/ basics. Owner: core.
CLUSTER_SRCS += cluster/err.c cluster/assert.c
UNIT_TESTS   += test_names test_state
FS_SRCS      += fs/names.c fs/cmd.c fs/snapio.c fs/tree_sm.c fs/state.c fs/cache_sm.c fs/config_sm.c \
                fs/effects.c fs/session_sm.c fs/ns_sm.c \
                fs/metrics.c fs/node.c fs/status.c fs/mount.c fs/ns.c fs/tree_fuse.c fs/cache_fuse.c fs/config_fuse.c fs/dirlist.c fs/watch.c fs/intr.c fs/testhook.c
