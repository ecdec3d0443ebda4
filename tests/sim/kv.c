/* tests/sim/kv.c — the simulated KV store: fixed-layout little-endian commands and
 * snapshots, at-most-once application per (client, seq), FNV-style hash chaining; and its
 * adapter to the simulator's state-machine interface (smi_kv, tests/sim/smi.h). */
#include "tests/sim/kv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/sim/smi.h"

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

#define KV_MAGIC 0x4b

void kv_encode(const kv_cmd_t *c, uint8_t *buf)
{
    buf[0] = KV_MAGIC;
    buf[1] = c->op;
    put32(buf + 2, c->client);
    put32(buf + 6, c->seq);
    put32(buf + 10, c->key);
    put64(buf + 14, c->expect);
    put64(buf + 22, c->value);
    buf[30] = 0;
    for (int i = 0; i < 30; i++)
        buf[30] ^= buf[i];
}

int kv_decode(const uint8_t *buf, size_t len, kv_cmd_t *c)
{
    if (len != KV_CMD_LEN || buf[0] != KV_MAGIC)
        return -1;
    uint8_t x = 0;
    for (int i = 0; i < 30; i++)
        x ^= buf[i];
    if (x != buf[30])
        return -1;
    c->op = buf[1];
    c->client = get32(buf + 2);
    c->seq = get32(buf + 6);
    c->key = get32(buf + 10);
    c->expect = get64(buf + 14);
    c->value = get64(buf + 22);
    if ((c->op != KV_PUT && c->op != KV_CAS) || c->client >= KV_CLIENTS || c->key >= KV_KEYS)
        return -1;
    return 0;
}

static uint64_t mix(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t kv_entry_hash(uint64_t term, const void *data, size_t len)
{
    uint8_t t[8];
    put64(t, term);
    uint64_t h = mix(0xcbf29ce484222325ULL, t, 8);
    return mix(h, data, len) ^ len;
}

int kv_apply(kv_t *kv, uint64_t index, const void *data, size_t len, int *client,
             uint32_t *seq, int *ok)
{
    if (index != kv->applied + 1)
        return -1;
    uint8_t ib[8];
    put64(ib, index);
    kv->hash = mix(mix(kv->hash, ib, 8), data, len);
    kv->applied = index;
    kv_cmd_t c;
    if (client)
        *client = -1;
    if (kv_decode(data, len, &c) < 0)
        return 0;
    int done;
    if (c.seq <= kv->last_seq[c.client]) {
        /* A duplicate (or an old op overtaken by a newer one): no effect. */
        done = c.seq == kv->last_seq[c.client] ? kv->last_ok[c.client] : 0;
    } else {
        if (c.op == KV_PUT) {
            kv->val[c.key] = c.value;
            done = 1;
        } else if (kv->val[c.key] == c.expect) {
            kv->val[c.key] = c.value;
            done = 1;
        } else
            done = 0;
        kv->last_seq[c.client] = c.seq;
        kv->last_ok[c.client] = (uint8_t)done;
    }
    if (client)
        *client = (int)c.client;
    if (seq)
        *seq = c.seq;
    if (ok)
        *ok = done;
    return 0;
}

void kv_snapshot(const kv_t *kv, uint8_t *buf)
{
    uint8_t *p = buf;
    put32(p, 0x4b56534e); /* "KVSN" */
    p += 4;
    for (int i = 0; i < KV_KEYS; i++, p += 8)
        put64(p, kv->val[i]);
    for (int i = 0; i < KV_CLIENTS; i++, p += 4)
        put32(p, kv->last_seq[i]);
    for (int i = 0; i < KV_CLIENTS; i++)
        *p++ = kv->last_ok[i];
    put64(p, kv->applied);
    put64(p + 8, kv->hash);
}

int kv_restore(kv_t *kv, const void *data, size_t len)
{
    const uint8_t *p = data;
    if (len != KV_SNAP_LEN || get32(p) != 0x4b56534e)
        return -1;
    p += 4;
    for (int i = 0; i < KV_KEYS; i++, p += 8)
        kv->val[i] = get64(p);
    for (int i = 0; i < KV_CLIENTS; i++, p += 4)
        kv->last_seq[i] = get32(p);
    for (int i = 0; i < KV_CLIENTS; i++)
        kv->last_ok[i] = *p++;
    kv->applied = get64(p);
    kv->hash = get64(p + 8);
    return 0;
}

/* ---- the kv backend of tests/sim/smi.h ---- */

static void *kvsm_new(void *run)
{
    (void)run;
    return calloc(1, sizeof(kv_t));
}

static void kvsm_free(void *sm) { free(sm); }

/* The store tells commands from other entries by their bytes (kv_decode), as it always has. */
static int kvsm_apply(void *sm, uint64_t index, int is_cmd, const void *data, size_t len,
                      smi_res_t *res)
{
    (void)is_cmd;
    res->code = 0;
    return kv_apply(sm, index, data, len, &res->client, &res->seq, &res->ok);
}

static uint64_t kvsm_applied(const void *sm) { return ((const kv_t *)sm)->applied; }
static uint64_t kvsm_hash(const void *sm) { return ((const kv_t *)sm)->hash; }

static int kvsm_snapshot(void *sm, uint8_t **buf, size_t *len)
{
    if (!(*buf = malloc(KV_SNAP_LEN)))
        return -1;
    kv_snapshot(sm, *buf);
    *len = KV_SNAP_LEN;
    return 0;
}

static int kvsm_restore(void *sm, const void *buf, size_t len, char *err, size_t errlen)
{
    if (kv_restore(sm, buf, len) == 0)
        return 0;
    snprintf(err, errlen, "not a KV snapshot (%zu bytes)", len);
    memset(sm, 0, sizeof(kv_t));
    return -1;
}

static void kvsm_diff(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, char *out,
                      size_t outlen)
{
    size_t i = 0;
    while (i < alen && i < blen && a[i] == b[i])
        i++;
    snprintf(out, outlen, "first difference at byte %zu of %zu/%zu", i, alen, blen);
}

const smi_ops_t smi_kv = {
    .name = "kv",
    .snap_hdr = 0,
    .new = kvsm_new,
    .free = kvsm_free,
    .apply = kvsm_apply,
    .applied = kvsm_applied,
    .hash = kvsm_hash,
    .snapshot = kvsm_snapshot,
    .restore = kvsm_restore,
    .state_bytes = kvsm_snapshot,
    .diff = kvsm_diff,
};
