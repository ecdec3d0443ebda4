# mk/raft.mk — filled in by the raft work.
