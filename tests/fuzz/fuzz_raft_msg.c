/* tests/fuzz/fuzz_raft_msg.c — libFuzzer target for the Raft wire codec (cluster/raft_msg.c):
 * any bytes decode or are refused without a crash; a decoded message re-encodes to exactly
 * the same bytes, and clones free cleanly. Configuration entries decode safely too. */
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <stdlib.h>
#include "cluster/raft.h"
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    raft_msg_t m;
    if (raft_msg_decode(data, size, &m) == 0) {
        size_t n = raft_msg_encoded_size(&m), len;
        uint8_t *b = malloc(n);
        if (raft_msg_encode(&m, b, n, &len) != 0 || len != size || memcmp(b, data, size))
            abort();
        raft_msg_t c;
        raft_msg_clone(&c, &m);
        raft_msg_free(&c);
        free(b);
        raft_msg_free(&m);
    }
    raft_conf_t conf;
    raft_conf_decode(data, size, &conf);
    return 0;
}
