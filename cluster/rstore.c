/* cluster/rstore.c — every group's Raft state in one WAL (see rstore.h). The WAL's record
 * index is a store-wide sequence number (term always 0); each record's payload names its
 * group. Replay applies the same rules as the live calls, so the in-memory view after open
 * equals the one before a clean close. Per group the store remembers, for collecting old
 * segments, the sequence number of its newest hard state and snapshot record and of each
 * live entry. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>
#include "cluster/assert.h"
#include "cluster/bytes.h"
#include "cluster/err.h"
#include "cluster/rstore.h"

enum { REC_ENTRY = 1, REC_HS = 2, REC_SNAP = 3, REC_DROP = 4 };
#define REC_HEAD 6                       /* u8 version, u8 kind, u32 group */
#define ENTRY_HEAD (REC_HEAD + 17)       /* + u64 index, u64 term, u8 type */
#define HS_LEN (REC_HEAD + 24)
#define SNAP_HEAD (REC_HEAD + 17)        /* + u8 install, u64 index, u64 term, then conf */

typedef struct ent {
    uint64_t index, term, seq;
    uint32_t type, len;
    uint8_t *data;                       /* payload copy until rstore_boot_done; else NULL */
} ent_t;

typedef struct grp {
    uint32_t id;
    UT_hash_handle hh;
    raft_hard_state_t hs;
    uint64_t hs_seq;                     /* newest HS record; 0 = none */
    raft_snap_meta_t snap;
    uint64_t snap_seq;                   /* newest SNAP record; 0 = none */
    ent_t *ents;                         /* live entries are ents[head..n), consecutive */
    size_t head, n, cap;
    raft_entry_t *boot;                  /* rstore_boot's view of the entries */
} grp_t;

struct rstore {
    wal_t *wal;
    grp_t *groups;
    uint64_t next_seq;
    uint64_t rewrites;
    int failed;                          /* an append or sync failed: reopen to recover */
    uint8_t *buf;                        /* record encoding buffer */
    size_t bufcap;
    char why[160];                       /* replay: what was wrong with a record */
};

/* ---- groups ----------------------------------------------------------------------------- */

static grp_t *grp_find(const rstore_t *s, uint32_t g)
{
    grp_t *x;
    HASH_FIND(hh, s->groups, &g, sizeof(g), x);
    return x;
}

static grp_t *grp_get(rstore_t *s, uint32_t g)
{
    grp_t *x = grp_find(s, g);
    if (!x) {
        x = xcalloc(1, sizeof(*x));
        x->id = g;
        HASH_ADD(hh, s->groups, id, sizeof(x->id), x);
    }
    return x;
}

static void drop_boot(grp_t *x)
{
    free(x->boot);
    x->boot = NULL;
}

static void grp_free(rstore_t *s, grp_t *x)
{
    HASH_DELETE(hh, s->groups, x);
    for (size_t i = x->head; i < x->n; i++)
        free(x->ents[i].data);
    free(x->ents);
    drop_boot(x);
    free(x);
}

/* Drops live entries with index >= from (Raft's suffix rule). */
static void ents_truncate(grp_t *x, uint64_t from)
{
    while (x->n > x->head && x->ents[x->n - 1].index >= from)
        free(x->ents[--x->n].data);
}

/* Drops live entries with index <= upto (covered by a snapshot). */
static void ents_drop_prefix(grp_t *x, uint64_t upto)
{
    while (x->head < x->n && x->ents[x->head].index <= upto)
        free(x->ents[x->head++].data);
    if (x->head == x->n)
        x->head = x->n = 0;
    else if (x->head > x->n / 2) {
        memmove(x->ents, x->ents + x->head, (x->n - x->head) * sizeof(*x->ents));
        x->n -= x->head;
        x->head = 0;
    }
}

/* Adds an entry after applying the suffix rule. Live (replaying 0), a gap after the live
 * entries or the snapshot is a broken Ready contract: -QERR_CORRUPT. While replaying, a gap
 * is expected where rstore_gc collected records that a later snapshot record covers: the
 * entries before it are dropped, and replay_check() verifies at the end that the snapshot
 * came. */
static int ents_add(grp_t *x, const raft_entry_t *e, uint64_t seq, int replaying)
{
    ents_truncate(x, e->index);
    int gap = (x->n > x->head && x->ents[x->n - 1].index + 1 != e->index) ||
              (x->n == x->head && x->snap.index && e->index > x->snap.index + 1);
    if (gap && !replaying)
        return -QERR_CORRUPT;
    if (gap)
        ents_truncate(x, 0);
    if (x->n == x->cap) {
        x->cap = x->cap ? 2 * x->cap : 64;
        x->ents = xrealloc(x->ents, x->cap * sizeof(*x->ents));
    }
    ent_t *n = &x->ents[x->n++];
    *n = (ent_t){ .index = e->index, .term = e->term, .seq = seq, .type = e->type,
                  .len = e->len };
    if (replaying && e->len) {   /* payloads are kept for rstore_boot */
        n->data = xmalloc(e->len);
        memcpy(n->data, e->data, e->len);
    }
    return 0;
}

static void set_snap(grp_t *x, const raft_snap_meta_t *m, int install, uint64_t seq)
{
    if (install)
        ents_truncate(x, 0);            /* an installed snapshot replaces the whole log */
    else
        ents_drop_prefix(x, m->index);
    if (m->index >= x->snap.index)
        x->snap = *m;
    x->snap_seq = seq;
}

/* ---- records ---------------------------------------------------------------------------- */

static uint8_t *rec_buf(rstore_t *s, size_t len)
{
    if (len > s->bufcap) {
        s->bufcap = len < 4096 ? 4096 : len;
        s->buf = xrealloc(s->buf, s->bufcap);
    }
    return s->buf;
}

static void rec_head(uint8_t *p, uint8_t kind, uint32_t g)
{
    p[0] = RSTORE_VERSION;
    p[1] = kind;
    le_put32(p + 2, g);
}

static int append(rstore_t *s, const uint8_t *p, size_t len)
{
    if (s->failed)
        return -QERR_FAILED;
    int rc = wal_append(s->wal, s->next_seq, 0, p, len);
    if (rc < 0) {
        s->failed = 1;
        return rc;
    }
    s->next_seq++;
    return 0;
}

static int put_entry(rstore_t *s, grp_t *x, const raft_entry_t *e)
{
    uint8_t *p = rec_buf(s, ENTRY_HEAD + e->len);
    rec_head(p, REC_ENTRY, x->id);
    le_put64(p + 6, e->index);
    le_put64(p + 14, e->term);
    p[22] = (uint8_t)e->type;
    if (e->len)
        memcpy(p + ENTRY_HEAD, e->data, e->len);
    uint64_t seq = s->next_seq;
    int rc = append(s, p, ENTRY_HEAD + e->len);
    if (rc == 0 && (rc = ents_add(x, e, seq, 0)) < 0)
        s->failed = 1;   /* the caller broke the Ready contract: refuse to go on */
    return rc;
}

static int put_hs(rstore_t *s, grp_t *x, const raft_hard_state_t *hs)
{
    uint8_t *p = rec_buf(s, HS_LEN);
    rec_head(p, REC_HS, x->id);
    le_put64(p + 6, hs->term);
    le_put64(p + 14, hs->vote);
    le_put64(p + 22, hs->commit);
    uint64_t seq = s->next_seq;
    int rc = append(s, p, HS_LEN);
    if (rc == 0) {
        x->hs = *hs;
        x->hs_seq = seq;
    }
    return rc;
}

static int put_snap(rstore_t *s, grp_t *x, const raft_snap_meta_t *m, int install)
{
    uint8_t *p = rec_buf(s, SNAP_HEAD + RAFT_CONF_MAX_BYTES);
    rec_head(p, REC_SNAP, x->id);
    p[6] = (uint8_t)install;
    le_put64(p + 7, m->index);
    le_put64(p + 15, m->term);
    size_t cl = raft_conf_encode(&m->conf, p + SNAP_HEAD);
    uint64_t seq = s->next_seq;
    int rc = append(s, p, SNAP_HEAD + cl);
    if (rc == 0)
        set_snap(x, m, install, seq);
    return rc;
}

static int replay_one(rstore_t *s, uint64_t seq, const uint8_t *p, size_t len);

/* Replays one record (wal_open's callback); on error s->why says which and why. */
static int replay(void *arg, uint64_t seq, uint64_t term, const void *payload, size_t len)
{
    rstore_t *s = arg;
    (void)term;
    int rc = replay_one(s, seq, payload, len);
    if (rc < 0)
        snprintf(s->why, sizeof(s->why), "record %llu (%zu bytes, kind %d, group %u): %s",
                 (unsigned long long)seq, len, len > 1 ? ((const uint8_t *)payload)[1] : -1,
                 len >= REC_HEAD ? le_get32((const uint8_t *)payload + 2) : 0,
                 rc == -QERR_FORMAT ? "unknown store version" : "not a valid store record");
    return rc;
}

static int replay_one(rstore_t *s, uint64_t seq, const uint8_t *p, size_t len)
{
    if (len < REC_HEAD)
        return -QERR_CORRUPT;
    if (p[0] != RSTORE_VERSION)
        return -QERR_FORMAT;
    uint32_t g = le_get32(p + 2);
    s->next_seq = seq + 1;
    switch (p[1]) {
    case REC_ENTRY: {
        if (len < ENTRY_HEAD || len - ENTRY_HEAD > UINT32_MAX)
            return -QERR_CORRUPT;
        raft_entry_t e = { .index = le_get64(p + 6), .term = le_get64(p + 14), .type = p[22],
                           .len = (uint32_t)(len - ENTRY_HEAD), .data = p + ENTRY_HEAD };
        if (e.index == 0 || e.type < RAFT_ENTRY_NORMAL || e.type > RAFT_ENTRY_CONF)
            return -QERR_CORRUPT;
        return ents_add(grp_get(s, g), &e, seq, 1);   /* gaps checked by replay_check */
    }
    case REC_HS: {
        if (len != HS_LEN)
            return -QERR_CORRUPT;
        grp_t *x = grp_get(s, g);
        x->hs = (raft_hard_state_t){ le_get64(p + 6), le_get64(p + 14), le_get64(p + 22) };
        x->hs_seq = seq;
        return 0;
    }
    case REC_SNAP: {
        raft_snap_meta_t m = { .index = le_get64(p + 7), .term = le_get64(p + 15) };
        if (len < SNAP_HEAD || p[6] > 1 ||
            raft_conf_decode(p + SNAP_HEAD, len - SNAP_HEAD, &m.conf) < 0)
            return -QERR_CORRUPT;
        set_snap(grp_get(s, g), &m, p[6], seq);
        return 0;
    }
    case REC_DROP: {
        grp_t *x = grp_find(s, g);
        if (x)
            grp_free(s, x);
        return 0;
    }
    default:
        return -QERR_CORRUPT;
    }
}

/* After replay: every group's live entries must follow its snapshot without a gap (a gap
 * left by a missing snapshot record means records were lost). 0 or -QERR_CORRUPT. */
static int replay_check(rstore_t *s)
{
    for (const grp_t *x = s->groups; x; x = x->hh.next)
        if (x->n > x->head && x->ents[x->head].index > x->snap.index + 1) {
            snprintf(s->why, sizeof(s->why), "group %u: entries start at %llu but its "
                     "snapshot covers only up to %llu", x->id,
                     (unsigned long long)x->ents[x->head].index,
                     (unsigned long long)x->snap.index);
            return -QERR_CORRUPT;
        }
    return 0;
}

/* ---- API -------------------------------------------------------------------------------- */

void rstore_close(rstore_t *s)
{
    if (!s)
        return;
    grp_t *x, *tmp;
    HASH_ITER(hh, s->groups, x, tmp)
        grp_free(s, x);
    wal_close(s->wal);
    free(s->buf);
    free(s);
}

int rstore_open(const char *dir, const wal_options_t *opt, rstore_t **out, char **errmsg)
{
    *out = NULL;
    rstore_t *s = xcalloc(1, sizeof(*s));
    s->next_seq = 1;
    int rc = wal_open(dir, opt, replay, s, &s->wal, errmsg);
    if (rc == 0)
        rc = replay_check(s);
    if (rc < 0) {
        if (s->why[0] && errmsg) {   /* replace the WAL's message: say what was wrong */
            free(*errmsg);
            *errmsg = NULL;
            qerr_set_msg(errmsg, "raft store %s: %s", dir, s->why);
        }
        rstore_close(s);
        return rc;
    }
    if (wal_last_index(s->wal))
        s->next_seq = wal_last_index(s->wal) + 1;
    *out = s;
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

size_t rstore_groups(const rstore_t *s, uint32_t *ids, size_t max)
{
    size_t n = HASH_COUNT(s->groups), k = 0;
    uint32_t *all = xmalloc(n * sizeof(*all));
    for (const grp_t *x = s->groups; x; x = x->hh.next)
        all[k++] = x->id;
    qsort(all, n, sizeof(*all), cmp_u32);
    memcpy(ids, all, (n < max ? n : max) * sizeof(*ids));
    free(all);
    return n;
}

int rstore_boot(rstore_t *s, uint32_t g, raft_boot_t *b)
{
    memset(b, 0, sizeof(*b));
    grp_t *x = grp_find(s, g);
    if (!x)
        return 0;
    b->hs = x->hs;
    b->snap = x->snap;
    drop_boot(x);
    size_t n = x->n - x->head;
    x->boot = xcalloc(n ? n : 1, sizeof(*x->boot));
    for (size_t i = 0; i < n; i++) {
        const ent_t *e = &x->ents[x->head + i];
        ASSERT(e->data || e->len == 0);   /* rstore_boot_done not called yet */
        x->boot[i] = (raft_entry_t){ .index = e->index, .term = e->term, .type = e->type,
                                     .len = e->len, .data = e->data };
    }
    b->entries = x->boot;
    b->n_entries = n;
    return 0;
}

void rstore_boot_done(rstore_t *s, uint32_t g)
{
    grp_t *x = grp_find(s, g);
    if (!x)
        return;
    drop_boot(x);
    for (size_t i = x->head; i < x->n; i++) {
        free(x->ents[i].data);
        x->ents[i].data = NULL;
    }
}

int rstore_save(rstore_t *s, uint32_t g, const raft_ready_t *rd)
{
    grp_t *x = grp_get(s, g);
    drop_boot(x);
    int rc = 0;
    if (rd->snapshot)
        rc = put_snap(s, x, rd->snapshot, 1);
    for (size_t i = 0; rc == 0 && i < rd->n_entries; i++)
        rc = put_entry(s, x, &rd->entries[i]);
    if (rc == 0 && rd->hs_changed)
        rc = put_hs(s, x, &rd->hs);
    return rc;
}

int rstore_compact(rstore_t *s, uint32_t g, const raft_snap_meta_t *meta)
{
    grp_t *x = grp_get(s, g);
    drop_boot(x);
    return put_snap(s, x, meta, 0);
}

int rstore_drop(rstore_t *s, uint32_t g)
{
    uint8_t *p = rec_buf(s, REC_HEAD);
    rec_head(p, REC_DROP, g);
    int rc = append(s, p, REC_HEAD);
    grp_t *x = grp_find(s, g);
    if (rc == 0 && x)
        grp_free(s, x);
    return rc;
}

int rstore_sync(rstore_t *s)
{
    if (s->failed)
        return -QERR_FAILED;
    int rc = wal_sync(s->wal);
    if (rc < 0)
        s->failed = 1;
    return rc;
}

typedef struct holder {
    uint64_t seq;
    uint32_t id;
} holder_t;

static int cmp_holder(const void *a, const void *b)
{
    const holder_t *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq ? 1 : cmp_u32(&x->id, &y->id);
}

int rstore_gc(rstore_t *s, uint32_t *blocking, size_t max, size_t *nblocking)
{
    *nblocking = 0;
    if (s->failed)
        return -QERR_FAILED;
    /* Segments before `low` can go: low is the oldest record a live entry needs, but never
     * past the active segment (only whole older segments are ever deleted). Hard states and
     * snapshot metadata below it are written again first, so only entries hold the log
     * back, and a gc with nothing to delete writes nothing. */
    uint64_t low = wal_active_first_index(s->wal);
    size_t nh = 0, k = 0;
    for (const grp_t *x = s->groups; x; x = x->hh.next)
        if (x->n > x->head) {
            nh++;
            if (x->ents[x->head].seq < low)
                low = x->ents[x->head].seq;
        }
    int rc = 0;
    for (grp_t *x = s->groups; x && rc == 0; x = x->hh.next) {
        if (x->hs_seq && x->hs_seq < low) {
            raft_hard_state_t hs = x->hs;
            rc = put_hs(s, x, &hs);
            s->rewrites++;
        }
        if (rc == 0 && x->snap_seq && x->snap_seq < low) {
            raft_snap_meta_t m = x->snap;
            rc = put_snap(s, x, &m, 0);
            s->rewrites++;
        }
    }
    /* Everything saved so far (the compaction records that make old entries dead, and the
     * copies just written) is durable before any segment goes. wal_truncate_prefix would
     * sync too; the store does not rely on that. */
    if (rc == 0)
        rc = rstore_sync(s);
    if (rc == 0 && low > 1)
        rc = wal_truncate_prefix(s->wal, low - 1);
    if (rc < 0) {
        s->failed = 1;
        return rc;
    }
    /* Report the groups with live entries, oldest first: snapshotting the first ones lets
     * the next gc delete the most. */
    holder_t *h = xcalloc(nh ? nh : 1, sizeof(*h));
    for (const grp_t *x = s->groups; x; x = x->hh.next)
        if (x->n > x->head)
            h[k++] = (holder_t){ x->ents[x->head].seq, x->id };
    qsort(h, nh, sizeof(*h), cmp_holder);
    for (size_t i = 0; i < nh && i < max; i++)
        blocking[i] = h[i].id;
    *nblocking = nh;
    free(h);
    return 0;
}

void rstore_get_stats(const rstore_t *s, rstore_stats_t *st)
{
    memset(st, 0, sizeof(*st));
    wal_get_stats(s->wal, &st->wal);
    st->groups = HASH_COUNT(s->groups);
    for (const grp_t *x = s->groups; x; x = x->hh.next)
        st->live_entries += x->n - x->head;
    st->rewrites = s->rewrites;
}
