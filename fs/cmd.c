/* fs/cmd.c — command encoding and bounds-checked decoding; see cmd.h. Little-endian. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "cluster/bytes.h"
#include "fs/cmd.h"

static void put(cmdbuf_t *b, const void *p, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

void cmd_u8(cmdbuf_t *b, uint8_t v) { put(b, &v, 1); }

void cmd_raw(cmdbuf_t *b, const void *p, size_t len) { put(b, p, len); }

void cmd_u32(cmdbuf_t *b, uint32_t v)
{
    uint8_t x[4];
    le_put32(x, v);
    put(b, x, 4);
}

void cmd_u64(cmdbuf_t *b, uint64_t v)
{
    uint8_t x[8];
    le_put64(x, v);
    put(b, x, 8);
}

void cmd_bytes(cmdbuf_t *b, const void *p, size_t len)
{
    cmd_u32(b, (uint32_t)len);
    put(b, p, len);
}

void cmd_str(cmdbuf_t *b, const char *s) { cmd_bytes(b, s, strlen(s)); }

void cmd_begin(cmdbuf_t *b, uint8_t op, uint8_t ns, uint64_t now_ms)
{
    memset(b, 0, sizeof(*b));
    cmd_u8(b, CMD_VERSION);
    cmd_u8(b, op);
    cmd_u8(b, ns);
    cmd_u64(b, now_ms);
}

static const uint8_t *take(cmdrd_t *r, size_t n)
{
    if (r->err || r->len - r->off < n) {
        r->err = 1;
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += n;
    return p;
}

uint8_t cmd_get_u8(cmdrd_t *r)
{
    const uint8_t *p = take(r, 1);
    return p ? p[0] : 0;
}

uint32_t cmd_get_u32(cmdrd_t *r)
{
    const uint8_t *p = take(r, 4);
    return p ? le_get32(p) : 0;
}

uint64_t cmd_get_u64(cmdrd_t *r)
{
    const uint8_t *p = take(r, 8);
    return p ? le_get64(p) : 0;
}

size_t cmd_get_bytes(cmdrd_t *r, const uint8_t **out)
{
    uint32_t n = cmd_get_u32(r);
    const uint8_t *p = take(r, n);
    *out = p;
    return p ? n : 0;
}

size_t cmd_get_path(cmdrd_t *r, const char **out)
{
    const uint8_t *p;
    size_t n = cmd_get_bytes(r, &p);
    if (p && memchr(p, 0, n))
        r->err = 1;
    *out = r->err ? NULL : (const char *)p;
    return r->err ? 0 : n;
}

int cmd_read_hdr(cmdrd_t *r, const void *cmd, size_t len, cmd_hdr_t *h)
{
    r->p = cmd;
    r->len = len;
    r->off = 0;
    r->err = 0;
    h->version = cmd_get_u8(r);
    h->op = cmd_get_u8(r);
    h->ns = cmd_get_u8(r);
    h->now_ms = cmd_get_u64(r);
    if (r->err || h->version < CMD_VERSION_MIN || h->version > CMD_VERSION)
        return -EINVAL;
    return 0;
}

/* The header: u8 version, u8 op, u8 ns, then the u64 time at offset 3. */
#define HDR_TIME_OFF 3

static int hdr_known(const void *cmd, size_t len)
{
    const uint8_t *p = cmd;
    return len >= CMD_HDR_LEN && p[0] >= CMD_VERSION_MIN && p[0] <= CMD_VERSION;
}

int cmd_hdr_time(const void *cmd, size_t len, uint64_t *now_ms)
{
    if (!hdr_known(cmd, len))
        return -EINVAL;
    *now_ms = le_get64((const uint8_t *)cmd + HDR_TIME_OFF);
    return 0;
}

int cmd_set_hdr_time(void *cmd, size_t len, uint64_t now_ms)
{
    if (!hdr_known(cmd, len))
        return -EINVAL;
    le_put64((uint8_t *)cmd + HDR_TIME_OFF, now_ms);
    return 0;
}
