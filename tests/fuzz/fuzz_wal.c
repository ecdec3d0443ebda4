/* tests/fuzz/fuzz_wal.c — libFuzzer target for the WAL segment reader (wal_scan_buffer).
 * The first input byte picks a mode: raw bytes as a whole segment; a valid header followed
 * by raw bytes; or a valid segment built from the input (correct CRCs) and then damaged by
 * a bit flip and a cut, so the torn-vs-corrupt logic is reached. The reader must never
 * crash, leak, loop, read out of bounds, or deliver a record past damage. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/crc32c.h"
#include "cluster/err.h"
#include "cluster/wal.h"

#define CHECK(c)                                                                         \
    do {                                                                                 \
        if (!(c))                                                                        \
            __builtin_trap();                                                            \
    } while (0)

struct seen {
    uint64_t n, last, sum;
};

static int on_record(void *arg, uint64_t index, uint64_t term, const void *p, size_t len)
{
    struct seen *s = arg;
    const uint8_t *b = p;
    CHECK(s->n == 0 || index == s->last + 1);
    for (size_t i = 0; i < len; i++) /* touch every byte: ASan catches out-of-bounds */
        s->sum += b[i];
    s->n++;
    s->last = index;
    (void)term;
    return 0;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void header(uint8_t *h, uint64_t first)
{
    static const uint8_t magic[8] = { 'Q', 'F', 'S', '-', 'W', 'A', 'L', 0 };
    memset(h, 0, WAL_SEGMENT_HEADER);
    memcpy(h, magic, 8);
    put32(h + 8, WAL_VERSION);
    put32(h + 12, WAL_SEGMENT_HEADER);
    put64(h + 16, first);
    put32(h + 28, crc32c(0, h, WAL_SEGMENT_HEADER - 4));
}

static void scan_both(const uint8_t *buf, size_t len)
{
    for (int is_last = 0; is_last < 2; is_last++) {
        struct seen s = { 0, 0, 0 };
        wal_scan_t r;
        int rc = wal_scan_buffer(buf, len, 0, 0, is_last, on_record, &s, &r);
        CHECK(rc == 0 || rc == -QERR_CORRUPT || rc == -QERR_FORMAT);
        CHECK(r.valid_end <= len);
        CHECK(s.n == r.records);
        if (rc == 0) {
            CHECK(is_last || r.valid_end == len);
            CHECK(r.records == 0 || s.last == r.last_index);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0] % 3;
    data++;
    size--;
    if (mode == 0) {
        scan_both(data, size);
        return 0;
    }
    /* worst case of mode 2: 24 bytes of header per input byte */
    uint8_t *buf = malloc(WAL_SEGMENT_HEADER + size * (WAL_RECORD_HEADER + 1) + 1);
    if (!buf)
        return 0;
    header(buf, 1 + (size ? data[0] % 4 : 0));
    size_t len = WAL_SEGMENT_HEADER;
    if (mode == 1) {
        memcpy(buf + len, data, size);
        len += size;
    } else {
        /* records: [len byte][payload] ..., then a 2-byte flip position and a cut byte */
        size_t p = 0, end = size > 3 ? size - 3 : 0;
        uint64_t index = 1 + (size ? data[0] % 4 : 0);
        while (p < end) {
            size_t n = data[p++] % 64;
            if (n > end - p)
                n = end - p;
            uint8_t *h = buf + len;
            put32(h, (uint32_t)n);
            put64(h + 8, index++);
            put64(h + 16, 1);
            memcpy(h + WAL_RECORD_HEADER, data + p, n);
            put32(h + 4, crc32c(0, h + 8, WAL_RECORD_HEADER - 8 + n));
            len += WAL_RECORD_HEADER + n;
            p += n;
        }
        if (size >= 3) {
            size_t flip = ((size_t)data[size - 3] << 8 | data[size - 2]);
            if (flip < len * 8 && data[size - 1] & 0x80)
                buf[flip / 8] ^= (uint8_t)(1u << (flip % 8));
            size_t cut = data[size - 1] & 0x3f;
            len = cut < len ? len - cut : 0;
        }
    }
    scan_both(buf, len);
    free(buf);
    return 0;
}
