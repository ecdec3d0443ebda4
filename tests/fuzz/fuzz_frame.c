/* tests/fuzz/fuzz_frame.c — libFuzzer target for the streaming frame decoder
 * (cluster/frame.c). Any byte stream is decoded or refused without a crash, a leak or an
 * out-of-bounds read, and the outcome does not depend on how the stream is cut: the input
 * is decoded whole and again in chunks of pseudo-random sizes (seeded by its first byte),
 * and both runs must give the same frames, then the same error code and message (which name
 * the failing frame and its offset), or both consume the whole input. Each decoded frame encodes again, and that encoding
 * decodes to a frame that encodes to the very same bytes.
 * The first byte's low bit asks for every frame's CRC to be fixed up before decoding, so
 * the fuzzer reaches payload decoding (HELLO, PING, the Raft message inside RAFT frames, FWD,
 * the status request and answer with their UTF-8 text, the admin request with its printable
 * address and the admin answer with its code and UTF-8 text) without having to solve CRC32C;
 * the other runs fuzz the CRC check itself. The re-encoding check covers the admin frames
 * too: a decoded ADMIN_REQ keeps its version, op, id, flags and address, an ADMIN its code. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "cluster/bytes.h"
#include "cluster/crc32c.h"
#include "cluster/frame.h"

#define MAX_PAYLOAD (64 * 1024)   /* small, so oversize lengths are reachable */

typedef struct run {
    uint8_t *out;      /* re-encodings of every decoded frame, back to back */
    size_t len, cap;
    int rc;            /* last return: 0 (stream ended mid-frame or at a boundary) or < 0 */
    size_t consumed;   /* bytes consumed when the stream ended without error */
    char err[256];
} run_t;

static void append(run_t *r, const uint8_t *p, size_t n)
{
    if (r->len + n > r->cap) {
        r->cap = (r->len + n) * 2;
        r->out = realloc(r->out, r->cap);
        if (!r->out)
            abort();
    }
    memcpy(r->out + r->len, p, n);
    r->len += n;
}

/* Encodes f, checks the encoding is canonical, appends it to r. */
static void record(run_t *r, const frame_t *f)
{
    size_t n = frame_encoded_size(f), len, len2, used;
    uint8_t *b = malloc(n);
    if (!b || frame_encode(f, b, n, &len) != 0 || len != n)
        abort();
    frame_decoder_t *d = frame_decoder_new(0);
    frame_t g;
    if (!d || frame_decoder_feed(d, b, len, &used, &g) != 1 || used != len)
        abort();
    uint8_t *b2 = malloc(n);
    if (!b2 || frame_encode(&g, b2, n, &len2) != 0 || len2 != len || memcmp(b, b2, len))
        abort();
    frame_free(&g);
    frame_decoder_free(d);
    append(r, b, len);
    free(b);
    free(b2);
}

/* Decodes data in chunks; chunk sizes come from seed (0: one chunk). */
static void decode(const uint8_t *data, size_t size, uint32_t seed, run_t *r)
{
    memset(r, 0, sizeof *r);
    frame_decoder_t *d = frame_decoder_new(MAX_PAYLOAD);
    if (!d)
        abort();
    size_t off = 0;
    uint32_t x = seed * 2654435761u + 1;
    while (off < size) {
        size_t chunk = size - off;
        if (seed) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            size_t c = 1 + x % 97;
            if (c < chunk)
                chunk = c;
        }
        /* within one chunk the decoder may yield several frames */
        size_t at = off, end = off + chunk;
        while (at < end) {
            frame_t f;
            size_t used;
            int rc = frame_decoder_feed(d, data + at, end - at, &used, &f);
            at += used;
            if (rc < 0) {
                r->rc = rc;
                r->consumed = at;
                strncpy(r->err, frame_decoder_error(d), sizeof r->err - 1);
                frame_decoder_free(d);
                return;
            }
            if (rc == 1) {
                record(r, &f);
                frame_free(&f);
            } else if (at != end) {
                abort(); /* 0 means every byte was consumed */
            }
        }
        off = end;
    }
    r->consumed = off;
    frame_decoder_free(d);
}

/* Rewrites the CRC field of each frame the headers' lengths delimit in b (n bytes). */
static void fix_crcs(uint8_t *b, size_t n)
{
    size_t pos = 0;
    while (n - pos >= FRAME_HDR_BYTES) {
        uint32_t plen = le_get32(b + pos + 8);
        if (plen > n - pos - FRAME_HDR_BYTES)
            break;
        uint8_t *h = b + pos;
        le_put32(h + 12, crc32c(crc32c(0, h, 12), h + FRAME_HDR_BYTES, plen));
        pos += FRAME_HDR_BYTES + (size_t)plen;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint32_t seed = (uint32_t)data[0] + 1;
    uint8_t *in = malloc(size);
    if (!in)
        abort();
    memcpy(in, data + 1, size - 1);
    if (data[0] & 1)
        fix_crcs(in, size - 1);
    run_t whole, cut;
    decode(in, size - 1, 0, &whole);
    decode(in, size - 1, seed, &cut);
    free(in);
    if (whole.rc != cut.rc || (whole.rc == 0 && (whole.consumed != size - 1 ||
                                                 cut.consumed != size - 1)) ||
        whole.len != cut.len ||
        (whole.len && memcmp(whole.out, cut.out, whole.len)) || strcmp(whole.err, cut.err))
        abort();
    free(whole.out);
    free(cut.out);
    return 0;
}
