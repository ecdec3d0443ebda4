# mk/search.mk — the search/ namespace (issue 12, FILE-API §9, docs/SEARCH.md): the
# tokenizer, the per-shard positional index and the BM25 query engine (libfs_sm), and the
# FUSE front. Owner: search.
SM_SRCS       += fs/tokenize.c
SM_UNIT_TESTS += test_tokenize
SM_SRCS       += fs/search_sm.c fs/bm25.c fs/search_cache.c
SM_UNIT_TESTS += test_search
FS_SRCS       += fs/search_fuse.c
TEST_CMDS     += tests/integration/search.sh
BENCH_CMDS    += "tools/bench-search --build $(BUILD)"
# The query engine alone, in process (tools/bench-search-engine.c; tools/bench-search runs it).
TOOLS         += $(BUILD)/bench-search-engine
$(BUILD)/bench-search-engine: tools/bench-search-engine.c $(BUILD)/libfs_sm.a $(BUILD)/libcluster.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(SM_LDLIBS)
