/* cluster/raft_msg.c — Raft messages as values: deep copies (raft_msg_clone/free), the wire
 * encoding used by the TCP transport (raft_msg_encode/decode, version RAFT_WIRE_VERSION,
 * documented in docs/RAFT.md "Wire format"), and configuration payloads (raft_conf_*).
 * Decoding accepts any byte string: malformed input gives an error, never a crash. */
#include <stdlib.h>
#include <string.h>

#include "cluster/bytes.h"
#include "cluster/err.h"
#include "cluster/raft.h"

/* ---- configurations ---------------------------------------------------------------- */

static int server_cmp(const void *a, const void *b)
{
    const raft_server_t *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

int raft_conf_normalize(raft_conf_t *c)
{
    if (c->n > RAFT_MAX_SERVERS)
        return -QERR_INVAL;
    qsort(c->s, c->n, sizeof c->s[0], server_cmp);
    for (uint32_t i = 0; i < c->n; i++) {
        if (c->s[i].id == 0 || c->s[i].role < RAFT_VOTER || c->s[i].role > RAFT_STAGING)
            return -QERR_INVAL;
        if (i > 0 && c->s[i].id == c->s[i - 1].id)
            return -QERR_INVAL;
    }
    /* unused slots are zero so equal configurations compare equal with memcmp */
    memset(&c->s[c->n], 0, (RAFT_MAX_SERVERS - c->n) * sizeof c->s[0]);
    return 0;
}

uint32_t raft_conf_role(const raft_conf_t *c, uint64_t id)
{
    for (uint32_t i = 0; i < c->n && i < RAFT_MAX_SERVERS; i++)
        if (c->s[i].id == id)
            return c->s[i].role;
    return 0;
}

size_t raft_conf_encode(const raft_conf_t *c, uint8_t *buf)
{
    uint32_t n = c->n > RAFT_MAX_SERVERS ? RAFT_MAX_SERVERS : c->n;
    le_put32(buf, n);
    for (uint32_t i = 0; i < n; i++) {
        le_put64(buf + 4 + 9 * i, c->s[i].id);
        buf[4 + 9 * i + 8] = (uint8_t)c->s[i].role;
    }
    return 4 + 9 * (size_t)n;
}

int raft_conf_decode(const uint8_t *buf, size_t len, raft_conf_t *c)
{
    memset(c, 0, sizeof *c);
    if (len < 4)
        return -QERR_CORRUPT;
    uint32_t n = le_get32(buf);
    if (n > RAFT_MAX_SERVERS || len != 4 + 9 * (size_t)n)
        return -QERR_CORRUPT;
    c->n = n;
    for (uint32_t i = 0; i < n; i++) {
        c->s[i].id = le_get64(buf + 4 + 9 * i);
        c->s[i].role = buf[4 + 9 * i + 8];
    }
    if (raft_conf_normalize(c) < 0) {
        memset(c, 0, sizeof *c);
        return -QERR_CORRUPT;
    }
    return 0;
}

/* ---- deep copies -------------------------------------------------------------------- */

int raft_msg_clone(raft_msg_t *dst, const raft_msg_t *src)
{
    size_t bytes = (size_t)src->n_entries * sizeof(raft_entry_t) + src->len;
    for (uint32_t i = 0; i < src->n_entries; i++)
        bytes += src->entries[i].len;
    raft_msg_t m = *src;
    m.mem = NULL;
    m.entries = NULL;
    m.data = NULL;
    if (bytes > 0) {
        uint8_t *mem = malloc(bytes);
        if (!mem) {
            memset(dst, 0, sizeof *dst);
            return -QERR_NOMEM;
        }
        m.mem = mem;
        raft_entry_t *ents = (raft_entry_t *)mem;
        uint8_t *p = mem + (size_t)src->n_entries * sizeof(raft_entry_t);
        for (uint32_t i = 0; i < src->n_entries; i++) {
            ents[i] = src->entries[i];
            ents[i].data = NULL;
            if (src->entries[i].len) {
                memcpy(p, src->entries[i].data, src->entries[i].len);
                ents[i].data = p;
                p += src->entries[i].len;
            }
        }
        if (src->n_entries)
            m.entries = ents;
        if (src->len) {
            memcpy(p, src->data, src->len);
            m.data = p;
        }
    }
    *dst = m;
    return 0;
}

void raft_msg_free(raft_msg_t *m)
{
    if (!m)
        return;
    free(m->mem);
    memset(m, 0, sizeof *m);
}

/* ---- wire format ----------------------------------------------------------------------
 * version u8, type u8, reject u8, flags u8,
 * from to term index log_term commit hint_index hint_term ctx offset: u64 each,
 * n_entries u32, then per entry: term u64, index u64, type u8, len u32, len bytes;
 * SNAPSHOT only: snap.index u64, snap.term u64, conf (raft_conf_encode), data len u32, bytes. */

#define HDR_BYTES (4 + 10 * 8 + 4)
#define ENT_HDR_BYTES (8 + 8 + 1 + 4)

size_t raft_msg_encoded_size(const raft_msg_t *m)
{
    size_t n = HDR_BYTES;
    for (uint32_t i = 0; i < m->n_entries && m->entries; i++)
        n += ENT_HDR_BYTES + m->entries[i].len;
    if (m->type == RAFT_MSG_SNAPSHOT) {
        uint32_t cn = m->snap.conf.n > RAFT_MAX_SERVERS ? RAFT_MAX_SERVERS : m->snap.conf.n;
        n += 16 + 4 + 9 * (size_t)cn + 4 + m->len;
    }
    return n;
}

int raft_msg_encode(const raft_msg_t *m, uint8_t *buf, size_t cap, size_t *len)
{
    if (m->type < 1 || m->type >= RAFT_MSG__COUNT || m->reject > 255 || m->flags > 255)
        return -QERR_INVAL;
    if ((m->n_entries && !m->entries) || (m->len && !m->data))
        return -QERR_INVAL;
    if (m->n_entries && m->type != RAFT_MSG_APPEND)
        return -QERR_INVAL;
    if (m->len && m->type != RAFT_MSG_SNAPSHOT)
        return -QERR_INVAL;
    if (m->type == RAFT_MSG_SNAPSHOT && m->snap.conf.n > RAFT_MAX_SERVERS)
        return -QERR_INVAL;
    for (uint32_t i = 0; i < m->n_entries; i++)
        if ((m->entries[i].len && !m->entries[i].data) || m->entries[i].type > 255)
            return -QERR_INVAL;
    size_t need = raft_msg_encoded_size(m);
    if (need > cap)
        return -QERR_TOOBIG;
    uint8_t *p = buf;
    p[0] = RAFT_WIRE_VERSION;
    p[1] = (uint8_t)m->type;
    p[2] = (uint8_t)m->reject;
    p[3] = (uint8_t)m->flags;
    p += 4;
    const uint64_t f[10] = { m->from, m->to, m->term, m->index, m->log_term,
                             m->commit, m->hint_index, m->hint_term, m->ctx, m->offset };
    for (int i = 0; i < 10; i++, p += 8)
        le_put64(p, f[i]);
    le_put32(p, m->n_entries);
    p += 4;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const raft_entry_t *e = &m->entries[i];
        le_put64(p, e->term);
        le_put64(p + 8, e->index);
        p[16] = (uint8_t)e->type;
        le_put32(p + 17, e->len);
        p += ENT_HDR_BYTES;
        if (e->len)
            memcpy(p, e->data, e->len);
        p += e->len;
    }
    if (m->type == RAFT_MSG_SNAPSHOT) {
        le_put64(p, m->snap.index);
        le_put64(p + 8, m->snap.term);
        p += 16;
        p += raft_conf_encode(&m->snap.conf, p);
        le_put32(p, m->len);
        p += 4;
        if (m->len)
            memcpy(p, m->data, m->len);
        p += m->len;
    }
    *len = (size_t)(p - buf);
    return 0;
}

int raft_msg_decode(const uint8_t *buf, size_t len, raft_msg_t *out)
{
    raft_msg_t m;
    memset(&m, 0, sizeof m);
    memset(out, 0, sizeof *out);
    if (len < 1)
        return -QERR_CORRUPT;
    if (buf[0] != RAFT_WIRE_VERSION)
        return -QERR_FORMAT;
    if (len < HDR_BYTES)
        return -QERR_CORRUPT;
    m.type = buf[1];
    m.reject = buf[2];
    m.flags = buf[3];
    if (m.type < 1 || m.type >= RAFT_MSG__COUNT)
        return -QERR_CORRUPT;
    const uint8_t *p = buf + 4, *end = buf + len;
    uint64_t f[10];
    for (int i = 0; i < 10; i++, p += 8)
        f[i] = le_get64(p);
    m.from = f[0], m.to = f[1], m.term = f[2], m.index = f[3], m.log_term = f[4];
    m.commit = f[5], m.hint_index = f[6], m.hint_term = f[7], m.ctx = f[8], m.offset = f[9];
    uint32_t n = le_get32(p);
    p += 4;
    if (n && m.type != RAFT_MSG_APPEND)
        return -QERR_CORRUPT;
    if ((size_t)(end - p) / ENT_HDR_BYTES < n)
        return -QERR_CORRUPT;
    /* first pass: validate lengths and size the allocation */
    size_t payload = 0;
    const uint8_t *q = p;
    for (uint32_t i = 0; i < n; i++) {
        if ((size_t)(end - q) < ENT_HDR_BYTES)
            return -QERR_CORRUPT;
        uint32_t elen = le_get32(q + 17);
        q += ENT_HDR_BYTES;
        if ((size_t)(end - q) < elen)
            return -QERR_CORRUPT;
        q += elen;
        payload += elen;
    }
    uint32_t dlen = 0;
    const uint8_t *dp = NULL;
    if (m.type == RAFT_MSG_SNAPSHOT) {
        if ((size_t)(end - q) < 16 + 4)
            return -QERR_CORRUPT;
        m.snap.index = le_get64(q);
        m.snap.term = le_get64(q + 8);
        q += 16;
        uint32_t cn = le_get32(q);
        if (cn > RAFT_MAX_SERVERS || (size_t)(end - q) < 4 + 9 * (size_t)cn + 4)
            return -QERR_CORRUPT;
        if (raft_conf_decode(q, 4 + 9 * (size_t)cn, &m.snap.conf) < 0)
            return -QERR_CORRUPT;
        q += 4 + 9 * (size_t)cn;
        dlen = le_get32(q);
        q += 4;
        if ((size_t)(end - q) < dlen)
            return -QERR_CORRUPT;
        dp = q;
        q += dlen;
    }
    if (q != end)
        return -QERR_CORRUPT;
    size_t bytes = (size_t)n * sizeof(raft_entry_t) + payload + dlen;
    uint8_t *mem = NULL;
    if (bytes) {
        mem = malloc(bytes);
        if (!mem)
            return -QERR_NOMEM;
    }
    raft_entry_t *ents = (raft_entry_t *)mem;
    uint8_t *dst = mem ? mem + (size_t)n * sizeof(raft_entry_t) : NULL;
    for (uint32_t i = 0; i < n; i++) {
        ents[i].term = le_get64(p);
        ents[i].index = le_get64(p + 8);
        ents[i].type = p[16];
        ents[i].len = le_get32(p + 17);
        ents[i].data = NULL;
        p += ENT_HDR_BYTES;
        if (ents[i].len) {
            memcpy(dst, p, ents[i].len);
            ents[i].data = dst;
            dst += ents[i].len;
            p += ents[i].len;
        }
    }
    if (dlen) {
        memcpy(dst, dp, dlen);
        m.data = dst;
        m.len = dlen;
    }
    m.n_entries = n;
    m.entries = n ? ents : NULL;
    m.mem = mem;
    *out = m;
    return 0;
}
