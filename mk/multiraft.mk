# mk/multiraft.mk — the node loop that drives many Raft groups over one shared Raft store
# (cluster/mraft.c), the Raft-backed group, and their unit test. Owner: multiraft (issue 9).
