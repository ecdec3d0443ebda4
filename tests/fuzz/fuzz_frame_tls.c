/* tests/fuzz/fuzz_frame_tls.c — libFuzzer target: the streaming frame decoder (cluster/frame.c)
 * fed the way the transport feeds it over TLS (cluster/transport.c, conn_read): the input's
 * byte stream is written into a TLS 1.3 session (in memory, OpenSSL memory BIOs) in writes
 * of fuzzer-chosen sizes, as records of a fuzzer-chosen maximum fragment (512 bytes to
 * 16 KiB), and read on the other side with SSL_read calls of fuzzer-chosen sizes, each
 * read's bytes fed to the decoder, frame after frame. So frames and their headers are cut at
 * record boundaries and at read boundaries everywhere. The outcome must equal decoding the
 * stream whole, without TLS: the same frames (compared by their re-encoding), then the same
 * error code and message (which name the failing frame and its offset), or both consume the
 * whole stream; and every byte written must come out of the session unchanged.
 * Input: byte 0 flags (bit 0: fix every frame's CRC first, as fuzz_frame.c does, to reach
 * payload decoding; bit 1: SSL read-ahead on the reading side), bytes 1-2 seeds of the write
 * and the read sizes, byte 3 the record size; the rest is the stream.
 * A throwaway Ed25519 certificate is made once, in memory; the handshake is not verified
 * (this target is about the records, not about certificates: tests/unit/test_transport_tls.c
 * covers those). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "cluster/bytes.h"
#include "cluster/crc32c.h"
#include "cluster/frame.h"

#define MAX_PAYLOAD (64 * 1024)   /* small, so oversize lengths are reachable */

typedef struct run {
    uint8_t *out;      /* re-encodings of every decoded frame, back to back */
    size_t len, cap;
    int rc;            /* 0, or the decoder's error */
    size_t consumed;   /* stream bytes the decoder took (up to and into a failing frame) */
    char err[256];
    frame_decoder_t *d;
    int done;          /* the decoder failed: later bytes are not fed (the transport closes) */
} run_t;

static void append(run_t *r, const uint8_t *p, size_t n)
{
    if (r->len + n > r->cap) {
        r->cap = (r->len + n) * 2;
        if (!(r->out = realloc(r->out, r->cap)))
            abort();
    }
    memcpy(r->out + r->len, p, n);
    r->len += n;
}

static void run_init(run_t *r)
{
    memset(r, 0, sizeof *r);
    if (!(r->d = frame_decoder_new(MAX_PAYLOAD)))
        abort();
}

/* Feeds n bytes to r's decoder as the transport does with one read's bytes: frame after
 * frame until they are used up or the decoder fails. */
static void feed(run_t *r, const uint8_t *p, size_t n)
{
    size_t at = 0;
    while (!r->done && at < n) {
        frame_t f;
        size_t used;
        int rc = frame_decoder_feed(r->d, p + at, n - at, &used, &f);
        at += used;
        r->consumed += used;
        if (rc < 0) {
            r->rc = rc;
            strncpy(r->err, frame_decoder_error(r->d), sizeof r->err - 1);
            r->done = 1;
            return;
        }
        if (rc == 1) {
            size_t sz = frame_encoded_size(&f), len;
            uint8_t *b = malloc(sz);
            if (!b || frame_encode(&f, b, sz, &len) != 0 || len != sz)
                abort();
            append(r, b, len);
            free(b);
            frame_free(&f);
        } else if (at != n) {
            abort(); /* 0 means every byte was consumed */
        }
    }
}

static void run_free(run_t *r)
{
    frame_decoder_free(r->d);
    free(r->out);
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

/* ---- the TLS pair -------------------------------------------------------------------- */

static SSL_CTX *server_ctx, *client_ctx;

static SSL_CTX *ctx_new(const SSL_METHOD *m)
{
    SSL_CTX *x = SSL_CTX_new(m);
    if (!x || SSL_CTX_set_min_proto_version(x, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(x, TLS1_3_VERSION) != 1)
        abort();
    SSL_CTX_set_options(x, SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(x, 0);
    SSL_CTX_set_mode(x, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return x;
}

/* Once: an Ed25519 key and a self-signed certificate for the server side. */
static void setup(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    X509 *c = X509_new();
    if (!k || !c)
        abort();
    ASN1_INTEGER_set(X509_get_serialNumber(c), 1);
    X509_gmtime_adj(X509_getm_notBefore(c), -3600);
    X509_gmtime_adj(X509_getm_notAfter(c), 3600L * 24 * 365);
    X509_NAME *n = X509_get_subject_name(c);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"quorumfs-1", -1,
                               -1, 0);
    X509_set_issuer_name(c, n);
    X509_set_pubkey(c, k);
    if (X509_sign(c, k, NULL) <= 0)
        abort();
    server_ctx = ctx_new(TLS_server_method());
    client_ctx = ctx_new(TLS_client_method());
    if (SSL_CTX_use_certificate(server_ctx, c) != 1 || SSL_CTX_use_PrivateKey(server_ctx, k) != 1)
        abort();
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
    X509_free(c);
    EVP_PKEY_free(k);
}

/* Moves what one side wrote into the other side's input. */
static void shuttle(BIO *from, BIO *to)
{
    char buf[16384];
    int n;
    while ((n = BIO_read(from, buf, sizeof buf)) > 0)
        if (BIO_write(to, buf, n) != n)
            abort();
}

typedef struct pair {
    SSL *c, *s;
    BIO *c_in, *c_out, *s_in, *s_out; /* memory BIOs; c_out's bytes go to s_in and back */
} pair_t;

static void pair_new(pair_t *p)
{
    p->c = SSL_new(client_ctx);
    p->s = SSL_new(server_ctx);
    p->c_in = BIO_new(BIO_s_mem()), p->c_out = BIO_new(BIO_s_mem());
    p->s_in = BIO_new(BIO_s_mem()), p->s_out = BIO_new(BIO_s_mem());
    if (!p->c || !p->s || !p->c_in || !p->c_out || !p->s_in || !p->s_out)
        abort();
    BIO_set_mem_eof_return(p->c_in, -1); /* empty: "retry", not end of stream */
    BIO_set_mem_eof_return(p->s_in, -1);
    SSL_set_bio(p->c, p->c_in, p->c_out);
    SSL_set_bio(p->s, p->s_in, p->s_out);
    SSL_set_connect_state(p->c);
    SSL_set_accept_state(p->s);
    for (int i = 0; i < 20; i++) {
        int rc = SSL_do_handshake(p->c), rs = SSL_do_handshake(p->s);
        shuttle(p->c_out, p->s_in);
        shuttle(p->s_out, p->c_in);
        if (rc == 1 && rs == 1)
            return;
    }
    abort(); /* an in-memory handshake between these two contexts cannot fail */
}

static void pair_free(pair_t *p)
{
    SSL_free(p->c); /* and their BIOs */
    SSL_free(p->s);
    ERR_clear_error();
}

static uint32_t next(uint32_t *x)
{
    *x ^= *x << 13, *x ^= *x >> 17, *x ^= *x << 5;
    return *x;
}

/* A size from 1 to 64 KiB, mostly small, sometimes across a record (16 KiB). */
static size_t pick(uint32_t *x)
{
    uint32_t v = next(x);
    switch (v % 4) {
    case 0: return 1 + (v >> 8) % 16;
    case 1: return 1 + (v >> 8) % 600;
    case 2: return 1 + (v >> 8) % 20000;
    default: return 1 + (v >> 8) % 65536;
    }
}

/* Reads everything the server side has, in reads of sizes from rx; feeds r; checks the
 * plaintext against the stream. *got counts the bytes read so far. */
static void drain(pair_t *p, run_t *r, uint32_t *rx, const uint8_t *want, size_t *got,
                  uint8_t *buf)
{
    for (;;) {
        size_t n = pick(rx);
        int k = SSL_read(p->s, buf, (int)n);
        if (k <= 0) {
            if (SSL_get_error(p->s, k) != SSL_ERROR_WANT_READ)
                abort(); /* nothing but "need more bytes" can happen here */
            return;
        }
        if (memcmp(buf, want + *got, (size_t)k) != 0)
            abort();
        *got += (size_t)k;
        feed(r, buf, (size_t)k);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        setup();
        ready = 1;
    }
    if (size < 4)
        return 0;
    uint8_t flags = data[0];
    uint32_t wx = (uint32_t)data[1] * 2654435761u + 1, rx = (uint32_t)data[2] * 40503u + 7;
    unsigned frag = 512 + (unsigned)data[3] * 62; /* 512 .. 16322 */
    size_t n = size - 4;
    uint8_t *in = malloc(n ? n : 1);
    uint8_t *buf = malloc(65536);
    if (!in || !buf)
        abort();
    memcpy(in, data + 4, n);
    if (flags & 1)
        fix_crcs(in, n);

    run_t whole, tls;
    run_init(&whole);
    run_init(&tls);
    feed(&whole, in, n);

    pair_t p;
    pair_new(&p);
    SSL_set_read_ahead(p.s, (flags & 2) != 0);
    if (SSL_set_max_send_fragment(p.c, frag) != 1)
        abort();
    size_t off = 0, got = 0;
    while (off < n) {
        size_t w = pick(&wx);
        if (w > n - off)
            w = n - off;
        int k = SSL_write(p.c, in + off, (int)w);
        if (k <= 0)
            abort(); /* memory BIOs take everything */
        off += (size_t)k;
        shuttle(p.c_out, p.s_in);
        if (next(&wx) % 2) /* sometimes let several writes pile up before reading */
            drain(&p, &tls, &rx, in, &got, buf);
    }
    drain(&p, &tls, &rx, in, &got, buf);
    if (got != n)
        abort();
    pair_free(&p);

    /* (after an error, how much of the failing frame was taken depends on the cuts) */
    if (whole.rc != tls.rc || whole.len != tls.len ||
        (whole.len && memcmp(whole.out, tls.out, whole.len)) || strcmp(whole.err, tls.err))
        abort();
    if (whole.rc == 0 && (whole.consumed != n || tls.consumed != n))
        abort();
    run_free(&whole);
    run_free(&tls);
    free(in);
    free(buf);
    return 0;
}
