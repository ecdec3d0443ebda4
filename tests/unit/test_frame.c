/* tests/unit/test_frame.c — the frame codec (cluster/frame.c): round trips of every frame
 * type, a stream of several frames cut at every split point and fed one byte at a time,
 * each malformed input refused with its own code and message, and the decoder's memory
 * bounds (an oversize length is refused from the header alone, before any allocation);
 * the status query frames (STATUS_REQ, STATUS) and their UTF-8 checks; the admin frames
 * (ADMIN_REQ, ADMIN): round trips, and every malformation refused by the decoder and the
 * encoder alike. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/bytes.h"
#include "cluster/crc32c.h"
#include "cluster/err.h"
#include "cluster/frame.h"
#include "tests/unit/check.h"

/* ---- fixture: one frame of each type, encoded ---------------------------------------- */

static uint8_t payload_a[300], payload_b[5], chunk[700];
static raft_entry_t ents[2];

static void fill(void)
{
    for (size_t i = 0; i < sizeof payload_a; i++)
        payload_a[i] = (uint8_t)(i * 7 + 1);
    memcpy(payload_b, "hello", 5);
    for (size_t i = 0; i < sizeof chunk; i++)
        chunk[i] = (uint8_t)(i ^ 0x5a);
    ents[0] = (raft_entry_t){ .term = 3, .index = 10, .type = RAFT_ENTRY_NORMAL,
                              .len = sizeof payload_a, .data = payload_a };
    ents[1] = (raft_entry_t){ .term = 3, .index = 11, .type = RAFT_ENTRY_NORMAL,
                              .len = sizeof payload_b, .data = payload_b };
}

#define N_SAMPLES 6
static frame_t sample(int i)
{
    frame_t f;
    memset(&f, 0, sizeof f);
    switch (i) {
    case 0:
        f.type = FRAME_HELLO;
        f.hello = (frame_hello_t){ .node_id = 7, .cluster_id = 0xC0FFEE1234ull,
                                   .proto_min = 1, .proto_max = 1 };
        break;
    case 1:
        f.type = FRAME_RAFT;
        f.group = 42;
        f.msg = (raft_msg_t){ .type = RAFT_MSG_APPEND, .from = 1, .to = 2, .term = 3,
                              .index = 9, .log_term = 2, .commit = 8, .n_entries = 2,
                              .entries = ents };
        break;
    case 2:
        f.type = FRAME_RAFT;
        f.group = 0xFFFFFFFFu;
        f.msg = (raft_msg_t){ .type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 3, .term = 3,
                              .commit = 11, .ctx = 99 };
        break;
    case 3:
        f.type = FRAME_RAFT;
        f.group = 0;
        f.msg = (raft_msg_t){ .type = RAFT_MSG_SNAPSHOT, .from = 2, .to = 1, .term = 5,
                              .offset = 4096, .len = sizeof chunk, .data = chunk,
                              .flags = RAFT_MSGF_LAST };
        f.msg.snap.index = 100;
        f.msg.snap.term = 4;
        f.msg.snap.conf.n = 3;
        for (int k = 0; k < 3; k++)
            f.msg.snap.conf.s[k] = (raft_server_t){ .id = (uint64_t)k + 1, .role = RAFT_VOTER };
        break;
    case 4:
        f.type = FRAME_PING;
        f.ping = 0x0102030405060708ull;
        break;
    default:
        f.type = FRAME_PONG;
        f.ping = 12345;
        break;
    }
    return f;
}

/* Encodes f into a malloc'ed buffer. */
static uint8_t *enc(const frame_t *f, size_t *len)
{
    size_t n = frame_encoded_size(f);
    uint8_t *b = malloc(n);
    if (!b || frame_encode(f, b, n, len) != 0 || *len != n) {
        free(b);
        return NULL;
    }
    return b;
}

/* 1 iff a and b encode to the same bytes (the codec is canonical). */
static int same(const frame_t *a, const frame_t *b)
{
    size_t la, lb;
    uint8_t *ea = enc(a, &la), *eb = enc(b, &lb);
    int ok = ea && eb && la == lb && memcmp(ea, eb, la) == 0;
    free(ea);
    free(eb);
    return ok;
}

/* A frame with arbitrary header fields and a correct CRC. Returns its length. */
static size_t raw_frame(uint8_t *out, uint32_t magic, uint8_t version, uint8_t type,
                        uint16_t flags, const void *payload, uint32_t plen)
{
    le_put32(out, magic);
    out[4] = version;
    out[5] = type;
    out[6] = (uint8_t)flags;
    out[7] = (uint8_t)(flags >> 8);
    le_put32(out + 8, plen);
    if (plen)
        memcpy(out + FRAME_HDR_BYTES, payload, plen);
    le_put32(out + 12, crc32c(crc32c(0, out, 12), out + FRAME_HDR_BYTES, plen));
    return FRAME_HDR_BYTES + plen;
}

/* Feeds buf whole; expects the decoder to fail with code. Checks that the failure is sticky
 * and that its message contains needle. */
static int refused(const uint8_t *buf, size_t len, uint32_t max, int code, const char *needle)
{
    frame_decoder_t *d = frame_decoder_new(max);
    frame_t f;
    size_t used, off = 0;
    int rc;
    while ((rc = frame_decoder_feed(d, buf + off, len - off, &used, &f)) == 1) {
        frame_free(&f);
        off += used;
    }
    int ok = rc == code && strstr(frame_decoder_error(d), needle) != NULL;
    if (!ok)
        printf("# want %d (%s), got %d: \"%s\"\n", code, needle, rc, frame_decoder_error(d));
    ok = ok && frame_decoder_feed(d, buf, len, &used, &f) == code && used == 0;
    frame_decoder_free(d);
    return ok;
}

/* ---- cases --------------------------------------------------------------------------- */

TEST(round_trip_every_type)
{
    for (int i = 0; i < N_SAMPLES; i++) {
        frame_t f = sample(i), g;
        size_t len, used;
        uint8_t *b = enc(&f, &len);
        CHECK(b != NULL);
        CHECK_EQ(le_get32(b), FRAME_MAGIC);
        CHECK_EQ(b[4], FRAME_VERSION);
        CHECK_EQ(b[5], f.type);
        CHECK_EQ(le_get32(b + 8), len - FRAME_HDR_BYTES);
        frame_decoder_t *d = frame_decoder_new(0);
        int rc = frame_decoder_feed(d, b, len, &used, &g);
        frame_decoder_free(d);
        free(b);
        CHECK_EQ(rc, 1);
        CHECK_EQ(used, len);
        CHECK_EQ(g.type, f.type);
        CHECK_EQ(g.group, f.group);
        CHECK(g.ping == f.ping);
        CHECK(memcmp(&g.hello, &f.hello, sizeof f.hello) == 0);
        CHECK_EQ(g.msg.type, f.msg.type);
        CHECK_EQ(g.msg.n_entries, f.msg.n_entries);
        CHECK(same(&f, &g));
        frame_free(&g);
    }
}

/* Decodes stream s (len n) cut into the pieces given by cuts (ascending offsets) and checks
 * that exactly the N_SAMPLES frames come out, equal to the samples, in order. */
static int decode_cut(const uint8_t *s, size_t n, const size_t *cuts, size_t ncuts)
{
    frame_decoder_t *d = frame_decoder_new(0);
    int got = 0, ok = 1;
    size_t prev = 0;
    for (size_t c = 0; c <= ncuts && ok; c++) {
        size_t end = c < ncuts ? cuts[c] : n, off = prev;
        while (ok) {
            frame_t f;
            size_t used;
            int rc = frame_decoder_feed(d, s + off, end - off, &used, &f);
            off += used;
            if (rc == 0)
                break;
            if (rc != 1 || got >= N_SAMPLES) {
                ok = 0;
                break;
            }
            frame_t want = sample(got++);
            ok = same(&want, &f);
            frame_free(&f);
        }
        ok = ok && off == end;
        prev = end;
    }
    frame_decoder_free(d);
    return ok && got == N_SAMPLES;
}

static uint8_t *sample_stream(size_t *n)
{
    size_t total = 0;
    for (int i = 0; i < N_SAMPLES; i++) {
        frame_t f = sample(i);
        total += frame_encoded_size(&f);
    }
    uint8_t *s = malloc(total);
    size_t off = 0, len;
    for (int i = 0; i < N_SAMPLES; i++) {
        frame_t f = sample(i);
        if (frame_encode(&f, s + off, total - off, &len) != 0)
            abort();
        off += len;
    }
    *n = total;
    return s;
}

TEST(every_split_point)
{
    size_t n;
    uint8_t *s = sample_stream(&n);
    int bad = -1;
    for (size_t i = 0; i <= n && bad < 0; i++)
        if (!decode_cut(s, n, &i, 1))
            bad = (int)i;
    /* two cuts: every pair around the frame boundaries and inside headers */
    for (size_t i = 0; i <= n && bad < 0; i += 3)
        for (size_t j = i; j <= n && bad < 0; j += 17) {
            size_t cuts[2] = { i, j };
            if (!decode_cut(s, n, cuts, 2))
                bad = (int)i;
        }
    free(s);
    CHECK_EQ(bad, -1);
}

TEST(one_byte_at_a_time_and_random_chunks)
{
    size_t n;
    uint8_t *s = sample_stream(&n);
    size_t *cuts = malloc(n * sizeof *cuts);
    for (size_t i = 0; i < n; i++)
        cuts[i] = i + 1;
    int ok = decode_cut(s, n, cuts, n - 1);
    uint64_t x = 88172645463325252ull;
    for (int round = 0; round < 200 && ok; round++) {
        size_t k = 0, at = 0;
        for (;;) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            at += x % 40;
            if (at > n)
                break;
            cuts[k++] = at;
        }
        ok = decode_cut(s, n, cuts, k);
    }
    free(cuts);
    free(s);
    CHECK(ok);
}

TEST(malformed_headers)
{
    uint8_t b[64], p[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    size_t n = raw_frame(b, 0x12345678, FRAME_VERSION, FRAME_PING, 0, p, 8);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "bad magic"));
    n = raw_frame(b, FRAME_MAGIC, 2, FRAME_PING, 0, p, 8);
    CHECK(refused(b, n, 0, -QERR_FORMAT, "frame version 2"));
    n = raw_frame(b, FRAME_MAGIC, 0, FRAME_PING, 0, p, 8);
    CHECK(refused(b, n, 0, -QERR_FORMAT, "frame version 0"));
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, 0, 0, p, 8);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "unknown frame type 0"));
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME__COUNT, 0, p, 8);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "unknown frame type"));
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_PING, 0x100, p, 8);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "nonzero flags"));
}

TEST(crc_mismatch)
{
    frame_t f = sample(1);
    size_t n;
    uint8_t *b = enc(&f, &n);
    CHECK(b != NULL);
    b[n - 1] ^= 0x40; /* a payload byte */
    int ok = refused(b, n, 0, -QERR_CORRUPT, "CRC mismatch");
    b[n - 1] ^= 0x40;
    b[8] ^= 1; /* the length: the frame now ends one byte early or late */
    ok = ok && refused(b, n, 0, -QERR_CORRUPT, "CRC mismatch");
    b[8] ^= 1;
    b[13] ^= 0x80; /* the CRC itself */
    ok = ok && refused(b, n, 0, -QERR_CORRUPT, "CRC mismatch");
    free(b);
    CHECK(ok);
}

TEST(wrong_payload_sizes)
{
    uint8_t b[128], p[64];
    memset(p, 0, sizeof p);
    size_t n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_PING, 0, p, 7);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "wrong size"));
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_PONG, 0, p, 9);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "wrong size"));
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_HELLO, 0, p, FRAME_HELLO_BYTES - 1);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "wrong size"));
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_RAFT, 0, p, 3);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "wrong size"));
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_HELLO, 0, p, FRAME_HELLO_BYTES);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "HELLO with node id 0"));
}

TEST(hello_incarnation)
{
    /* sent and read back; a 24-byte HELLO (older builds) reads as incarnation 0 */
    frame_t f = { .type = FRAME_HELLO, .hello = { .node_id = 3, .cluster_id = 9,
                  .proto_min = 1, .proto_max = 1, .incarnation = 0x1122334455667788ull } };
    uint8_t b[128];
    size_t n, used;
    CHECK_EQ(frame_encode(&f, b, sizeof b, &n), 0);
    CHECK_EQ(n, FRAME_HDR_BYTES + FRAME_HELLO_INC_BYTES);
    frame_decoder_t *d = frame_decoder_new(0);
    frame_t g;
    CHECK_EQ(frame_decoder_feed(d, b, n, &used, &g), 1);
    CHECK_EQ(g.hello.incarnation, 0x1122334455667788ull);
    uint8_t p[FRAME_HELLO_BYTES];
    memset(p, 0, sizeof p);
    le_put64(p, 5);
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_HELLO, 0, p, sizeof p);
    CHECK_EQ(frame_decoder_feed(d, b, n, &used, &g), 1);
    CHECK_EQ(g.hello.node_id, 5);
    CHECK_EQ(g.hello.incarnation, 0);
    frame_decoder_free(d);
}

TEST(hello_may_grow)
{
    /* a later version's longer HELLO is read by its first 32 bytes */
    uint8_t b[128], p[40];
    memset(p, 0xEE, sizeof p);
    le_put64(p, 5);
    le_put64(p + 8, 77);
    le_put32(p + 16, 1);
    le_put32(p + 20, 3);
    le_put64(p + 24, 42);
    size_t n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_HELLO, 0, p, sizeof p), used;
    frame_decoder_t *d = frame_decoder_new(0);
    frame_t f;
    int rc = frame_decoder_feed(d, b, n, &used, &f);
    frame_decoder_free(d);
    CHECK_EQ(rc, 1);
    CHECK_EQ(f.hello.node_id, 5);
    CHECK_EQ(f.hello.cluster_id, 77);
    CHECK_EQ(f.hello.proto_min, 1);
    CHECK_EQ(f.hello.proto_max, 3);
    CHECK_EQ(f.hello.incarnation, 42);
}

TEST(raft_payload_refused)
{
    frame_t f = sample(2);
    uint8_t msg[256], b[300];
    size_t mlen;
    CHECK_EQ(raft_msg_encode(&f.msg, msg + 4, sizeof msg - 4, &mlen), 0);
    le_put32(msg, 9);
    /* a valid frame around a message that raft_msg_decode refuses */
    size_t n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_RAFT, 0, msg, (uint32_t)mlen + 3);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "Raft message of group 9 refused"));
    msg[4 + 1] = 200; /* unknown message type */
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_RAFT, 0, msg, (uint32_t)mlen + 4);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "refused"));
    msg[4 + 1] = RAFT_MSG_HEARTBEAT;
    msg[4] = RAFT_WIRE_VERSION + 1; /* another Raft wire version */
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_RAFT, 0, msg, (uint32_t)mlen + 4);
    CHECK(refused(b, n, 0, -QERR_FORMAT, "refused"));
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_RAFT, 0, msg, 4); /* empty message */
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "refused"));
}

TEST(error_after_good_frames_names_the_frame)
{
    frame_t f = sample(4);
    uint8_t b[64];
    size_t n, used;
    CHECK_EQ(frame_encode(&f, b, sizeof b, &n), 0);
    memcpy(b + n, "GARBAGE!GARBAGE!", 16);
    CHECK(refused(b, n + 16, 0, -QERR_CORRUPT, "frame 2 at stream byte 24: bad magic"));
    /* byte by byte, the failure comes at the 16th garbage byte, not before */
    frame_decoder_t *d = frame_decoder_new(0);
    int rc = 0;
    size_t i;
    for (i = 0; i < n + 16; i++) {
        frame_t g;
        rc = frame_decoder_feed(d, b + i, 1, &used, &g);
        frame_free(&g);
        if (rc < 0)
            break;
    }
    frame_decoder_free(d);
    CHECK_EQ(rc, -QERR_CORRUPT);
    CHECK_EQ(i, n + 15);
}

TEST(oversize_refused_before_allocating)
{
    uint8_t h[FRAME_HDR_BYTES];
    raw_frame(h, FRAME_MAGIC, FRAME_VERSION, FRAME_RAFT, 0, NULL, 0);
    le_put32(h + 8, 0xFFFFFFFFu);
    frame_decoder_t *d = frame_decoder_new(0);
    frame_t f;
    size_t used;
    /* header only, split: nothing is allocated, the length is refused at its last byte */
    CHECK_EQ(frame_decoder_feed(d, h, 10, &used, &f), 0);
    CHECK_EQ(frame_decoder_mem(d), 0);
    int rc = frame_decoder_feed(d, h + 10, 6, &used, &f);
    size_t mem = frame_decoder_mem(d);
    frame_decoder_free(d);
    CHECK_EQ(rc, -QERR_TOOBIG);
    CHECK_EQ(mem, 0);
    /* a configured limit: max + 1 refused, max accepted */
    le_put32(h + 8, 1001);
    CHECK(refused(h, sizeof h, 1000, -QERR_TOOBIG, "payload length 1001 over the limit 1000"));
    uint8_t *big = calloc(1, FRAME_HDR_BYTES + 1000);
    CHECK(big != NULL);
    uint8_t *p = calloc(1, 1000);
    le_put32(p, 1);
    frame_t hb = sample(2);
    size_t mlen;
    raft_msg_encode(&hb.msg, p + 4, 996, &mlen);
    /* pad the message with nothing: use exactly mlen + 4 bytes, under the limit */
    size_t n = raw_frame(big, FRAME_MAGIC, FRAME_VERSION, FRAME_RAFT, 0, p, (uint32_t)mlen + 4);
    d = frame_decoder_new((uint32_t)mlen + 4);
    rc = frame_decoder_feed(d, big, n, &used, &f);
    frame_free(&f);
    frame_decoder_free(d);
    free(p);
    free(big);
    CHECK_EQ(rc, 1);
}

TEST(large_frame_buffer_is_bounded_and_released)
{
    static uint8_t data[1 << 20];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 31);
    frame_t f;
    memset(&f, 0, sizeof f);
    f.type = FRAME_RAFT;
    f.group = 3;
    f.msg = (raft_msg_t){ .type = RAFT_MSG_SNAPSHOT, .from = 1, .to = 2, .term = 1,
                          .len = sizeof data, .data = data };
    size_t n, used;
    uint8_t *b = enc(&f, &n);
    CHECK(b != NULL);
    frame_decoder_t *d = frame_decoder_new(0);
    frame_t g;
    size_t off = 0, peak = 0;
    int rc = 0;
    while (off < n) {
        size_t step = n - off < 65536 ? n - off : 65536;
        rc = frame_decoder_feed(d, b + off, step, &used, &g);
        off += used;
        if (frame_decoder_mem(d) > peak)
            peak = frame_decoder_mem(d);
        if (rc != 0)
            break;
    }
    size_t after = frame_decoder_mem(d);
    frame_decoder_free(d);
    free(b);
    CHECK_EQ(rc, 1);
    CHECK_EQ(off, n);
    CHECK_EQ(peak, n - FRAME_HDR_BYTES); /* exactly the payload, once */
    CHECK_EQ(after, 0);                  /* a large buffer is not kept */
    CHECK_EQ(g.msg.len, sizeof data);
    CHECK(memcmp(g.msg.data, data, sizeof data) == 0);
    frame_free(&g);
}

TEST(encode_refusals)
{
    frame_t f = sample(0);
    uint8_t b[64];
    size_t n;
    CHECK_EQ(frame_encode(&f, b, FRAME_HDR_BYTES + FRAME_HELLO_BYTES - 1, &n), -QERR_TOOBIG);
    f.hello.node_id = 0;
    CHECK_EQ(frame_encode(&f, b, sizeof b, &n), -QERR_INVAL);
    f.type = 0;
    CHECK_EQ(frame_encode(&f, b, sizeof b, &n), -QERR_INVAL);
    f.type = FRAME__COUNT;
    CHECK_EQ(frame_encode(&f, b, sizeof b, &n), -QERR_INVAL);
    frame_t r = sample(2);
    uint8_t rb[256];
    r.msg.type = 0;
    CHECK_EQ(frame_encode(&r, rb, sizeof rb, &n), -QERR_INVAL);
}

/* A status payload: version, flags, node id, age, then text (its length taken from strlen
 * unless n is given as >= 0). Returns the payload length. */
static uint32_t status_payload(uint8_t *p, uint32_t version, uint32_t flags, uint64_t node,
                               const char *text, long n)
{
    size_t len = n >= 0 ? (size_t)n : strlen(text);
    le_put32(p, version);
    le_put32(p + 4, flags);
    le_put64(p + 8, node);
    le_put64(p + 16, 1234);
    le_put32(p + 24, (uint32_t)len);
    memcpy(p + STATUS_HEAD_BYTES, text, len);
    return (uint32_t)(STATUS_HEAD_BYTES + len);
}

TEST(status_frames_round_trip)
{
    /* a request, then an answer with multi-byte characters, back to back */
    frame_t q = { .type = FRAME_STATUS_REQ, .status.version = STATUS_VERSION };
    const char *text = "members: 3\nleader of shard 0: node 2 \xc3\xa9\xe2\x9c\x93\n";
    frame_t a = { .type = FRAME_STATUS, .status = { .node_id = 9, .age_ms = 250,
                                                    .text = text, .len = strlen(text) } };
    size_t lq, la, used;
    uint8_t *bq = enc(&q, &lq), *ba = enc(&a, &la);
    CHECK(bq && ba);
    CHECK_EQ(lq, FRAME_HDR_BYTES + STATUS_REQ_BYTES);
    CHECK_EQ(la, FRAME_HDR_BYTES + STATUS_HEAD_BYTES + strlen(text));
    frame_decoder_t *d = frame_decoder_new(0);
    frame_t g;
    int rc = frame_decoder_feed(d, bq, lq, &used, &g);
    free(bq);
    CHECK_EQ(rc, 1);
    CHECK_EQ(g.type, FRAME_STATUS_REQ);
    CHECK_EQ(g.status.version, STATUS_VERSION);
    frame_free(&g);
    /* the answer one byte at a time: its text is copied out of the caller's chunks */
    for (size_t i = 0; i < la; i++) {
        rc = frame_decoder_feed(d, ba + i, 1, &used, &g);
        if (i + 1 < la)
            CHECK_EQ(rc, 0);
    }
    CHECK_EQ(rc, 1);
    CHECK_EQ(g.type, FRAME_STATUS);
    CHECK_EQ(g.status.version, STATUS_VERSION);
    CHECK_EQ(g.status.node_id, 9);
    CHECK_EQ(g.status.age_ms, 250);
    CHECK_EQ(g.status.len, strlen(text));
    CHECK(strcmp(g.status.text, text) == 0);
    CHECK(same(&a, &g));
    frame_free(&g);
    frame_decoder_free(d);
    free(ba);
    /* an empty text, and "nothing published" */
    frame_t e = { .type = FRAME_STATUS, .status = { .node_id = 1, .age_ms = STATUS_AGE_NONE } };
    uint8_t *be = enc(&e, &la);
    CHECK(be != NULL);
    d = frame_decoder_new(0);
    rc = frame_decoder_feed(d, be, la, &used, &g);
    frame_decoder_free(d);
    free(be);
    CHECK_EQ(rc, 1);
    CHECK(g.status.age_ms == STATUS_AGE_NONE);
    CHECK_EQ(g.status.len, 0);
    CHECK(g.status.text && g.status.text[0] == 0);
    frame_free(&g);
    /* a later client's longer request is read by its first 8 bytes */
    uint8_t b[128], p[64];
    memset(p, 0, sizeof p);
    le_put32(p, 7);
    size_t n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_STATUS_REQ, 0, p, 40);
    d = frame_decoder_new(0);
    rc = frame_decoder_feed(d, b, n, &used, &g);
    frame_decoder_free(d);
    CHECK_EQ(rc, 1);
    CHECK_EQ(g.status.version, 7);
}

TEST(status_frames_refused)
{
    static uint8_t b[FRAME_HDR_BYTES + STATUS_HEAD_BYTES + STATUS_MAX_TEXT + 64];
    static uint8_t p[STATUS_HEAD_BYTES + STATUS_MAX_TEXT + 64];
    memset(p, 0, sizeof p);
    /* requests */
    size_t n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_STATUS_REQ, 0, p, 7);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "wrong size"));
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_STATUS_REQ, 0, p, 8);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "status request of version 0"));
    le_put32(p, 1);
    le_put32(p + 4, 1);
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_STATUS_REQ, 0, p, 8);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "nonzero flags"));
    /* an oversize request is refused from its header alone */
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_STATUS_REQ, 0, p,
                  STATUS_REQ_MAX_BYTES + 1);
    CHECK(refused(b, FRAME_HDR_BYTES, 0, -QERR_CORRUPT, "over the limit of frame type 6"));
    /* answers */
    uint32_t pl = status_payload(p, 2, 0, 1, "x", -1);
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_STATUS, 0, p, pl);
    CHECK(refused(b, n, 0, -QERR_FORMAT, "status answer of another version"));
    pl = status_payload(p, 1, 4, 1, "x", -1);
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_STATUS, 0, p, pl);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "nonzero flags"));
    pl = status_payload(p, 1, 0, 0, "x", -1);
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_STATUS, 0, p, pl);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "node id 0"));
    pl = status_payload(p, 1, 0, 1, "abc", -1);
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_STATUS, 0, p, pl - 1);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "length does not match"));
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_STATUS, 0, p, STATUS_HEAD_BYTES - 1);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "wrong size"));
    const char *bad[] = { "\xc0\x80", "a\xed\xa0\x80", "\xe2\x9c", "\xf4\x90\x80\x80",
                          "\x80", "\xff" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pl = status_payload(p, 1, 0, 1, bad[i], -1);
        n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_STATUS, 0, p, pl);
        CHECK(refused(b, n, 0, -QERR_CORRUPT, "not valid UTF-8"));
    }
    pl = status_payload(p, 1, 0, 1, "a\0b", 3);
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_STATUS, 0, p, pl);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "not valid UTF-8"));
    /* the largest text passes, one byte more is refused from the header */
    memset(p + STATUS_HEAD_BYTES, 'a', STATUS_MAX_TEXT + 1);
    pl = status_payload(p, 1, 0, 1, (const char *)p + STATUS_HEAD_BYTES, STATUS_MAX_TEXT);
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_STATUS, 0, p, pl);
    frame_decoder_t *d = frame_decoder_new(0);
    frame_t g;
    size_t used;
    int rc = frame_decoder_feed(d, b, n, &used, &g);
    frame_decoder_free(d);
    CHECK_EQ(rc, 1);
    CHECK_EQ(g.status.len, STATUS_MAX_TEXT);
    frame_free(&g);
    pl = status_payload(p, 1, 0, 1, (const char *)p + STATUS_HEAD_BYTES, STATUS_MAX_TEXT + 1);
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_STATUS, 0, p, pl);
    CHECK(refused(b, FRAME_HDR_BYTES, 0, -QERR_CORRUPT, "over the limit of frame type 7"));
    /* encoding refuses what decoding would */
    frame_t f = { .type = FRAME_STATUS_REQ };
    CHECK_EQ(frame_encode(&f, b, sizeof b, &n), -QERR_INVAL);
    f = (frame_t){ .type = FRAME_STATUS, .status = { .node_id = 0, .text = "x", .len = 1 } };
    CHECK_EQ(frame_encode(&f, b, sizeof b, &n), -QERR_INVAL);
    f.status.node_id = 1;
    f.status.text = "\xc3";
    CHECK_EQ(frame_encode(&f, b, sizeof b, &n), -QERR_INVAL);
    f.status.text = (const char *)p + STATUS_HEAD_BYTES;
    f.status.len = STATUS_MAX_TEXT + 1;
    CHECK_EQ(frame_encode(&f, b, sizeof b, &n), -QERR_INVAL);
}

/* An admin request payload: version, op, id, flags, address length field, address bytes. */
static uint32_t admin_req_payload(uint8_t *p, uint32_t version, uint32_t op, uint32_t alen,
                                  const char *addr, size_t n)
{
    le_put32(p, version);
    le_put32(p + 4, op);
    le_put64(p + 8, 77);
    le_put32(p + 16, 0xF00D);
    le_put32(p + 20, alen);
    memcpy(p + ADMIN_REQ_HEAD_BYTES, addr, n);
    return (uint32_t)(ADMIN_REQ_HEAD_BYTES + n);
}

/* An admin answer payload: version, flags, node id, code, text length field, text bytes. */
static uint32_t admin_payload(uint8_t *p, uint32_t version, uint32_t flags, uint64_t node,
                              int32_t code, uint32_t tlen, const char *text, size_t n)
{
    le_put32(p, version);
    le_put32(p + 4, flags);
    le_put64(p + 8, node);
    le_put32(p + 16, (uint32_t)code);
    le_put32(p + 20, tlen);
    memmove(p + ADMIN_HEAD_BYTES, text, n);
    return (uint32_t)(ADMIN_HEAD_BYTES + n);
}

TEST(admin_frames_round_trip)
{
    frame_t q = { .type = FRAME_ADMIN_REQ, .admin = { .version = ADMIN_VERSION, .op = 3,
                  .id = 0xFFFFFFFFFFFFFFFFull, .flags = 0x80000001u } };
    snprintf(q.admin.addr, sizeof q.admin.addr, "[::1]:9000");
    const char *text = "drained node 3 \xe2\x9c\x93\n";
    frame_t a = { .type = FRAME_ADMIN, .admin = { .node_id = 5, .code = -16, .text = text,
                                                  .len = strlen(text) } };
    size_t lq, la, used;
    uint8_t *bq = enc(&q, &lq), *ba = enc(&a, &la);
    CHECK(bq && ba);
    CHECK_EQ(lq, FRAME_HDR_BYTES + ADMIN_REQ_HEAD_BYTES + strlen("[::1]:9000"));
    CHECK_EQ(la, FRAME_HDR_BYTES + ADMIN_HEAD_BYTES + strlen(text));
    frame_decoder_t *d = frame_decoder_new(0);
    frame_t g;
    int rc = frame_decoder_feed(d, bq, lq, &used, &g);
    CHECK_EQ(rc, 1);
    CHECK_EQ(g.type, FRAME_ADMIN_REQ);
    CHECK_EQ(g.admin.version, ADMIN_VERSION);
    CHECK_EQ(g.admin.op, 3);
    CHECK(g.admin.id == 0xFFFFFFFFFFFFFFFFull);
    CHECK_EQ(g.admin.flags, 0x80000001u);
    CHECK(strcmp(g.admin.addr, "[::1]:9000") == 0);
    CHECK(same(&q, &g));
    frame_free(&g);
    free(bq);
    /* the answer one byte at a time: its text is copied out of the caller's chunks */
    for (size_t i = 0; i < la; i++) {
        rc = frame_decoder_feed(d, ba + i, 1, &used, &g);
        if (i + 1 < la)
            CHECK_EQ(rc, 0);
    }
    CHECK_EQ(rc, 1);
    CHECK_EQ(g.type, FRAME_ADMIN);
    CHECK_EQ(g.admin.version, ADMIN_VERSION);
    CHECK_EQ(g.admin.node_id, 5);
    CHECK_EQ(g.admin.code, -16);
    CHECK_EQ(g.admin.len, strlen(text));
    CHECK(strcmp(g.admin.text, text) == 0);
    CHECK(same(&a, &g));
    frame_free(&g);
    free(ba);
    /* an empty address (a later version's request is read as version 1), an empty text */
    q.admin.addr[0] = 0;
    q.admin.version = 4;
    a.admin.len = 0;
    a.admin.code = ADMIN_CODE_MIN;
    bq = enc(&q, &lq);
    ba = enc(&a, &la);
    CHECK(bq && ba);
    CHECK_EQ(lq, FRAME_HDR_BYTES + ADMIN_REQ_HEAD_BYTES);
    rc = frame_decoder_feed(d, bq, lq, &used, &g);
    CHECK_EQ(rc, 1);
    CHECK_EQ(g.admin.version, 4);
    CHECK_EQ(g.admin.addr[0], 0);
    frame_free(&g);
    rc = frame_decoder_feed(d, ba, la, &used, &g);
    CHECK_EQ(rc, 1);
    CHECK_EQ(g.admin.len, 0);
    CHECK_EQ(g.admin.code, ADMIN_CODE_MIN);
    CHECK(g.admin.text && g.admin.text[0] == 0);
    frame_free(&g);
    free(bq);
    free(ba);
    /* the longest address */
    memset(q.admin.addr, 'a', ADMIN_ADDR_MAX);
    q.admin.addr[ADMIN_ADDR_MAX] = 0;
    bq = enc(&q, &lq);
    CHECK(bq != NULL);
    rc = frame_decoder_feed(d, bq, lq, &used, &g);
    CHECK_EQ(rc, 1);
    CHECK_EQ(strlen(g.admin.addr), ADMIN_ADDR_MAX);
    frame_free(&g);
    free(bq);
    frame_decoder_free(d);
}

TEST(admin_frames_refused)
{
    static uint8_t b[FRAME_HDR_BYTES + ADMIN_HEAD_BYTES + ADMIN_MAX_TEXT + 64];
    static uint8_t p[ADMIN_HEAD_BYTES + ADMIN_MAX_TEXT + 64];
    char big[ADMIN_ADDR_MAX + 2];
    memset(big, 'a', sizeof big);
    memset(p, 0, sizeof p);
    /* requests */
    size_t n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_ADMIN_REQ, 0, p, 23);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "wrong size"));
    uint32_t pl = admin_req_payload(p, 0, 1, 1, "a", 1);
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_ADMIN_REQ, 0, p, pl);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "admin request of version 0"));
    pl = admin_req_payload(p, 1, 0, 1, "a", 1);
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_ADMIN_REQ, 0, p, pl);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "admin request with op 0"));
    pl = admin_req_payload(p, 1, 1, 2, "abc", 3);   /* a byte after the address */
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_ADMIN_REQ, 0, p, pl);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "address length does not match"));
    pl = admin_req_payload(p, 1, 1, 4, "abc", 3);   /* short */
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_ADMIN_REQ, 0, p, pl);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "address length does not match"));
    pl = admin_req_payload(p, 1, 1, ADMIN_ADDR_MAX + 1, big, ADMIN_ADDR_MAX + 1);
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_ADMIN_REQ, 0, p, pl);
    CHECK(refused(b, FRAME_HDR_BYTES, 0, -QERR_CORRUPT, "over the limit of frame type 8"));
    const char *bad_addr[] = { "a\0", "a\x1f", "a\x7f", "a\xc3\xa9", "\n" };
    const size_t bad_len[] = { 2, 2, 2, 3, 1 };
    for (int i = 0; i < 5; i++) {
        pl = admin_req_payload(p, 1, 1, (uint32_t)bad_len[i], bad_addr[i], bad_len[i]);
        n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_ADMIN_REQ, 0, p, pl);
        CHECK(refused(b, n, 0, -QERR_CORRUPT, "not printable ASCII"));
    }
    /* answers */
    memset(p, 0, sizeof p);
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_ADMIN, 0, p, 23);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "wrong size"));
    pl = admin_payload(p, 2, 0, 1, 0, 1, "x", 1);
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_ADMIN, 0, p, pl);
    CHECK(refused(b, n, 0, -QERR_FORMAT, "admin answer of another version"));
    pl = admin_payload(p, 1, 8, 1, 0, 1, "x", 1);
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_ADMIN, 0, p, pl);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "admin answer with nonzero flags"));
    pl = admin_payload(p, 1, 0, 0, 0, 1, "x", 1);
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_ADMIN, 0, p, pl);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "admin answer from node id 0"));
    const int32_t bad_code[] = { 1, ADMIN_CODE_MIN - 1, INT32_MIN, INT32_MAX };
    for (int i = 0; i < 4; i++) {
        pl = admin_payload(p, 1, 0, 1, bad_code[i], 1, "x", 1);
        n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_ADMIN, 0, p, pl);
        CHECK(refused(b, n, 0, -QERR_CORRUPT, "not 0 or a negative errno"));
    }
    pl = admin_payload(p, 1, 0, 1, 0, 2, "abc", 3);
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_ADMIN, 0, p, pl);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "admin text length does not match"));
    pl = admin_payload(p, 1, 0, 1, 0, 4, "abc", 3);
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_ADMIN, 0, p, pl);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "admin text length does not match"));
    pl = admin_payload(p, 1, 0, 1, 0, 2, "\xc3(", 2);
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_ADMIN, 0, p, pl);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "admin text is not valid UTF-8"));
    pl = admin_payload(p, 1, 0, 1, 0, 3, "a\0b", 3);
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_ADMIN, 0, p, pl);
    CHECK(refused(b, n, 0, -QERR_CORRUPT, "admin text is not valid UTF-8"));
    /* the longest text is taken; one byte more is refused from the header */
    static char yy[ADMIN_MAX_TEXT + 1];
    memset(yy, 'y', sizeof yy);
    pl = admin_payload(p, 1, 0, 1, -5, ADMIN_MAX_TEXT, yy, ADMIN_MAX_TEXT);
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_ADMIN, 0, p, pl);
    frame_decoder_t *d = frame_decoder_new(0);
    frame_t g;
    size_t used;
    int rc = frame_decoder_feed(d, b, n, &used, &g);
    frame_decoder_free(d);
    CHECK_EQ(rc, 1);
    CHECK_EQ(g.admin.len, ADMIN_MAX_TEXT);
    CHECK_EQ(g.admin.code, -5);
    frame_free(&g);
    pl = admin_payload(p, 1, 0, 1, 0, ADMIN_MAX_TEXT + 1, yy, ADMIN_MAX_TEXT + 1);
    n = raw_frame(b, FRAME_MAGIC, FRAME_VERSION, FRAME_ADMIN, 0, p, pl);
    CHECK(refused(b, FRAME_HDR_BYTES, 0, -QERR_CORRUPT, "over the limit of frame type 9"));
    /* encoding refuses what decoding would */
    frame_t f = { .type = FRAME_ADMIN_REQ, .admin = { .version = 0, .op = 1 } };
    CHECK_EQ(frame_encode(&f, b, sizeof b, &n), -QERR_INVAL);
    f.admin.version = 1;
    f.admin.op = 0;
    CHECK_EQ(frame_encode(&f, b, sizeof b, &n), -QERR_INVAL);
    f.admin.op = 1;
    memcpy(f.admin.addr, "a\tb", 4);
    CHECK_EQ(frame_encode(&f, b, sizeof b, &n), -QERR_INVAL);
    memset(f.admin.addr, 'a', sizeof f.admin.addr); /* not NUL-terminated */
    CHECK_EQ(frame_encode(&f, b, sizeof b, &n), -QERR_INVAL);
    f = (frame_t){ .type = FRAME_ADMIN, .admin = { .node_id = 0, .text = "x", .len = 1 } };
    CHECK_EQ(frame_encode(&f, b, sizeof b, &n), -QERR_INVAL);
    f.admin.node_id = 1;
    f.admin.code = 3;
    CHECK_EQ(frame_encode(&f, b, sizeof b, &n), -QERR_INVAL);
    f.admin.code = ADMIN_CODE_MIN - 1;
    CHECK_EQ(frame_encode(&f, b, sizeof b, &n), -QERR_INVAL);
    f.admin.code = 0;
    f.admin.text = "\xc3";
    CHECK_EQ(frame_encode(&f, b, sizeof b, &n), -QERR_INVAL);
    f.admin.text = yy;
    f.admin.len = ADMIN_MAX_TEXT + 1;
    CHECK_EQ(frame_encode(&f, b, sizeof b, &n), -QERR_INVAL);
}

TEST(utf8_cut_keeps_whole_characters)
{
    const char *s = "ab\xc3\xa9\xe2\x9c\x93z"; /* a b é ✓ z: 1 1 2 3 1 bytes */
    size_t len = strlen(s);
    CHECK(frame_utf8_valid(s, len));
    CHECK_EQ(frame_utf8_cut(s, len, 100), len);
    CHECK_EQ(frame_utf8_cut(s, len, 2), 2);
    CHECK_EQ(frame_utf8_cut(s, len, 3), 2);
    CHECK_EQ(frame_utf8_cut(s, len, 4), 4);
    CHECK_EQ(frame_utf8_cut(s, len, 5), 4);
    CHECK_EQ(frame_utf8_cut(s, len, 6), 4);
    CHECK_EQ(frame_utf8_cut(s, len, 7), 7);
    CHECK_EQ(frame_utf8_cut(s, len, 0), 0);
    for (size_t m = 0; m <= len; m++)
        CHECK(frame_utf8_valid(s, frame_utf8_cut(s, len, m)));
}

int main(void)
{
    fill();
    RUN(round_trip_every_type);
    RUN(every_split_point);
    RUN(one_byte_at_a_time_and_random_chunks);
    RUN(malformed_headers);
    RUN(crc_mismatch);
    RUN(wrong_payload_sizes);
    RUN(hello_incarnation);
    RUN(hello_may_grow);
    RUN(raft_payload_refused);
    RUN(error_after_good_frames_names_the_frame);
    RUN(oversize_refused_before_allocating);
    RUN(large_frame_buffer_is_bounded_and_released);
    RUN(encode_refusals);
    RUN(status_frames_round_trip);
    RUN(status_frames_refused);
    RUN(admin_frames_round_trip);
    RUN(admin_frames_refused);
    RUN(utf8_cut_keeps_whole_characters);
    return CHECK_DONE();
}
