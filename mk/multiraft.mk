# mk/multiraft.mk — the node loop that drives many Raft groups over one shared Raft store
# (cluster/mraft.c), the Raft-backed group, and their unit test. Owner: multiraft (issue 9).
CLUSTER_SRCS       += cluster/mraft.c cluster/mraft_tcp.c cluster/group_raft.c
CLUSTER_UNIT_TESTS += test_multiraft
CLUSTER_UNIT_TESTS += test_group_raft
# online membership changes (issue 10 item 2): conf changes, a joining node, peers at run time
CLUSTER_UNIT_TESTS += test_membership
# the meta group's state machine: the member record (docs/META.md)
CLUSTER_SRCS       += cluster/meta_sm.c
CLUSTER_UNIT_TESTS += test_meta_sm
# leader-stamped time: cluster/sm.h's stamp through the node loop into fs/state.c's shards
SM_UNIT_TESTS      += test_stamp
# balanced voters and leaders for the member list, and the mover that reconciles every
# group's configuration with it (docs/MEMBERSHIP.md "Layout", "The mover")
CLUSTER_SRCS       += cluster/layout.c cluster/mover.c
CLUSTER_UNIT_TESTS += test_layout
