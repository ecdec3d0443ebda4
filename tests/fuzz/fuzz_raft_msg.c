/* tests/fuzz/fuzz_raft_msg.c — libFuzzer target for the Raft wire codec (cluster/raft_msg.c):
 * any bytes decode or are refused without a crash or a leak. A decoded message encodes to
 * the same length, and that encoding is canonical: it decodes again and re-encodes to the
 * very same bytes (the decoder may normalize, e.g. sort a configuration's servers). Clones
 * free cleanly, and configuration payloads decode safely too. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "cluster/raft.h"

/* Encodes m into a malloc'ed buffer; aborts on failure (a decoded message must encode). */
static uint8_t *encode(const raft_msg_t *m, size_t *len)
{
    size_t n = raft_msg_encoded_size(m);
    uint8_t *b = malloc(n ? n : 1);
    if (!b || raft_msg_encode(m, b, n, len) != 0 || *len != n)
        abort();
    return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    raft_msg_t m;
    if (raft_msg_decode(data, size, &m) == 0) {
        size_t len1, len2;
        uint8_t *b1 = encode(&m, &len1);
        if (len1 != size)
            abort();
        raft_msg_t again;
        if (raft_msg_decode(b1, len1, &again) != 0)
            abort();
        uint8_t *b2 = encode(&again, &len2);
        if (len2 != len1 || memcmp(b1, b2, len1) != 0)
            abort();
        raft_msg_t c;
        if (raft_msg_clone(&c, &m) == 0)
            raft_msg_free(&c);
        raft_msg_free(&again);
        raft_msg_free(&m);
        free(b1);
        free(b2);
    }
    raft_conf_t conf;
    raft_conf_decode(data, size, &conf);
    return 0;
}
