/* cluster/group_raft.c — the Raft-backed group of cluster/group.h. A group_node_t is one node
 * loop (cluster/mraft.h) on the TCP transport (cluster/mraft_tcp.h) hosting one or more
 * groups; each hosted group is a group_t whose calls go to the loop: group_propose is
 * mraft_propose_any (the leader proposes; a follower forwards to the leader and waits to
 * apply the entry itself), group_read_barrier is mraft_read_barrier (ReadIndex). Everything
 * that waits is bounded by the node's timeout.
 *
 * Exactly-once retries (issue 9 item 6). Every command this module proposes is wrapped in an
 * envelope (docs/FORMATS.md §7): the proposing client (this node's id and a random
 * incarnation drawn at group_node_open, so every process run is a new client), a sequence
 * number per group, and the lowest sequence number the client still has in flight. The state
 * machine mraft runs is a wrapper around the caller's (wrap_ops): its apply looks the
 * (client, seq) up in the group's dedup table before calling the real apply; a sequence
 * number already applied is not applied again, and the result saved for it goes to the
 * waiter. So group_propose can resend the same envelope after a lost forward, a lost answer
 * or a leader change, and does, every retry interval, until its timeout. The table is part of
 * the group's snapshots (a section before the state machine's stream, announced by the
 * metadata header's tag, docs/FORMATS.md §8) and bounded (clients evicted in least recently
 * applied order past DD_MAX_CLIENTS; results above a client's lowest unfinished proposal are
 * bounded by the window DD_WINDOW). Design: docs/CLUSTER.md "The Raft group". */
#include "cluster/group.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cluster/assert.h"
#include "cluster/bytes.h"
#include "cluster/err.h"
#include "cluster/mraft.h"
#include "cluster/mraft_tcp.h"

#define DEFAULT_TIMEOUT_MS 5000
#define DEFAULT_MAX_CMD (2u << 20)

/* The envelope (docs/FORMATS.md §7): u32 magic, u8 version, 3 zero bytes, u64 node,
 * u64 incarnation, u64 seq, u64 low; then the command. */
#define ENV_MAGIC 0x564E4551u    /* "QENV" */
#define ENV_VERSION 1
#define ENV_BYTES 40

/* The dedup section at the start of the state machine stream of a snapshot whose metadata
 * header carries SNAP_TAG_DEDUP (docs/FORMATS.md §8). */
#define SNAP_TAG_DEDUP 1
#define DD_MAGIC 0x54444451u     /* "QDDT" */
#define DD_VERSION 1
#define DD_MAX_CLIENTS 1024      /* past this, the least recently applied client is evicted */
#define DD_WINDOW 1024           /* a client's seq is below its low + DD_WINDOW (format rule) */

/* Verdicts the wrapper itself gives (sm_result_t.code) for envelopes it does not apply. */
#define CODE_STALE (-EALREADY)   /* seq below the client's low: finished before; skipped */
#define CODE_BAD_ENVELOPE (-EPROTO) /* an envelope of another version or breaking its rules */

/* One saved result of a client. */
typedef struct dd_result {
    uint64_t seq;
    sm_result_t res;
} dd_result_t;

/* One client in a group's dedup table. */
typedef struct dd_client {
    uint64_t node, inc;          /* the client id */
    uint64_t low;                /* highest "low" applied: every seq below it is finished */
    uint64_t last_index;         /* index of the client's latest applied entry (LRU key) */
    dd_result_t *r;              /* saved results, seq ascending, every seq >= low */
    uint32_t n, cap;
} dd_client_t;

/* A group's dedup table: clients sorted by (node, inc). Touched only by the wrapper's
 * apply/snapshot/restore, which mraft calls from one thread at a time. */
typedef struct dedup {
    dd_client_t *c;
    size_t n, cap;
} dedup_t;

/* One hosted group. impl must stay first (cluster/group.h). */
typedef struct group_raft {
    const group_impl_t *impl;
    group_node_t *node;
    uint32_t id;
    bool owns_node;          /* made by group_open_raft: group_close closes the node */
    hist_t commit_latency;
    const sm_ops_t *ops;     /* the caller's state machine, wrapped by wrap_ops */
    void *ctx;
    dedup_t dd;
    /* this node's client of the group: sequence numbers and the ones in flight */
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* signalled when a proposal leaves the in-flight set */
    uint64_t next_seq;
    uint64_t *inflight;
    size_t n_inflight, cap_inflight;
    /* counters (atomics) */
    uint64_t retries, dup_hits, stale, bad_env, evictions;
    uint64_t dd_clients;     /* table size as of the last apply or restore */
} group_raft_t;

struct group_node {
    uint64_t id;
    uint64_t incarnation;    /* random, nonzero: this process run's client id with id */
    uint32_t timeout_ms;
    uint32_t retry_ms;
    size_t max_cmd;          /* the caller's limit; mraft's is this plus the envelope */
    mraft_tcp_t *tcp;
    mraft_transport_t tr;    /* the TCP transport's table, called through node_tr_* */
    uint32_t drop_fwd[3];    /* test hook: FWD frames of kind k still to drop (atomic) */
    mraft_node_t *n;
    group_raft_t **groups;
    size_t n_groups;
    bool started;
    bool balance_off;        /* cfg.leader_balance_off */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- the envelope ------------------------------------------------------------------------ */

typedef struct envelope {
    uint64_t node, inc, seq, low;
} envelope_t;

static void env_encode(uint8_t *p, const envelope_t *e)
{
    le_put32(p, ENV_MAGIC);
    p[4] = ENV_VERSION;
    p[5] = p[6] = p[7] = 0;
    le_put64(p + 8, e->node);
    le_put64(p + 16, e->inc);
    le_put64(p + 24, e->seq);
    le_put64(p + 32, e->low);
}

enum { ENV_NONE = 0, ENV_OK = 1, ENV_BAD = 2 };

/* Classifies an entry's payload: ENV_NONE (no envelope: a command proposed without this
 * module, e.g. by an older version or a raw forwarded PROPOSE; applied as it is), ENV_OK
 * (*e filled), or ENV_BAD (the magic, but another version or a broken rule). */
static int env_decode(const void *cmd, size_t len, envelope_t *e)
{
    const uint8_t *p = cmd;
    if (len < 4 || le_get32(p) != ENV_MAGIC)
        return ENV_NONE;
    if (len < ENV_BYTES || p[4] != ENV_VERSION || p[5] || p[6] || p[7])
        return ENV_BAD;
    e->node = le_get64(p + 8);
    e->inc = le_get64(p + 16);
    e->seq = le_get64(p + 24);
    e->low = le_get64(p + 32);
    if (!e->node || !e->inc || !e->low || e->low > e->seq || e->seq - e->low >= DD_WINDOW)
        return ENV_BAD;
    return ENV_OK;
}

/* ---- the dedup table --------------------------------------------------------------------- */

static int client_cmp(const dd_client_t *c, uint64_t node, uint64_t inc)
{
    if (c->node != node)
        return c->node < node ? -1 : 1;
    return c->inc < inc ? -1 : c->inc > inc;
}

/* The position of (node, inc) in the sorted table, or where it would go; *found says. */
static size_t dd_search(const dedup_t *d, uint64_t node, uint64_t inc, bool *found)
{
    size_t lo = 0, hi = d->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = client_cmp(&d->c[mid], node, inc);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static void dd_remove_at(dedup_t *d, size_t i)
{
    free(d->c[i].r);
    memmove(&d->c[i], &d->c[i + 1], (d->n - i - 1) * sizeof(*d->c));
    d->n--;
}

static void dd_clear(dedup_t *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->c[i].r);
    free(d->c);
    memset(d, 0, sizeof(*d));
}

/* The client (node, inc), added (with low 1, no results) if absent. Adding one to a full
 * table first evicts the client whose latest applied entry is the oldest (a function of the
 * log: every replica evicts the same one). *evicted counts evictions. */
static dd_client_t *dd_get(dedup_t *d, uint64_t node, uint64_t inc, uint64_t *evicted)
{
    bool found;
    size_t at = dd_search(d, node, inc, &found);
    if (found)
        return &d->c[at];
    if (d->n >= DD_MAX_CLIENTS) {
        size_t old = 0;
        for (size_t i = 1; i < d->n; i++)
            if (d->c[i].last_index < d->c[old].last_index)
                old = i;
        dd_remove_at(d, old);
        (*evicted)++;
        at = dd_search(d, node, inc, &found);
    }
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 8;
        d->c = xrealloc(d->c, d->cap * sizeof(*d->c));
    }
    memmove(&d->c[at + 1], &d->c[at], (d->n - at) * sizeof(*d->c));
    d->c[at] = (dd_client_t){ .node = node, .inc = inc, .low = 1 };
    d->n++;
    return &d->c[at];
}

/* Raises c's low to low (if higher) and forgets the results below it. */
static void dd_raise_low(dd_client_t *c, uint64_t low)
{
    if (low <= c->low)
        return;
    c->low = low;
    uint32_t k = 0;
    while (k < c->n && c->r[k].seq < low)
        k++;
    if (k) {
        memmove(c->r, c->r + k, (c->n - k) * sizeof(*c->r));
        c->n -= k;
    }
}

/* The saved result of seq, or NULL. */
static dd_result_t *dd_find(dd_client_t *c, uint64_t seq)
{
    uint32_t lo = 0, hi = c->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (c->r[mid].seq == seq)
            return &c->r[mid];
        if (c->r[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Saves seq's result (seq not saved yet, seq >= c->low, seq < c->low + DD_WINDOW, so at
 * most DD_WINDOW results per client). */
static void dd_save(dd_client_t *c, uint64_t seq, const sm_result_t *res)
{
    ASSERT(c->n < DD_WINDOW);
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 4;
        c->r = xrealloc(c->r, c->cap * sizeof(*c->r));
    }
    uint32_t at = c->n;
    while (at > 0 && c->r[at - 1].seq > seq)
        at--;
    memmove(&c->r[at + 1], &c->r[at], (c->n - at) * sizeof(*c->r));
    c->r[at].seq = seq;
    c->r[at].res = *res;
    c->n++;
}

/* ---- the state machine wrapper ------------------------------------------------------------ */

static void wrap_apply(void *ctx, uint64_t index, const void *cmd, size_t len, sm_result_t *res)
{
    group_raft_t *g = ctx;
    envelope_t e;
    int kind = env_decode(cmd, len, &e);
    if (kind == ENV_NONE) {
        g->ops->apply(g->ctx, index, cmd, len, res);
        return;
    }
    if (kind == ENV_BAD) {   /* not applied, the same on every replica */
        __atomic_add_fetch(&g->bad_env, 1, __ATOMIC_RELAXED);
        if (res)
            res->code = CODE_BAD_ENVELOPE;
        return;
    }
    uint64_t evicted = 0;
    dd_client_t *c = dd_get(&g->dd, e.node, e.inc, &evicted);
    if (evicted)
        __atomic_add_fetch(&g->evictions, evicted, __ATOMIC_RELAXED);
    c->last_index = index;
    dd_raise_low(c, e.low);
    __atomic_store_n(&g->dd_clients, (uint64_t)g->dd.n, __ATOMIC_RELAXED);
    if (e.seq < c->low) {
        /* finished before this entry: applied already and acknowledged, or given up by its
         * proposer (timeout); nobody waits for it any more */
        __atomic_add_fetch(&g->stale, 1, __ATOMIC_RELAXED);
        if (res)
            res->code = CODE_STALE;
        return;
    }
    dd_result_t *saved = dd_find(c, e.seq);
    if (saved) {
        __atomic_add_fetch(&g->dup_hits, 1, __ATOMIC_RELAXED);
        if (res)
            *res = saved->res;
        return;
    }
    sm_result_t out;
    memset(&out, 0, sizeof(out));
    g->ops->apply(g->ctx, index, (const uint8_t *)cmd + ENV_BYTES, len - ENV_BYTES, &out);
    if (out.len > SM_RESULT_MAX)
        out.len = SM_RESULT_MAX;
    dd_save(c, e.seq, &out);
    if (res)
        *res = out;
}

/* The dedup section: head (magic, version, 3 zero bytes, u32 clients), then per client
 * node, inc, low, last_index (u64 each) and u32 results, then per result u64 seq, i32 code,
 * u32 len and len bytes. Clients in (node, inc) order, results by seq: byte-identical on
 * every replica that applied the same log. */
static int dd_write(const dedup_t *d, snap_writer_t *w)
{
    uint8_t b[40 + SM_RESULT_MAX];
    le_put32(b, DD_MAGIC);
    b[4] = DD_VERSION;
    b[5] = b[6] = b[7] = 0;
    le_put32(b + 8, (uint32_t)d->n);
    int rc = snap_writer_put(w, b, 12);
    for (size_t i = 0; rc == 0 && i < d->n; i++) {
        const dd_client_t *c = &d->c[i];
        le_put64(b, c->node);
        le_put64(b + 8, c->inc);
        le_put64(b + 16, c->low);
        le_put64(b + 24, c->last_index);
        le_put32(b + 32, c->n);
        rc = snap_writer_put(w, b, 36);
        for (uint32_t k = 0; rc == 0 && k < c->n; k++) {
            const sm_result_t *r = &c->r[k].res;
            le_put64(b, c->r[k].seq);
            le_put32(b + 8, (uint32_t)r->code);
            le_put32(b + 12, r->len);
            memcpy(b + 16, r->data, r->len);
            rc = snap_writer_put(w, b, 16 + r->len);
        }
    }
    return rc;
}

/* Reads a dedup section into the empty d, checking every rule the writer keeps. */
static int dd_read(dedup_t *d, snap_reader_t *r)
{
    uint8_t b[40];
    int rc = snap_reader_get(r, b, 12);
    if (rc)
        return rc;
    if (le_get32(b) != DD_MAGIC)
        return -QERR_CORRUPT;
    if (b[4] != DD_VERSION)
        return -QERR_FORMAT;
    uint32_t n = le_get32(b + 8);
    if (b[5] || b[6] || b[7] || n > DD_MAX_CLIENTS)
        return -QERR_CORRUPT;
    for (uint32_t i = 0; i < n; i++) {
        if ((rc = snap_reader_get(r, b, 36)))
            return rc;
        uint64_t node = le_get64(b), inc = le_get64(b + 8), evicted = 0;
        uint32_t nr = le_get32(b + 32);
        if (!node || !inc || nr > DD_WINDOW ||
            (d->n && client_cmp(&d->c[d->n - 1], node, inc) >= 0))
            return -QERR_CORRUPT;
        dd_client_t *c = dd_get(d, node, inc, &evicted);
        c->low = le_get64(b + 16);
        c->last_index = le_get64(b + 24);
        if (!c->low)
            return -QERR_CORRUPT;
        for (uint32_t k = 0; k < nr; k++) {
            sm_result_t res;
            memset(&res, 0, sizeof(res));
            if ((rc = snap_reader_get(r, b, 16)))
                return rc;
            uint64_t seq = le_get64(b);
            res.code = (int)le_get32(b + 8);
            res.len = le_get32(b + 12);
            if (res.len > SM_RESULT_MAX || seq < c->low || seq - c->low >= DD_WINDOW ||
                (c->n && c->r[c->n - 1].seq >= seq))
                return -QERR_CORRUPT;
            if ((rc = snap_reader_get(r, res.data, res.len)))
                return rc;
            dd_save(c, seq, &res);
        }
    }
    return 0;
}

static int wrap_snapshot(void *ctx, snap_writer_t *w)
{
    group_raft_t *g = ctx;
    int rc = dd_write(&g->dd, w);
    return rc ? rc : g->ops->snapshot(g->ctx, w);
}

/* A file whose metadata header has no tag (written before the dedup table existed, or by a
 * node loop without group_raft) holds the state machine's stream alone: the table starts
 * empty. */
static int wrap_restore(void *ctx, snap_reader_t *r)
{
    group_raft_t *g = ctx;
    dd_clear(&g->dd);
    uint8_t tag = mraft_restoring_snap_tag();
    int rc = 0;
    if (tag == SNAP_TAG_DEDUP)
        rc = dd_read(&g->dd, r);
    else if (tag != 0)
        rc = -QERR_FORMAT;
    if (rc)
        dd_clear(&g->dd);
    __atomic_store_n(&g->dd_clients, (uint64_t)g->dd.n, __ATOMIC_RELAXED);
    return rc ? rc : g->ops->restore(g->ctx, r);
}

/* The leader's stamp (sm_ops_t.stamp) goes to the command inside the envelope (or to a
 * command without one, as apply sees it); an envelope breaking its rules is applied nowhere,
 * so it is left alone. */
static void wrap_stamp(void *ctx, void *cmd, size_t len)
{
    group_raft_t *g = ctx;
    envelope_t e;
    if (!g->ops->stamp)
        return;
    int kind = env_decode(cmd, len, &e);
    if (kind == ENV_NONE)
        g->ops->stamp(g->ctx, cmd, len);
    else if (kind == ENV_OK)
        g->ops->stamp(g->ctx, (uint8_t *)cmd + ENV_BYTES, len - ENV_BYTES);
}

static const sm_ops_t wrap_ops = {
    .apply = wrap_apply,
    .snapshot = wrap_snapshot,
    .restore = wrap_restore,
    .stamp = wrap_stamp,
};

/* ---- the transport, with the test hook ------------------------------------------------------ */

static void node_tr_send(void *ctx, uint64_t to, uint32_t group, const raft_msg_t *m)
{
    group_node_t *nd = ctx;
    nd->tr.send(nd->tr.ctx, to, group, m);
}

static void node_tr_flush(void *ctx)
{
    group_node_t *nd = ctx;
    nd->tr.flush(nd->tr.ctx);
}

static void node_tr_poll(void *ctx, int timeout_ms)
{
    group_node_t *nd = ctx;
    nd->tr.poll(nd->tr.ctx, timeout_ms);
}

static void node_tr_wake(void *ctx)
{
    group_node_t *nd = ctx;
    nd->tr.wake(nd->tr.ctx);
}

static int node_tr_send_fwd(void *ctx, uint64_t to, const frame_fwd_t *f)
{
    group_node_t *nd = ctx;
    if (f->kind < 3) {
        uint32_t left = __atomic_load_n(&nd->drop_fwd[f->kind], __ATOMIC_RELAXED);
        while (left &&
               !__atomic_compare_exchange_n(&nd->drop_fwd[f->kind], &left, left - 1, false,
                                            __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            ;
        if (left)
            return 0;            /* "queued", and lost */
    }
    return nd->tr.send_fwd(nd->tr.ctx, to, f);
}

/* Leader balancing asks whether a peer is connected (the transport's view, at most
 * MRAFT_TCP_STATS_MS old). */
static int node_tr_peer_up(void *ctx, uint64_t id)
{
    group_node_t *nd = ctx;
    transport_peer_stats_t st;
    return mraft_tcp_peer_stats(nd->tcp, id, &st) == 0 && st.connected;
}

void group_node_test_drop_fwd(group_node_t *nd, uint32_t kind, uint32_t count)
{
    ASSERT(kind == FWD_PROPOSE || kind == FWD_RESULT);
    __atomic_store_n(&nd->drop_fwd[kind], count, __ATOMIC_RELAXED);
}

/* ---- this node's client: sequence numbers in flight --------------------------------------- */

/* Takes the next sequence number of g and puts it in flight; waits (until deadline_ns) while
 * DD_WINDOW numbers since the lowest in flight are taken. Returns the seq, or 0 on timeout. */
static uint64_t seq_begin(group_raft_t *g, uint64_t deadline_ns)
{
    pthread_mutex_lock(&g->mu);
    for (;;) {
        uint64_t low = g->next_seq;
        for (size_t i = 0; i < g->n_inflight; i++)
            if (g->inflight[i] < low)
                low = g->inflight[i];
        if (g->next_seq - low < DD_WINDOW)
            break;
        struct timespec ts = { .tv_sec = (time_t)(deadline_ns / 1000000000ull),
                               .tv_nsec = (long)(deadline_ns % 1000000000ull) };
        if (pthread_cond_timedwait(&g->cv, &g->mu, &ts) != 0 && now_ns() >= deadline_ns) {
            pthread_mutex_unlock(&g->mu);
            return 0;
        }
    }
    if (g->n_inflight == g->cap_inflight) {
        g->cap_inflight = g->cap_inflight ? g->cap_inflight * 2 : 16;
        g->inflight = xrealloc(g->inflight, g->cap_inflight * sizeof(*g->inflight));
    }
    uint64_t seq = g->next_seq++;
    g->inflight[g->n_inflight++] = seq;
    pthread_mutex_unlock(&g->mu);
    return seq;
}

/* The lowest sequence number of g in flight (seq, in flight, is an upper bound). */
static uint64_t seq_low(group_raft_t *g, uint64_t seq)
{
    pthread_mutex_lock(&g->mu);
    uint64_t low = seq;
    for (size_t i = 0; i < g->n_inflight; i++)
        if (g->inflight[i] < low)
            low = g->inflight[i];
    pthread_mutex_unlock(&g->mu);
    return low;
}

static void seq_end(group_raft_t *g, uint64_t seq)
{
    pthread_mutex_lock(&g->mu);
    for (size_t i = 0; i < g->n_inflight; i++)
        if (g->inflight[i] == seq) {
            g->inflight[i] = g->inflight[--g->n_inflight];
            break;
        }
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* ---- group_t calls ------------------------------------------------------------------ */

/* Wraps cmd in an envelope with a new sequence number and proposes it through the loop; an
 * attempt that gets no answer within the retry interval (-QERR_TIMEOUT from mraft: a lost
 * forward or answer, a dead leader, a snapshot installed over the entry) is made again with
 * the same envelope, until the timeout. Other outcomes end it (mraft itself retries the ones
 * that prove the command was not appended). The dedup table makes every resend safe. */
static int raft_g_propose(group_t *gt, const void *cmd, size_t len, sm_result_t *res)
{
    group_raft_t *g = (group_raft_t *)(void *)gt;
    group_node_t *nd = g->node;
    if (len > nd->max_cmd)
        return -QERR_TOOBIG;
    if (len && !cmd)
        return -QERR_INVAL;
    uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)nd->timeout_ms * 1000000ull;
    uint64_t seq = seq_begin(g, deadline);
    if (!seq)
        return -QERR_TIMEOUT;    /* DD_WINDOW older proposals unfinished: not proposed */
    uint8_t *buf = xmalloc(ENV_BYTES + len);
    if (len)
        memcpy(buf + ENV_BYTES, cmd, len);
    envelope_t e = { .node = nd->id, .inc = nd->incarnation, .seq = seq };
    int rc;
    for (unsigned attempt = 0;; attempt++) {
        uint64_t now = now_ns();
        if (now >= deadline) {
            rc = -QERR_TIMEOUT;
            break;
        }
        uint64_t left_ms = (deadline - now + 999999) / 1000000;
        uint32_t wait = left_ms < nd->retry_ms ? (uint32_t)left_ms : nd->retry_ms;
        e.low = seq_low(g, seq);   /* may have risen since the last attempt: trims sooner */
        env_encode(buf, &e);
        if (attempt)
            __atomic_add_fetch(&g->retries, 1, __ATOMIC_RELAXED);
        rc = mraft_propose_any(nd->n, g->id, buf, ENV_BYTES + len, res, wait, NULL);
        if (rc != -QERR_TIMEOUT)
            break;
    }
    free(buf);
    seq_end(g, seq);
    if (rc == 0)
        hist_add(&g->commit_latency, now_ns() - t0);
    return rc;
}

static int raft_g_read_barrier(group_t *gt, uint32_t timeout_ms)
{
    group_raft_t *g = (group_raft_t *)(void *)gt;
    return mraft_read_barrier(g->node->n, g->id, timeout_ms ? timeout_ms : g->node->timeout_ms,
                              NULL);
}

static int raft_g_is_leader(group_t *gt)
{
    group_raft_t *g = (group_raft_t *)(void *)gt;
    mraft_group_status_t st;
    return mraft_status(g->node->n, g->id, &st) == 0 && st.role == RAFT_LEADER;
}

static void raft_g_get_stats(group_t *gt, group_stats_t *out)
{
    group_raft_t *g = (group_raft_t *)(void *)gt;
    mraft_group_status_t st;
    mraft_stats_t ns;
    memset(out, 0, sizeof(*out));
    if (mraft_status(g->node->n, g->id, &st) == 0) {
        out->term = st.term;
        out->leader = st.leader;
        out->is_leader = st.role == RAFT_LEADER;
        out->is_learner = st.member == RAFT_LEARNER;
        out->preferred_leader = st.preferred;
        out->leader_transfers = st.transfers;
        out->commit_index = st.commit;
        out->applied_index = st.applied;
        out->snapshot_index = st.snap_index;
        out->snapshots = st.snapshots;
        out->installs = st.installs;
        for (uint32_t i = 0; i < st.n_progress && out->n_snap_sends < GROUP_SNAP_SENDS_MAX; i++)
            if (st.progress[i].state == RAFT_PR_SNAPSHOT)
                out->snap_sends[out->n_snap_sends++] = (struct group_snap_send){
                    st.progress[i].id, st.progress[i].snap_index, st.progress[i].snap_sent,
                    st.progress[i].snap_total };
    }
    out->node_id = g->node->id;
    mraft_get_stats(g->node->n, &ns);
    out->wal_bytes = ns.store.wal.bytes;
    out->wal_appends = ns.store.wal.appends;
    out->wal_fsyncs = ns.store.wal.syncs;
    out->lease_reads = ns.lease_reads;
    out->fsync_latency = ns.store.wal.sync_latency;
    out->failed = ns.failed != 0;
    for (int i = 0; i < HIST_BUCKETS; i++)
        out->commit_latency.bucket[i] =
            __atomic_load_n(&g->commit_latency.bucket[i], __ATOMIC_RELAXED);
    out->commit_latency.count = __atomic_load_n(&g->commit_latency.count, __ATOMIC_RELAXED);
    out->commit_latency.sum_ns = __atomic_load_n(&g->commit_latency.sum_ns, __ATOMIC_RELAXED);
}

static void raft_g_close(group_t *gt)
{
    group_raft_t *g = (group_raft_t *)(void *)gt;
    if (g->owns_node)
        group_node_close(g->node);
}

static const group_impl_t raft_impl = {
    .propose = raft_g_propose,
    .read_barrier = raft_g_read_barrier,
    .is_leader = raft_g_is_leader,
    .get_stats = raft_g_get_stats,
    .close = raft_g_close,
};

/* ---- the node --------------------------------------------------------------------------- */

/* A random nonzero incarnation for this process run (getrandom; the clock and the process id
 * if that fails), so a restarted node is a new client and never meets its old table entry. */
static uint64_t new_incarnation(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^
            ((uint64_t)getpid() << 40) ^ now_ns();
    }
    return v ? v : 1;
}

static void group_raft_free(group_raft_t *g)
{
    dd_clear(&g->dd);
    free(g->inflight);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
}

static void tcp_log(void *ctx, int level, const char *line)
{
    group_node_t *nd = ctx;
    (void)level;
    if (nd->log)
        nd->log(nd->log_ctx, line);
    else
        fprintf(stderr, "quorumfs: transport: %s\n", line);
}

int group_node_open(const group_raft_config_t *cfg, group_node_t **out, char **errmsg)
{
    *out = NULL;
    if (errmsg)
        *errmsg = NULL;
    if (!cfg->id || !cfg->dir || !cfg->listen || (cfg->n_peers && !cfg->peers)) {
        qerr_set_msg(errmsg, "group: a Raft node needs an id, a data directory and a listen "
                     "address");
        return -QERR_INVAL;
    }
    for (size_t i = 0; i < cfg->n_peers; i++) {
        if (!cfg->peers[i].id || !cfg->peers[i].addr) {
            qerr_set_msg(errmsg, "group: peer %zu has no id or no address", i + 1);
            return -QERR_INVAL;
        }
        for (size_t j = 0; j < i; j++)
            if (cfg->peers[j].id == cfg->peers[i].id) {
                qerr_set_msg(errmsg, "group: peer id %" PRIu64 " listed twice",
                             cfg->peers[i].id);
                return -QERR_INVAL;
            }
    }
    uint32_t tick_ms = cfg->tick_ms ? cfg->tick_ms : 100;
    uint32_t election_tick = cfg->election_tick ? cfg->election_tick : 10;
    group_node_t *nd = xcalloc(1, sizeof(*nd));
    nd->id = cfg->id;
    nd->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : DEFAULT_TIMEOUT_MS;
    nd->retry_ms = cfg->retry_ms ? cfg->retry_ms : tick_ms * election_tick;
    if (nd->retry_ms > nd->timeout_ms)
        nd->retry_ms = nd->timeout_ms;
    nd->max_cmd = cfg->max_cmd ? cfg->max_cmd : DEFAULT_MAX_CMD;
    nd->incarnation = new_incarnation();
    nd->log = cfg->log;
    nd->log_ctx = cfg->log_ctx;
    nd->balance_off = cfg->leader_balance_off != 0;
    transport_config_t tc = { .id = cfg->id, .cluster_id = cfg->cluster_id,
                              .incarnation = cfg->data_incarnation,
                              .listen = cfg->listen, .log = tcp_log, .log_ctx = nd,
                              .tls_cert = cfg->tls_cert, .tls_key = cfg->tls_key,
                              .tls_ca = cfg->tls_ca };
    int rc = mraft_tcp_new(&tc, &nd->tcp, errmsg);
    if (rc)
        goto fail;
    for (size_t i = 0; i < cfg->n_peers; i++) {
        if (cfg->peers[i].id == cfg->id)
            continue;
        rc = mraft_tcp_add_peer(nd->tcp, cfg->peers[i].id, cfg->peers[i].addr);
        if (rc) {
            qerr_set_msg(errmsg, "group: peer %" PRIu64 " at \"%s\": %s", cfg->peers[i].id,
                         cfg->peers[i].addr, qerr_str(rc));
            goto fail;
        }
    }
    mraft_config_t mc = {
        .id = cfg->id, .dir = cfg->dir, .tick_ms = cfg->tick_ms,
        .election_tick = cfg->election_tick, .heartbeat_tick = cfg->heartbeat_tick,
        .snapshot_bytes = cfg->snapshot_bytes, .snap_chunk_bytes = cfg->snap_chunk_bytes,
        .segment_bytes = cfg->segment_bytes, .timeout_ms = nd->timeout_ms,
        .max_cmd = nd->max_cmd + ENV_BYTES, .seed = cfg->seed, .snap_tag = SNAP_TAG_DEDUP,
        .balance_ms = cfg->balance_ms, .balance_backoff_ms = cfg->balance_backoff_ms,
        .no_lease_reads = cfg->no_lease_reads != 0 };
    mraft_tcp_ops(nd->tcp, &nd->tr);
    ASSERT(nd->tr.send && nd->tr.flush && nd->tr.poll && nd->tr.wake && nd->tr.send_fwd);
    mraft_transport_t tr = { .send = node_tr_send, .flush = node_tr_flush,
                             .poll = node_tr_poll, .wake = node_tr_wake,
                             .send_fwd = node_tr_send_fwd, .peer_up = node_tr_peer_up,
                             .ctx = nd };
    if ((rc = mraft_open(&mc, &tr, &nd->n, errmsg)))
        goto fail;
    mraft_tcp_attach(nd->tcp, nd->n);
    *out = nd;
    return 0;
fail:
    mraft_tcp_free(nd->tcp);
    free(nd);
    return rc;
}

/* Adds a group: founding members m, preferred leader `preferred` (0: none). */
static int node_add(group_node_t *nd, uint32_t group, const group_members_t *m,
                    uint64_t preferred, const sm_ops_t *ops, void *ctx, group_t **out,
                    char **errmsg)
{
    *out = NULL;
    if (errmsg)
        *errmsg = NULL;
    ASSERT(!nd->started);
    bool joining = m && !m->n_voters && !m->n_learners;   /* group_node_add_joining */
    if (!m || (!joining && (!m->n_voters || !m->voters)) || (m->n_learners && !m->learners)) {
        qerr_set_msg(errmsg, "group %u: no voters", group);
        return -QERR_INVAL;
    }
    bool member = joining;
    for (size_t i = 0; i < m->n_voters; i++)
        member |= m->voters[i] == nd->id;
    for (size_t i = 0; i < m->n_learners; i++)
        member |= m->learners[i] == nd->id;
    if (!member) {
        qerr_set_msg(errmsg, "group %u: node %" PRIu64 " is not one of its %s", group,
                     nd->id, m->n_learners ? "voters or learners" : "voters");
        return -QERR_INVAL;
    }
    group_raft_t *g = xcalloc(1, sizeof(*g));
    g->impl = &raft_impl;
    g->node = nd;
    g->id = group;
    g->ops = ops;
    g->ctx = ctx;
    g->next_seq = 1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&g->mu, NULL);
    mraft_members_t mm = { .voters = m->voters, .n_voters = m->n_voters,
                           .learners = m->learners, .n_learners = m->n_learners,
                           .preferred = preferred };
    int rc = mraft_add_group_members(nd->n, group, &mm, &wrap_ops, g, errmsg);
    if (rc) {
        group_raft_free(g);
        return rc;
    }
    nd->groups = xrealloc(nd->groups, (nd->n_groups + 1) * sizeof(*nd->groups));
    nd->groups[nd->n_groups++] = g;
    *out = (group_t *)(void *)g;
    return 0;
}

int group_node_add(group_node_t *nd, uint32_t group, const uint64_t *voters, size_t n_voters,
                   const sm_ops_t *ops, void *ctx, group_t **out, char **errmsg)
{
    group_members_t m = { .voters = voters, .n_voters = n_voters };
    return node_add(nd, group, &m, 0, ops, ctx, out, errmsg);
}

int group_node_add_members(group_node_t *nd, uint32_t group, const group_members_t *m,
                           const sm_ops_t *ops, void *ctx, group_t **out, char **errmsg)
{
    uint64_t preferred = !nd->balance_off && m && m->n_voters && m->voters ? m->voters[0] : 0;
    return node_add(nd, group, m, preferred, ops, ctx, out, errmsg);
}

int group_node_add_joining(group_node_t *nd, uint32_t group, const sm_ops_t *ops, void *ctx,
                           group_t **out, char **errmsg)
{
    group_members_t m = { 0 };
    return node_add(nd, group, &m, 0, ops, ctx, out, errmsg);
}

_Static_assert((int)GROUP_ADD_LEARNER == (int)RAFT_CONF_ADD_LEARNER &&
               (int)GROUP_ADD_VOTER == (int)RAFT_CONF_ADD_VOTER &&
               (int)GROUP_PROMOTE == (int)RAFT_CONF_PROMOTE &&
               (int)GROUP_REMOVE == (int)RAFT_CONF_REMOVE, "group.h's member ops are raft.h's");

int group_change_member(group_t *gt, uint32_t op, uint64_t id, uint32_t timeout_ms,
                        uint64_t *leader)
{
    if (leader)
        *leader = 0;
    if (group_impl_of(gt) != &raft_impl)
        return -QERR_INVAL;
    group_raft_t *g = (group_raft_t *)(void *)gt;
    return mraft_change_member(g->node->n, g->id, op, id, timeout_ms, leader);
}

int group_raft_status(group_t *gt, mraft_group_status_t *st)
{
    if (group_impl_of(gt) != &raft_impl)
        return -QERR_INVAL;
    group_raft_t *g = (group_raft_t *)(void *)gt;
    return mraft_status(g->node->n, g->id, st);
}

int group_node_add_peer(group_node_t *nd, uint64_t id, const char *addr)
{
    if (!addr)
        return -QERR_INVAL;
    return mraft_tcp_add_peer(nd->tcp, id, addr);
}

int group_node_remove_peer(group_node_t *nd, uint64_t id)
{
    return mraft_tcp_remove_peer(nd->tcp, id);
}

int group_node_expect_incarnation(group_node_t *nd, uint64_t id, uint64_t inc)
{
    return mraft_tcp_expect_incarnation(nd->tcp, id, inc);
}

void group_node_transport_counters(group_node_t *nd, uint64_t *status_queries,
                                   uint64_t *refused)
{
    mraft_tcp_counters(nd->tcp, status_queries, refused);
}

int group_node_start(group_node_t *nd, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    ASSERT(!nd->started);
    int rc = mraft_start(nd->n);
    if (rc) {
        qerr_set_msg(errmsg, "group: cannot start node %" PRIu64 ": %s", nd->id, qerr_str(rc));
        return rc;
    }
    nd->started = true;
    return 0;
}

uint16_t group_node_port(const group_node_t *nd)
{
    return transport_port(mraft_tcp_transport(nd->tcp));
}

int group_node_set_preferred(group_node_t *nd, uint32_t group, uint64_t preferred)
{
    if (nd->balance_off)
        return 0;
    return mraft_set_preferred(nd->n, group, preferred);
}

int group_node_set_status(group_node_t *nd, const char *text, size_t len)
{
    return mraft_tcp_set_status(nd->tcp, text, len);
}

int group_node_set_admin(group_node_t *nd, group_admin_fn fn, void *arg)
{
    mraft_tcp_set_admin(nd->tcp, fn, arg);
    return 0;
}

int group_node_admin_answer(group_node_t *nd, uint64_t token, int32_t code, const char *text,
                            size_t len)
{
    return mraft_tcp_admin_answer(nd->tcp, token, code, text, len);
}

int group_node_peer_stats(group_node_t *nd, uint64_t id, group_peer_stats_t *out)
{
    transport_peer_stats_t st;
    int rc = mraft_tcp_peer_stats(nd->tcp, id, &st);
    if (rc)
        return rc;
    *out = (group_peer_stats_t){
        .connected = st.connected, .tls = st.tls, .bytes_in = st.bytes_in,
        .bytes_out = st.bytes_out, .msgs_in = st.msgs_in, .msgs_out = st.msgs_out,
        .dropped = st.dropped, .connects = st.connects, .reconnects = st.reconnects,
        .dial_failures = st.dial_failures, .errors = st.errors,
        .queued_bytes = st.queued_bytes, .rtt_us = st.rtt_us, .incarnation = st.incarnation,
        .refused_incarnations = st.refused_incarnations,
        .refused_now = st.refused_incarnation_now };
    return 0;
}

void group_node_close(group_node_t *nd)
{
    if (!nd)
        return;
    mraft_close(nd->n);          /* the loop stops; then the transport is ours to free */
    mraft_tcp_free(nd->tcp);
    for (size_t i = 0; i < nd->n_groups; i++)
        group_raft_free(nd->groups[i]);
    free(nd->groups);
    free(nd);
}

int group_open_raft(const group_raft_config_t *cfg, uint32_t group, const sm_ops_t *ops,
                    void *ctx, group_t **out, char **errmsg)
{
    *out = NULL;
    group_node_t *nd = NULL;
    int rc = group_node_open(cfg, &nd, errmsg);
    if (rc)
        return rc;
    uint64_t *voters = xcalloc(cfg->n_peers + 1, sizeof(*voters));
    size_t nv = 0;
    voters[nv++] = cfg->id;
    for (size_t i = 0; i < cfg->n_peers; i++)
        if (cfg->peers[i].id != cfg->id)
            voters[nv++] = cfg->peers[i].id;
    group_t *g = NULL;
    rc = group_node_add(nd, group, voters, nv, ops, ctx, &g, errmsg);
    free(voters);
    if (rc == 0)
        rc = group_node_start(nd, errmsg);
    if (rc) {
        group_node_close(nd);
        return rc;
    }
    ((group_raft_t *)(void *)g)->owns_node = true;
    *out = g;
    return 0;
}

int group_dedup_stats(group_t *gt, group_dedup_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    if (group_impl_of(gt) != &raft_impl)
        return -QERR_INVAL;
    group_raft_t *g = (group_raft_t *)(void *)gt;
    out->node_id = g->node->id;
    out->incarnation = g->node->incarnation;
    out->retry_ms = g->node->retry_ms;
    out->retries = __atomic_load_n(&g->retries, __ATOMIC_RELAXED);
    out->dup_hits = __atomic_load_n(&g->dup_hits, __ATOMIC_RELAXED);
    out->stale = __atomic_load_n(&g->stale, __ATOMIC_RELAXED);
    out->bad_envelopes = __atomic_load_n(&g->bad_env, __ATOMIC_RELAXED);
    out->evictions = __atomic_load_n(&g->evictions, __ATOMIC_RELAXED);
    out->clients = __atomic_load_n(&g->dd_clients, __ATOMIC_RELAXED);
    return 0;
}

int group_test_propose_as(group_t *gt, uint64_t node, uint64_t incarnation, uint64_t seq,
                          uint64_t low, const void *cmd, size_t len, sm_result_t *res)
{
    if (group_impl_of(gt) != &raft_impl)
        return -QERR_INVAL;
    group_raft_t *g = (group_raft_t *)(void *)gt;
    if (len > g->node->max_cmd)
        return -QERR_TOOBIG;
    uint8_t *buf = xmalloc(ENV_BYTES + len);
    envelope_t e = { .node = node, .inc = incarnation, .seq = seq, .low = low };
    env_encode(buf, &e);
    if (len)
        memcpy(buf + ENV_BYTES, cmd, len);
    int rc = mraft_propose_any(g->node->n, g->id, buf, ENV_BYTES + len, res,
                               g->node->timeout_ms, NULL);
    free(buf);
    return rc;
}
