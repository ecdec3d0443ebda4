/* tests/fuzz/fuzz_apply.c — libFuzzer target for the mount's state machine: arbitrary bytes
 * are cut into commands (u16 length prefixes) and applied to a fresh state. Malformed
 * commands must be refused without a crash, a leak or a broken tree; the state's own
 * counters must stay consistent, and every namespace's invariants (ns_sm_check) hold after
 * every apply. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
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
        if (st->cache_bytes > st->cache_max_bytes + (1u << 20))
            abort();
    }
    uint64_t keys = 0, bytes = 0;
    for (obj_t *o = st->lru_head; o; o = o->u.cache.lru_next) {
        keys++;
        bytes += o->val->len;
    }
    if (keys != st->cache_keys || bytes != st->cache_bytes)
        abort();
    state_free(st);
    return 0;
}
