/* tests/fuzz/fuzz_apply.c — libFuzzer target for the mount's state machine: arbitrary bytes
 * are cut into commands (u16 length prefixes) and applied to a fresh state. Malformed
 * commands must be refused without a crash, a leak or a broken tree: the invariants of the
 * tree, the session table and every namespace (ns_sm_check: counts, links, the cache's LRU
 * and TTL index, config's revisions and events...) hold after every apply. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "fs/cache_sm.h"
#include "fs/ns_sm.h"
#include "fs/state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    state_t *st = state_new(4096);
    if (!st)
        return 0;
    uint64_t index = 0;
    size_t off = 0;
    while (off + 2 <= size) {
        size_t n = (size_t)data[off] | ((size_t)data[off + 1] << 8);
        off += 2;
        if (n > size - off)
            n = size - off;
        sm_result_t res;
        memset(&res, 0, sizeof(res));
        state_sm_ops.apply(st, ++index, data + off, n, &res);
        off += n;
        ns_sm_check(st);
        cache_stats_t cs;
        cache_sm_stats(st, &cs);
        if (cs.bytes > cs.cap + (1u << 20))
            abort();
    }
    state_free(st);
    return 0;
}
