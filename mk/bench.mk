# mk/bench.mk — the FUSE mount benchmark (tools/bench): a null FUSE filesystem as the
# ceiling (nullfs), the load generator (fsbench) and the driver script. Owner: bench.
# `make all` builds the two programs; `make bench` runs the script (about 10 minutes).
TOOLS      += $(BUILD)/nullfs $(BUILD)/fsbench
BENCH_CMDS += "tools/bench --build $(BUILD)"
BENCH_CMDS += "tools/bench-cluster --build $(BUILD)"
BENCH_CMDS += "tools/bench-floor --build $(BUILD)"

$(BUILD)/nullfs: tools/nullfs.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDLIBS)

$(BUILD)/fsbench: tools/fsbench.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDLIBS)
BENCH_CMDS += "tools/bench-logs --build $(BUILD)"
BENCH_CMDS += "tools/bench-services --build $(BUILD)"
BENCH_CMDS += "tools/bench-join --build $(BUILD)"
