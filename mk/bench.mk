# mk/bench.mk — filled in by the bench work.
