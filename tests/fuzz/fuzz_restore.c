/* tests/fuzz/fuzz_restore.c — libFuzzer target for restoring a shard from its snapshot
 * stream (state_sm_ops.restore: the tree, the session table, every namespace section).
 * Restore must reject what it cannot trust, leaving an empty valid shard, or accept a state
 * that passes every invariant check (ns_sm_check), whose snapshot restores again to the same
 * bytes (with QFS_FUZZ_EXACT=1: which are the bytes it read), and that apply can work on
 * (expiries and session ends over all of it). The first input byte picks the stream: even,
 * the rest of the input as it is; odd, a valid snapshot built here from a fixed log, edited
 * by the rest of the input (4-byte edits), so that the fuzzer reaches the sections'
 * contents rather than their framing. Snapshots are streamed in memory: this file
 * implements cluster/sm.h's writer and reader, and cluster/snapshot.c is not linked. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cluster/err.h"
#include "cluster/sm.h"
#include "fs/cache_sm.h"
#include "fs/cmd.h"
#include "fs/locks_sm.h"
#include "fs/ns_sm.h"
#include "fs/queues_sm.h"
#include "fs/session_sm.h"
#include "fs/state.h"
#include "fs/tree_sm.h"

#define CHECK(c)                                                                         \
    do {                                                                                 \
        if (!(c)) {                                                                      \
            fprintf(stderr, "fuzz_restore.c:%d: %s\n", __LINE__, #c);                    \
            __builtin_trap();                                                            \
        }                                                                                \
    } while (0)

/* ---- cluster/sm.h's streams, in memory ---- */

struct snap_writer {
    uint8_t *p;
    size_t n, cap;
};

struct snap_reader {
    const uint8_t *p;
    size_t n, off;
};

int snap_writer_put(snap_writer_t *w, const void *buf, size_t len)
{
    if (w->n + len > w->cap) {
        size_t cap = (w->n + len) * 2;
        uint8_t *p = realloc(w->p, cap);
        if (!p)
            return -QERR_NOMEM;
        w->p = p;
        w->cap = cap;
    }
    memcpy(w->p + w->n, buf, len);
    w->n += len;
    return 0;
}

int snap_reader_get(snap_reader_t *r, void *buf, size_t len)
{
    if (len > r->n - r->off)
        return -QERR_CORRUPT;
    memcpy(buf, r->p + r->off, len);
    r->off += len;
    return 0;
}

/* The snapshot of st (its bytes are the caller's to free). */
static snap_writer_t snap(state_t *st)
{
    snap_writer_t w = { 0 };
    CHECK(state_sm_ops.snapshot(st, &w) == 0);
    return w;
}

/* Restores st from p[0..n); *used gets the bytes restore read. */
static int restore(state_t *st, const uint8_t *p, size_t n, size_t *used)
{
    snap_reader_t r = { p, n, 0 };
    int rc = state_sm_ops.restore(st, &r);
    *used = r.off;
    return rc;
}

/* ---- the valid snapshot that odd inputs edit ---- */

static uint64_t idx;

/* Applies b (freed) to st, then checks every invariant; returns apply's code. */
static int apply(state_t *st, cmdbuf_t *b, sm_result_t *res)
{
    sm_result_t local;
    if (!res)
        res = &local;
    memset(res, 0, sizeof(*res));
    state_sm_ops.apply(st, ++idx, b->p, b->len, res);
    free(b->p);
    ns_sm_check(st);
    return res->code;
}

static void must(state_t *st, cmdbuf_t *b)
{
    CHECK(apply(st, b, NULL) == 0);
}

static uint64_t open_session(state_t *st, uint64_t now, const char *node)
{
    cmdbuf_t b;
    sm_result_t res;
    session_cmd_open(&b, now, node, 7, 60000);
    CHECK(apply(st, &b, &res) == 0);
    uint64_t sid;
    memcpy(&sid, res.data, 8);
    return sid;
}

/* A shard with something of every kind: three sessions (one renewed), cache/ keys with a
 * (sliding) TTL, config/ history, queues with ready, claimed and dead messages and waiters,
 * locks with shared and exclusive holders, waiters, data, and create locks with a TTL. */
static state_t *build(void)
{
    state_t *st = state_new(1 << 20);
    cmdbuf_t b;
    uint64_t s1 = open_session(st, 1000, "n1"), s2 = open_session(st, 1000, "n2");
    uint64_t s3 = open_session(st, 1100, "n3");
    session_cmd_renew(&b, 1200, s3, 90000);
    must(st, &b);
    tree_cmd_path(&b, CMD_MKDIR, 1000, NS_CACHE, "d");
    must(st, &b);
    tree_cmd_setxattr(&b, 1000, NS_CACHE, "d", "user.ttl", "60", 2);
    must(st, &b);
    tree_cmd_setxattr(&b, 1000, NS_CACHE, "d", "user.ttl_sliding", "1", 1);
    must(st, &b);
    tree_cmd_put(&b, 1000, NS_CACHE, "d/k", CMD_PUT_CREATE, 0, "val", 3);
    must(st, &b);
    tree_cmd_put(&b, 1000, NS_CACHE, "k2", CMD_PUT_CREATE, 0, "v2", 2);
    must(st, &b);
    tree_cmd_path(&b, CMD_MKDIR, 1000, NS_CONFIG, "app");
    must(st, &b);
    for (int i = 0; i < 3; i++) {
        tree_cmd_put(&b, 1000 + (uint64_t)i, NS_CONFIG, "app/a", CMD_PUT_CREATE, 0, "xy", 2);
        must(st, &b);
    }
    /* queues/: q has 2 ready, 1 claimed by s1, 1 dead; w has waiters of s2 and s3 */
    queues_cmd_mkdir(&b, 1000, "q");
    must(st, &b);
    queues_cmd_mkdir(&b, 1000, "w");
    must(st, &b);
    queues_cmd_set(&b, 1000, "q", QSET_MAXDEL, 1);
    must(st, &b);
    queues_cmd_push(&b, 1000, "q");
    queues_cmd_push_add(&b, "m1", 2);
    queues_cmd_push_add(&b, "m2", 2);
    queues_cmd_push_add(&b, "m3", 2);
    queues_cmd_push_add(&b, "m4", 2);
    must(st, &b);
    queues_cmd_take(&b, 1000, "q", s1, 5, QTAKE_CLAIM, 0, 0);
    must(st, &b);
    uint64_t first = 1;
    queues_cmd_expire(&b, 40000, "q", 1, &first);          /* m1 -> dead/ (max 1) */
    must(st, &b);
    queues_cmd_take(&b, 40000, "q", s1, 6, QTAKE_CLAIM, 0, 0);   /* m2 claimed */
    must(st, &b);
    queues_cmd_take(&b, 40000, "w", s2, 7, 0, 0, 0);
    must(st, &b);
    queues_cmd_take(&b, 40000, "w", s3, 8, QTAKE_CLAIM, 0, 0);
    must(st, &b);
    /* locks/: L shared by s1 and s2 with an exclusive waiter of s3; E a create lock of s2
     * with a TTL; F a create lock without one; data on L */
    locks_cmd_create(&b, 40000, "L", 0, s1, 1);
    must(st, &b);
    locks_cmd_lock(&b, 40000, "L", s1, LK_FLOCK, 1, LM_SHARED, 1, 1, 1);
    must(st, &b);
    locks_cmd_lock(&b, 40001, "L", s2, LK_POSIX, 2, LM_SHARED, 1, 2, 1);
    must(st, &b);
    locks_cmd_lock(&b, 40002, "L", s3, LK_FLOCK, 3, LM_EXCL, 1, 3, 1);
    must(st, &b);
    locks_cmd_data(&b, 40003, "L", "host 1\n", 7, 0);
    must(st, &b);
    locks_cmd_create(&b, 40004, "E", 1, s2, 1);
    must(st, &b);
    locks_cmd_setttl(&b, 40005, "E", 5);
    must(st, &b);
    locks_cmd_touch(&b, 41000, "E");
    must(st, &b);
    locks_cmd_create(&b, 41000, "F", 1, s1, 1);
    must(st, &b);
    locks_cmd_lock(&b, 41001, "F", s3, LK_POSIX, 4, LM_SHARED, 1, 4, 1);
    must(st, &b);
    return st;
}

static snap_writer_t base;
/* QFS_FUZZ_EXACT=1: an accepted stream must also be the very bytes its state snapshots to
 * (one encoding per state). Off by default while the tree and config/ sections accept
 * some other encodings of a state (children out of name order; an event path with a NUL),
 * which is harmless to replicas but not canonical. */
static int exact;

/* The stream an input names (malloc'ed into *out), or 0 bytes. Odd inputs: each 4-byte
 * edit is u16 offset (modulo the length), u8 op, u8 value; op 0 XORs the byte, 1 sets it,
 * 2 adds value - 128 to the little-endian u64 at the offset (a fence, a time or an id one
 * off), 3 sets that u64 to value (a count, a flag or a time of 0) or, for a value of 0xf0
 * and more, cuts the stream there. */
static size_t stream(const uint8_t *data, size_t size, uint8_t **out)
{
    if (!(data[0] & 1)) {
        *out = malloc(size);
        CHECK(*out);
        memcpy(*out, data + 1, size - 1);
        return size - 1;
    }
    uint8_t *p = malloc(base.n);
    CHECK(p);
    size_t n = base.n;
    memcpy(p, base.p, n);
    for (size_t i = 1; i + 4 <= size && n > 0; i += 4) {
        size_t off = ((size_t)data[i] | (size_t)data[i + 1] << 8) % n;
        uint8_t v = data[i + 3];
        switch (data[i + 2] & 3) {
        case 0: p[off] ^= v; break;
        case 1: p[off] = v; break;
        case 2:
            if (off + 8 <= n) {   /* little-endian, whatever the host */
                uint64_t x = 0;
                for (int j = 7; j >= 0; j--)
                    x = x << 8 | p[off + (size_t)j];
                x += (uint64_t)((int64_t)v - 128);
                for (int j = 0; j < 8; j++)
                    p[off + (size_t)j] = (uint8_t)(x >> (8 * j));
            }
            break;
        default:
            if (v >= 0xf0)
                n = off;
            else if (off + 8 <= n)
                for (int j = 0; j < 8; j++)
                    p[off + (size_t)j] = j ? 0 : v;
            break;
        }
    }
    *out = p;
    return n;
}

/* ---- after an accepted restore: apply works on the state ---- */

struct names {
    char *name[64];
    uint64_t val[64];
    int n;
};

static int due_lock(void *arg, const lock_view_t *v)
{
    struct names *d = arg;
    if (v->expires_ms && d->n < 64) {
        d->name[d->n] = strdup(v->name);
        d->val[d->n++] = v->create_fence;
    }
    return 0;
}

static int a_queue(void *arg, const queue_view_t *v)
{
    struct names *d = arg;
    if (d->n < 64) {
        d->name[d->n] = strdup(v->name);
        d->val[d->n++] = v->qid;
    }
    return 0;
}

struct ids {
    uint64_t id[QUEUE_EXPIRE_MAX];
    uint32_t n;
};

static int an_id(void *arg, const qmsg_view_t *m)
{
    struct ids *x = arg;
    x->id[x->n++] = m->id;
    return x->n == QUEUE_EXPIRE_MAX;
}

/* Far in the future of st: every lease, TTL and session lease has ended. */
#define LATER(st) ((st)->now_ms + (1ull << 40))

static void work_on(state_t *st)
{
    cmdbuf_t b;
    struct names d = { .n = 0 };
    locks_sm_each(st, due_lock, &d);
    for (int i = 0; i < d.n; i++) {
        locks_cmd_expire(&b, LATER(st), d.name[i], d.val[i]);
        apply(st, &b, NULL);
        free(d.name[i]);
    }
    d.n = 0;
    queues_sm_each(st, a_queue, &d);
    for (int i = 0; i < d.n; i++) {
        static struct ids x;
        x.n = 0;
        queues_sm_each_msg(st, d.val[i], QM_INFLIGHT, an_id, &x);
        queues_cmd_expire(&b, LATER(st), d.name[i], x.n, x.id);
        apply(st, &b, NULL);
        free(d.name[i]);
    }
    while (st->sessions.head) {
        session_cmd_end(&b, LATER(st), st->sessions.head->id, 0);
        CHECK(apply(st, &b, NULL) == 0);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *e = getenv("QFS_FUZZ_EXACT");
    exact = e && *e == '1';
    state_t *st = build();
    base = snap(st);
    state_free(st);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t *p;
    size_t n = stream(data, size, &p), used;
    state_t *st = state_new(1 << 20);
    int rc = restore(st, p, n, &used);
    ns_sm_check(st);                /* accepted, or rejected and left empty */
    if (rc == 0) {
        /* Its snapshot restores again, to a state with the same snapshot. */
        snap_writer_t w = snap(st);
        if (exact)
            CHECK(w.n == used && memcmp(w.p, p, used) == 0);
        state_t *again = state_new(1 << 20);
        size_t used2;
        CHECK(restore(again, w.p, w.n, &used2) == 0 && used2 == w.n);
        ns_sm_check(again);
        snap_writer_t w2 = snap(again);
        CHECK(w2.n == w.n && memcmp(w2.p, w.p, w.n) == 0);
        state_free(again);
        free(w.p);
        free(w2.p);
        work_on(st);
    }
    state_free(st);
    free(p);
    return 0;
}
