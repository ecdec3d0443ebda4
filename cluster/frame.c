/* cluster/frame.c — frame encoding and the streaming frame decoder (cluster/frame.h). The
 * wire format is in docs/TRANSPORT.md; the Raft message inside a RAFT frame is
 * raft_msg_encode's (docs/RAFT.md "Wire format"). */
#include <inttypes.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/assert.h"
#include "cluster/bytes.h"
#include "cluster/crc32c.h"
#include "cluster/err.h"
#include "cluster/frame.h"

/* Header layout (little endian): magic u32, version u8, type u8, flags u16, length u32,
 * crc u32 = CRC32C of bytes 0..11 of the header followed by the payload. */
#define OFF_MAGIC 0
#define OFF_VERSION 4
#define OFF_TYPE 5
#define OFF_FLAGS 6
#define OFF_LEN 8
#define OFF_CRC 12

/* A payload buffer larger than this is released after its frame instead of kept. */
#define KEEP_BUF_BYTES (64 * 1024)

struct frame_decoder {
    uint32_t max_payload;
    uint8_t hdr[FRAME_HDR_BYTES];
    size_t hdr_have;          /* header bytes of the current frame received so far */
    uint32_t plen;            /* payload length, valid once hdr_have == FRAME_HDR_BYTES */
    uint8_t *buf;             /* payload of the current frame (when it spans chunks) */
    size_t cap, have;
    uint64_t frames;          /* frames completed so far */
    uint64_t pos;             /* bytes consumed so far */
    uint64_t frame_pos;       /* stream offset of the current frame's first byte */
    int err;                  /* sticky error, 0 if none */
    char msg[200];
};

void frame_free(frame_t *f)
{
    if (!f)
        return;
    raft_msg_free(&f->msg);
    frame_fwd_free(&f->fwd);
    free(f->status.mem);
    free(f->admin.mem);
    memset(f, 0, sizeof *f);
}

/* ---- status payloads ------------------------------------------------------------------ */

/* Layout (little endian). STATUS_REQ: u32 version (>= 1), u32 flags (0); a longer request's
 * extra bytes are ignored. STATUS: u32 version (1), u32 flags (0), u64 node id (nonzero),
 * u64 age in ms (STATUS_AGE_NONE: nothing published), u32 text length n (<= STATUS_MAX_TEXT),
 * n bytes of UTF-8 text without NUL; nothing may follow. */

int frame_utf8_valid(const char *s, size_t len)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    while (i < len) {
        uint8_t c = p[i];
        if (c == 0)
            return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            n = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            n = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            n = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return 0; /* a continuation byte where a character starts, or 0xF8..0xFF */
        }
        if (len - i < n)
            return 0;
        for (size_t k = 1; k < n; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n;
    }
    return 1;
}

size_t frame_utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max;
    /* back up over continuation bytes to the start of the character that s[max] is in */
    while (n > 0 && ((uint8_t)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

static int status_encode(const frame_t *f, uint8_t *p)
{
    const frame_status_t *st = &f->status;
    if (f->type == FRAME_STATUS_REQ) {
        if (st->version == 0)
            return -QERR_INVAL;
        le_put32(p, st->version);
        le_put32(p + 4, 0);
        return 0;
    }
    if (st->node_id == 0 || st->len > STATUS_MAX_TEXT || (st->len && !st->text) ||
        !frame_utf8_valid(st->text, st->len))
        return -QERR_INVAL;
    le_put32(p, STATUS_VERSION);
    le_put32(p + 4, 0);
    le_put64(p + 8, st->node_id);
    le_put64(p + 16, st->age_ms);
    le_put32(p + 24, (uint32_t)st->len);
    if (st->len)
        memcpy(p + STATUS_HEAD_BYTES, st->text, st->len);
    return 0;
}

/* Decodes a STATUS_REQ or STATUS payload p[0..plen) into f->status. Returns 0, or a failure
 * code with *why (a static reason); f->status is zeroed then. */
static int status_decode(uint32_t type, const uint8_t *p, uint32_t plen, frame_status_t *st,
                         const char **why)
{
    memset(st, 0, sizeof *st);
    if (type == FRAME_STATUS_REQ) {
        st->version = le_get32(p);
        if (st->version == 0) {
            *why = "status request of version 0";
            goto corrupt;
        }
        if (le_get32(p + 4)) {
            *why = "status request with nonzero flags";
            goto corrupt;
        }
        return 0;
    }
    st->version = le_get32(p);
    if (st->version != STATUS_VERSION) {
        *why = "status answer of another version";
        memset(st, 0, sizeof *st);
        return -QERR_FORMAT;
    }
    st->node_id = le_get64(p + 8);
    st->age_ms = le_get64(p + 16);
    uint32_t n = le_get32(p + 24);
    if (le_get32(p + 4)) {
        *why = "status answer with nonzero flags";
        goto corrupt;
    }
    if (st->node_id == 0) {
        *why = "status answer from node id 0";
        goto corrupt;
    }
    if (n > STATUS_MAX_TEXT || n != plen - STATUS_HEAD_BYTES) {
        *why = "status text length does not match the payload";
        goto corrupt;
    }
    if (!frame_utf8_valid((const char *)p + STATUS_HEAD_BYTES, n)) {
        *why = "status text is not valid UTF-8 (or holds a NUL)";
        goto corrupt;
    }
    if (!(st->mem = malloc((size_t)n + 1))) {
        *why = "out of memory";
        memset(st, 0, sizeof *st);
        return -QERR_NOMEM;
    }
    memcpy(st->mem, p + STATUS_HEAD_BYTES, n);
    ((char *)st->mem)[n] = 0;
    st->text = st->mem;
    st->len = n;
    return 0;
corrupt:
    memset(st, 0, sizeof *st);
    return -QERR_CORRUPT;
}

/* ---- admin payloads ------------------------------------------------------------------- */

/* Layout (little endian). ADMIN_REQ: u32 version (>= 1), u32 op (nonzero), u64 id, u32 flags,
 * u32 address length n (<= ADMIN_ADDR_MAX), n bytes of printable ASCII (0x20..0x7E), no NUL;
 * nothing may follow. ADMIN: u32 version (1), u32 flags (0), u64 node id (nonzero), i32 code
 * (0 or ADMIN_CODE_MIN..-1), u32 text length n (<= ADMIN_MAX_TEXT), n bytes of UTF-8 without
 * NUL; nothing may follow. */

static bool printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((uint8_t)s[i] < 0x20 || (uint8_t)s[i] > 0x7E)
            return false;
    return true;
}

/* Length of a request's addr: strnlen within the array, or SIZE_MAX when not terminated. */
static size_t admin_addr_len(const frame_admin_t *a)
{
    size_t n = strnlen(a->addr, sizeof a->addr);
    return n < sizeof a->addr ? n : SIZE_MAX;
}

static int admin_encode(const frame_t *f, uint8_t *p)
{
    const frame_admin_t *a = &f->admin;
    if (f->type == FRAME_ADMIN_REQ) {
        size_t n = admin_addr_len(a);
        if (a->version == 0 || a->op == 0 || n > ADMIN_ADDR_MAX || !printable(a->addr, n))
            return -QERR_INVAL;
        le_put32(p, a->version);
        le_put32(p + 4, a->op);
        le_put64(p + 8, a->id);
        le_put32(p + 16, a->flags);
        le_put32(p + 20, (uint32_t)n);
        memcpy(p + ADMIN_REQ_HEAD_BYTES, a->addr, n);
        return 0;
    }
    if (a->node_id == 0 || a->code > 0 || a->code < ADMIN_CODE_MIN || a->len > ADMIN_MAX_TEXT ||
        (a->len && !a->text) || !frame_utf8_valid(a->text, a->len))
        return -QERR_INVAL;
    le_put32(p, ADMIN_VERSION);
    le_put32(p + 4, 0);
    le_put64(p + 8, a->node_id);
    le_put32(p + 16, (uint32_t)a->code);
    le_put32(p + 20, (uint32_t)a->len);
    if (a->len)
        memcpy(p + ADMIN_HEAD_BYTES, a->text, a->len);
    return 0;
}

/* Decodes an ADMIN_REQ or ADMIN payload p[0..plen) (plen >= the head) into *a. Returns 0, or
 * a failure code with *why (a static reason); *a is zeroed then. */
static int admin_decode(uint32_t type, const uint8_t *p, uint32_t plen, frame_admin_t *a,
                        const char **why)
{
    memset(a, 0, sizeof *a);
    if (type == FRAME_ADMIN_REQ) {
        a->version = le_get32(p);
        a->op = le_get32(p + 4);
        a->id = le_get64(p + 8);
        a->flags = le_get32(p + 16);
        uint32_t n = le_get32(p + 20);
        if (a->version == 0) {
            *why = "admin request of version 0";
            goto corrupt;
        }
        if (a->op == 0) {
            *why = "admin request with op 0";
            goto corrupt;
        }
        if (n > ADMIN_ADDR_MAX || n != plen - ADMIN_REQ_HEAD_BYTES) {
            *why = "admin request address length does not match the payload";
            goto corrupt;
        }
        if (!printable((const char *)p + ADMIN_REQ_HEAD_BYTES, n)) {
            *why = "admin request address is not printable ASCII";
            goto corrupt;
        }
        memcpy(a->addr, p + ADMIN_REQ_HEAD_BYTES, n);
        a->addr[n] = 0;
        return 0;
    }
    a->version = le_get32(p);
    if (a->version != ADMIN_VERSION) {
        *why = "admin answer of another version";
        memset(a, 0, sizeof *a);
        return -QERR_FORMAT;
    }
    a->node_id = le_get64(p + 8);
    a->code = (int32_t)le_get32(p + 16);
    uint32_t n = le_get32(p + 20);
    if (le_get32(p + 4)) {
        *why = "admin answer with nonzero flags";
        goto corrupt;
    }
    if (a->node_id == 0) {
        *why = "admin answer from node id 0";
        goto corrupt;
    }
    if (a->code > 0 || a->code < ADMIN_CODE_MIN) {
        *why = "admin answer code is not 0 or a negative errno value";
        goto corrupt;
    }
    if (n > ADMIN_MAX_TEXT || n != plen - ADMIN_HEAD_BYTES) {
        *why = "admin text length does not match the payload";
        goto corrupt;
    }
    if (!frame_utf8_valid((const char *)p + ADMIN_HEAD_BYTES, n)) {
        *why = "admin text is not valid UTF-8 (or holds a NUL)";
        goto corrupt;
    }
    if (!(a->mem = malloc((size_t)n + 1))) {
        *why = "out of memory";
        memset(a, 0, sizeof *a);
        return -QERR_NOMEM;
    }
    memcpy(a->mem, p + ADMIN_HEAD_BYTES, n);
    ((char *)a->mem)[n] = 0;
    a->text = a->mem;
    a->len = n;
    return 0;
corrupt:
    memset(a, 0, sizeof *a);
    return -QERR_CORRUPT;
}

/* ---- forwarding payloads ------------------------------------------------------------- */

/* Layout (little endian): u8 version, u8 kind, u16 flags (0), u32 group, u64 request id,
 * u32 attempt; then PROPOSE: u32 command length n, n bytes; RESULT: i32 rc, u64 leader,
 * u64 index, u64 term, i32 result code, u32 result length m (<= SM_RESULT_MAX), m bytes.
 * Nothing may follow. */

void frame_fwd_free(frame_fwd_t *f)
{
    if (!f)
        return;
    free(f->mem);
    memset(f, 0, sizeof *f);
}

size_t frame_fwd_size(const frame_fwd_t *f)
{
    if (f->kind == FWD_PROPOSE)
        return FWD_HEAD_BYTES + 4 + f->len;
    return FWD_RESULT_BYTES + (f->res.len <= SM_RESULT_MAX ? f->res.len : 0);
}

static bool fwd_rc_ok(int32_t rc)
{
    return rc <= 0 && rc > -(int32_t)QERR__COUNT;
}

int frame_fwd_encode(const frame_fwd_t *f, uint8_t *buf, size_t cap, size_t *len)
{
    if (f->kind == FWD_PROPOSE) {
        if (f->len && !f->cmd)
            return -QERR_INVAL;
        if (f->len > FRAME_LIMIT_MAX_PAYLOAD)
            return -QERR_TOOBIG;
    } else if (f->kind == FWD_RESULT) {
        if (!fwd_rc_ok(f->rc) || (f->rc == 0 && f->index == 0) || f->res.len > SM_RESULT_MAX)
            return -QERR_INVAL;
    } else {
        return -QERR_INVAL;
    }
    size_t n = frame_fwd_size(f);
    if (cap < n)
        return -QERR_TOOBIG;
    buf[0] = FWD_VERSION;
    buf[1] = (uint8_t)f->kind;
    buf[2] = buf[3] = 0;
    le_put32(buf + 4, f->group);
    le_put64(buf + 8, f->req);
    le_put32(buf + 16, f->attempt);
    uint8_t *p = buf + FWD_HEAD_BYTES;
    if (f->kind == FWD_PROPOSE) {
        le_put32(p, (uint32_t)f->len);
        if (f->len)
            memcpy(p + 4, f->cmd, f->len);
    } else {
        le_put32(p, (uint32_t)f->rc);
        le_put64(p + 4, f->leader);
        le_put64(p + 12, f->index);
        le_put64(p + 20, f->term);
        le_put32(p + 28, (uint32_t)f->res.code);
        le_put32(p + 32, f->res.len);
        if (f->res.len)
            memcpy(p + 36, f->res.data, f->res.len);
    }
    *len = n;
    return 0;
}

int frame_fwd_decode(const uint8_t *p, size_t len, frame_fwd_t *f, const char **why)
{
    const char *w = NULL;
    int rc = -QERR_CORRUPT;
    memset(f, 0, sizeof *f);
    if (len < FWD_HEAD_BYTES) {
        w = "shorter than its header";
        goto fail;
    }
    if (p[0] != FWD_VERSION) {
        w = "another forwarding version";
        rc = -QERR_FORMAT;
        goto fail;
    }
    if (p[2] || p[3]) {
        w = "nonzero flags";
        goto fail;
    }
    f->kind = p[1];
    f->group = le_get32(p + 4);
    f->req = le_get64(p + 8);
    f->attempt = le_get32(p + 16);
    const uint8_t *b = p + FWD_HEAD_BYTES;
    size_t rest = len - FWD_HEAD_BYTES;
    if (f->kind == FWD_PROPOSE) {
        if (rest < 4 || le_get32(b) != rest - 4) {
            w = "command length does not match the payload";
            goto fail;
        }
        f->len = rest - 4;
        if (f->len) {
            if (!(f->mem = malloc(f->len))) {
                w = "out of memory";
                rc = -QERR_NOMEM;
                goto fail;
            }
            memcpy(f->mem, b + 4, f->len);
            f->cmd = f->mem;
        }
    } else if (f->kind == FWD_RESULT) {
        if (rest < FWD_RESULT_BYTES - FWD_HEAD_BYTES) {
            w = "result shorter than its fixed part";
            goto fail;
        }
        f->rc = (int32_t)le_get32(b);
        f->leader = le_get64(b + 4);
        f->index = le_get64(b + 12);
        f->term = le_get64(b + 20);
        f->res.code = (int32_t)le_get32(b + 28);
        uint32_t m = le_get32(b + 32);
        if (m > SM_RESULT_MAX || m != rest - (FWD_RESULT_BYTES - FWD_HEAD_BYTES)) {
            w = "result length does not match the payload";
            goto fail;
        }
        if (!fwd_rc_ok(f->rc)) {
            w = "unknown result code";
            goto fail;
        }
        if (f->rc == 0 && f->index == 0) {
            w = "success at index 0";
            goto fail;
        }
        f->res.len = m;
        if (m)
            memcpy(f->res.data, b + 36, m);
    } else {
        w = "unknown kind";
        goto fail;
    }
    return 0;
fail:
    free(f->mem);
    memset(f, 0, sizeof *f);
    if (why)
        *why = w;
    return rc;
}

static size_t payload_size(const frame_t *f)
{
    switch (f->type) {
    case FRAME_HELLO:
        return FRAME_HELLO_INC_BYTES;
    case FRAME_RAFT:
        return 4 + raft_msg_encoded_size(&f->msg);
    case FRAME_PING:
    case FRAME_PONG:
        return 8;
    case FRAME_FWD:
        return frame_fwd_size(&f->fwd);
    case FRAME_STATUS_REQ:
        return STATUS_REQ_BYTES;
    case FRAME_STATUS:
        return STATUS_HEAD_BYTES + f->status.len;
    case FRAME_ADMIN_REQ: {
        size_t n = admin_addr_len(&f->admin);
        return ADMIN_REQ_HEAD_BYTES + (n <= ADMIN_ADDR_MAX ? n : 0);
    }
    case FRAME_ADMIN:
        return ADMIN_HEAD_BYTES + f->admin.len;
    default:
        return 0;
    }
}

size_t frame_encoded_size(const frame_t *f)
{
    return FRAME_HDR_BYTES + payload_size(f);
}

int frame_encode(const frame_t *f, uint8_t *buf, size_t cap, size_t *len)
{
    if (f->type < 1 || f->type >= FRAME__COUNT)
        return -QERR_INVAL;
    if (f->type == FRAME_HELLO && f->hello.node_id == 0)
        return -QERR_INVAL;
    size_t plen = payload_size(f);
    if (plen > FRAME_LIMIT_MAX_PAYLOAD)
        return -QERR_TOOBIG;
    if (cap < FRAME_HDR_BYTES + plen)
        return -QERR_TOOBIG;
    uint8_t *p = buf + FRAME_HDR_BYTES;
    switch (f->type) {
    case FRAME_HELLO:
        le_put64(p, f->hello.node_id);
        le_put64(p + 8, f->hello.cluster_id);
        le_put32(p + 16, f->hello.proto_min);
        le_put32(p + 20, f->hello.proto_max);
        le_put64(p + 24, f->hello.incarnation);
        break;
    case FRAME_RAFT: {
        size_t mlen;
        le_put32(p, f->group);
        int rc = raft_msg_encode(&f->msg, p + 4, plen - 4, &mlen);
        if (rc < 0)
            return rc == -QERR_TOOBIG ? -QERR_INVAL : rc; /* sized exactly: cannot be short */
        ASSERT(mlen == plen - 4);
        break;
    }
    case FRAME_FWD: {
        size_t flen;
        int rc = frame_fwd_encode(&f->fwd, p, plen, &flen);
        if (rc < 0)
            return rc == -QERR_TOOBIG ? -QERR_INVAL : rc;
        ASSERT(flen == plen);
        break;
    }
    case FRAME_STATUS_REQ:
    case FRAME_STATUS: {
        int rc = status_encode(f, p);
        if (rc < 0)
            return rc;
        break;
    }
    case FRAME_ADMIN_REQ:
    case FRAME_ADMIN: {
        int rc = admin_encode(f, p);
        if (rc < 0)
            return rc;
        break;
    }
    default:
        le_put64(p, f->ping);
        break;
    }
    le_put32(buf + OFF_MAGIC, FRAME_MAGIC);
    buf[OFF_VERSION] = FRAME_VERSION;
    buf[OFF_TYPE] = (uint8_t)f->type;
    buf[OFF_FLAGS] = 0;
    buf[OFF_FLAGS + 1] = 0;
    le_put32(buf + OFF_LEN, (uint32_t)plen);
    le_put32(buf + OFF_CRC, crc32c(crc32c(0, buf, OFF_CRC), p, plen));
    *len = FRAME_HDR_BYTES + plen;
    return 0;
}

/* ---- decoder ------------------------------------------------------------------------- */

frame_decoder_t *frame_decoder_new(uint32_t max_payload)
{
    ASSERT(max_payload <= FRAME_LIMIT_MAX_PAYLOAD);
    frame_decoder_t *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->max_payload = max_payload ? max_payload : FRAME_DEFAULT_MAX_PAYLOAD;
    return d;
}

void frame_decoder_free(frame_decoder_t *d)
{
    if (!d)
        return;
    free(d->buf);
    free(d);
}

const char *frame_decoder_error(const frame_decoder_t *d)
{
    return d->msg;
}

size_t frame_decoder_mem(const frame_decoder_t *d)
{
    return d->cap;
}

/* Records the sticky failure code with a message naming the frame; returns code. */
static int fail(frame_decoder_t *d, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(frame_decoder_t *d, int code, const char *fmt, ...)
{
    ASSERT(code < 0);
    int n = snprintf(d->msg, sizeof d->msg, "frame %" PRIu64 " at stream byte %" PRIu64 ": ",
                     d->frames + 1, d->frame_pos);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof d->msg)
        vsnprintf(d->msg + n, sizeof d->msg - (size_t)n, fmt, ap);
    va_end(ap);
    d->err = code;
    return code;
}

/* Checks a complete header; sets d->plen. Everything but the CRC is checked here, before any
 * payload byte is awaited or any buffer allocated. */
static int check_header(frame_decoder_t *d, const uint8_t *h)
{
    uint32_t magic = le_get32(h + OFF_MAGIC);
    if (magic != FRAME_MAGIC)
        return fail(d, -QERR_CORRUPT, "bad magic 0x%08" PRIx32 " (want 0x%08x)", magic,
                    FRAME_MAGIC);
    if (h[OFF_VERSION] != FRAME_VERSION)
        return fail(d, -QERR_FORMAT, "frame version %u, this node speaks %d", h[OFF_VERSION],
                    FRAME_VERSION);
    if (h[OFF_TYPE] < 1 || h[OFF_TYPE] >= FRAME__COUNT)
        return fail(d, -QERR_CORRUPT, "unknown frame type %u", h[OFF_TYPE]);
    if (h[OFF_FLAGS] || h[OFF_FLAGS + 1])
        return fail(d, -QERR_CORRUPT, "nonzero flags 0x%02x%02x", h[OFF_FLAGS + 1],
                    h[OFF_FLAGS]);
    uint32_t plen = le_get32(h + OFF_LEN);
    /* status and admin frames are small whatever max_payload says: refused here, before any
       wait */
    if ((h[OFF_TYPE] == FRAME_STATUS_REQ && plen > STATUS_REQ_MAX_BYTES) ||
        (h[OFF_TYPE] == FRAME_STATUS && plen > STATUS_HEAD_BYTES + STATUS_MAX_TEXT) ||
        (h[OFF_TYPE] == FRAME_ADMIN_REQ && plen > ADMIN_REQ_HEAD_BYTES + ADMIN_ADDR_MAX) ||
        (h[OFF_TYPE] == FRAME_ADMIN && plen > ADMIN_HEAD_BYTES + ADMIN_MAX_TEXT))
        return fail(d, -QERR_CORRUPT, "payload of %" PRIu32 " bytes is over the limit of "
                    "frame type %u", plen, h[OFF_TYPE]);
    if (plen > d->max_payload)
        return fail(d, -QERR_TOOBIG, "payload length %" PRIu32 " over the limit %" PRIu32,
                    plen, d->max_payload);
    d->plen = plen;
    return 0;
}

/* Checks the CRC and decodes the payload p (d->plen bytes) of a checked header h into *f.
 * Returns 1 or a failure code (then *f is zeroed). */
static int decode_payload(frame_decoder_t *d, const uint8_t *h, const uint8_t *p, frame_t *f)
{
    uint32_t plen = d->plen;
    uint32_t want = le_get32(h + OFF_CRC);
    uint32_t got = crc32c(crc32c(0, h, OFF_CRC), p, plen);
    if (got != want)
        return fail(d, -QERR_CORRUPT, "CRC mismatch (header says 0x%08" PRIx32
                    ", data gives 0x%08" PRIx32 ")", want, got);
    uint32_t type = h[OFF_TYPE];
    f->type = type;
    switch (type) {
    case FRAME_HELLO:
        /* Later versions may append fields: the first 24 bytes, then the incarnation when
         * the sender sent one (older builds did not), and nothing after it. */
        if (plen < FRAME_HELLO_BYTES)
            goto bad_size;
        f->hello.node_id = le_get64(p);
        f->hello.cluster_id = le_get64(p + 8);
        f->hello.proto_min = le_get32(p + 16);
        f->hello.proto_max = le_get32(p + 20);
        f->hello.incarnation = plen >= FRAME_HELLO_INC_BYTES ? le_get64(p + 24) : 0;
        if (f->hello.node_id == 0) {
            memset(f, 0, sizeof *f);
            return fail(d, -QERR_CORRUPT, "HELLO with node id 0");
        }
        break;
    case FRAME_RAFT: {
        if (plen < 4)
            goto bad_size;
        f->group = le_get32(p);
        int rc = raft_msg_decode(p + 4, plen - 4, &f->msg);
        if (rc < 0) {
            memset(f, 0, sizeof *f);
            return fail(d, rc, "Raft message of group %" PRIu32 " refused: %s",
                        le_get32(p), qerr_str(rc));
        }
        break;
    }
    case FRAME_FWD: {
        const char *why = NULL;
        int rc = frame_fwd_decode(p, plen, &f->fwd, &why);
        if (rc < 0) {
            memset(f, 0, sizeof *f);
            return fail(d, rc, "forwarding message refused: %s", why ? why : qerr_str(rc));
        }
        break;
    }
    case FRAME_STATUS_REQ:
    case FRAME_STATUS: {
        if (plen < (type == FRAME_STATUS ? STATUS_HEAD_BYTES : STATUS_REQ_BYTES))
            goto bad_size;
        const char *why = NULL;
        int rc = status_decode(type, p, plen, &f->status, &why);
        if (rc < 0) {
            memset(f, 0, sizeof *f);
            return fail(d, rc, "%s", why);
        }
        break;
    }
    case FRAME_ADMIN_REQ:
    case FRAME_ADMIN: {
        if (plen < (type == FRAME_ADMIN ? ADMIN_HEAD_BYTES : ADMIN_REQ_HEAD_BYTES))
            goto bad_size;
        const char *why = NULL;
        int rc = admin_decode(type, p, plen, &f->admin, &why);
        if (rc < 0) {
            memset(f, 0, sizeof *f);
            return fail(d, rc, "%s", why);
        }
        break;
    }
    default: /* PING, PONG */
        if (plen != 8)
            goto bad_size;
        f->ping = le_get64(p);
        break;
    }
    d->frames++;
    return 1;
bad_size:
    memset(f, 0, sizeof *f);
    return fail(d, -QERR_CORRUPT, "payload of %" PRIu32 " bytes is the wrong size for frame "
                "type %" PRIu32, plen, type);
}

/* Ends the current frame (whatever its outcome): the next byte starts a new header. */
static void next_frame(frame_decoder_t *d)
{
    d->hdr_have = 0;
    d->have = 0;
    d->plen = 0;
    d->frame_pos = d->pos;
    if (d->cap > KEEP_BUF_BYTES) {
        free(d->buf);
        d->buf = NULL;
        d->cap = 0;
    }
}

int frame_decoder_feed(frame_decoder_t *d, const uint8_t *buf, size_t len, size_t *used,
                       frame_t *f)
{
    memset(f, 0, sizeof *f);
    *used = 0;
    if (d->err)
        return d->err;
    size_t pos = 0;
    int rc;

    /* Fast path: a whole frame at the start of buf, none pending: decode it in place. */
    if (d->hdr_have == 0 && len >= FRAME_HDR_BYTES) {
        if ((rc = check_header(d, buf)) < 0)
            return rc;
        if (len - FRAME_HDR_BYTES >= d->plen) {
            size_t n = FRAME_HDR_BYTES + (size_t)d->plen;
            rc = decode_payload(d, buf, buf + FRAME_HDR_BYTES, f);
            if (rc < 0)
                return rc;
            d->pos += n;
            *used = n;
            next_frame(d);
            return 1;
        }
    }

    /* Slow path: gather the header, then the payload, across calls. */
    if (d->hdr_have < FRAME_HDR_BYTES) {
        size_t n = FRAME_HDR_BYTES - d->hdr_have;
        if (n > len)
            n = len;
        if (n)
            memcpy(d->hdr + d->hdr_have, buf, n);
        d->hdr_have += n;
        pos += n;
        d->pos += n;
        *used = pos;
        if (d->hdr_have < FRAME_HDR_BYTES)
            return 0;
        if ((rc = check_header(d, d->hdr)) < 0)
            return rc;
        if (d->plen > d->cap) {
            /* the only allocation: at most max_payload bytes, after the header's checks */
            free(d->buf);
            d->cap = 0;
            d->buf = malloc(d->plen);
            if (!d->buf)
                return fail(d, -QERR_NOMEM, "no memory for a %" PRIu32 "-byte payload",
                            d->plen);
            d->cap = d->plen;
        }
        d->have = 0;
    }
    size_t n = d->plen - d->have;
    if (n > len - pos)
        n = len - pos;
    if (n)
        memcpy(d->buf + d->have, buf + pos, n);
    d->have += n;
    pos += n;
    d->pos += n;
    *used = pos;
    if (d->have < d->plen)
        return 0;
    rc = decode_payload(d, d->hdr, d->buf, f);
    if (rc < 0)
        return rc;
    next_frame(d);
    return 1;
}
