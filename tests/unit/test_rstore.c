/* tests/unit/test_rstore.c — the shared Raft store: many groups in one WAL, replayed exactly
 * (entries with Raft's suffix rule, hard states, installed and local snapshots, dropped
 * groups), one fdatasync per batch whatever the number of groups, old segments collected
 * while idle groups' hard states are kept, torn tails and foreign records at reopen, and a
 * randomized comparison against an in-memory model across many reopens. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/err.h"
#include "cluster/rstore.h"
#include "cluster/wal.h"
#include "tests/unit/check.h"

static char base[64];
static char dir[256];
static int ndirs;

static void new_dir(void)
{
    snprintf(dir, sizeof(dir), "%s/s%d", base, ndirs++);
}

static rstore_t *open_store(const wal_options_t *o)
{
    rstore_t *s = NULL;
    char *msg = NULL;
    int rc = rstore_open(dir, o, &s, &msg);
    if (rc < 0)
        printf("# rstore_open: %s (%s)\n", qerr_str(rc), msg ? msg : "");
    free(msg);
    return s;
}

/* A Ready carrying entries [from, to] of term t (payload "g<g>i<index>t<term>"), and hs. */
typedef struct rdbuf {
    raft_ready_t rd;
    raft_entry_t e[64];
    char data[64][32];
    raft_snap_meta_t snap;
} rdbuf_t;

static void mk_ready(rdbuf_t *b, uint32_t g, uint64_t from, uint64_t to, uint64_t t,
                     uint64_t commit)
{
    memset(b, 0, sizeof(*b));
    for (uint64_t i = from; i <= to && i - from < 64; i++) {
        size_t k = (size_t)(i - from);
        int n = snprintf(b->data[k], sizeof(b->data[k]), "g%ui%llut%llu", g,
                         (unsigned long long)i, (unsigned long long)t);
        b->e[k] = (raft_entry_t){ .term = t, .index = i, .type = RAFT_ENTRY_NORMAL,
                                  .len = (uint32_t)n, .data = (const uint8_t *)b->data[k] };
    }
    b->rd.entries = from <= to ? b->e : NULL;
    b->rd.n_entries = from <= to ? (size_t)(to - from + 1) : 0;
    b->rd.hs_changed = true;
    b->rd.hs = (raft_hard_state_t){ .term = t, .vote = g, .commit = commit };
}

static int entry_is(const raft_entry_t *e, uint32_t g, uint64_t i, uint64_t t)
{
    char want[32];
    int n = snprintf(want, sizeof(want), "g%ui%llut%llu", g, (unsigned long long)i,
                     (unsigned long long)t);
    return e->index == i && e->term == t && e->len == (uint32_t)n &&
           memcmp(e->data, want, (size_t)n) == 0;
}

TEST(test_groups_replay_with_suffix_rule)
{
    new_dir();
    rstore_t *s = open_store(NULL);
    CHECK(s);
    rdbuf_t b;
    for (uint32_t g = 1; g <= 3; g++) {
        mk_ready(&b, g, 1, 5, 1, 2);
        CHECK_EQ(rstore_save(s, g, &b.rd), 0);
    }
    mk_ready(&b, 2, 3, 4, 2, 3);   /* group 2: a new leader overwrites 3..5 with 3..4 */
    CHECK_EQ(rstore_save(s, 2, &b.rd), 0);
    CHECK_EQ(rstore_sync(s), 0);
    rstore_close(s);
    CHECK((s = open_store(NULL)) != NULL);
    uint32_t ids[8];
    CHECK_EQ(rstore_groups(s, ids, 8), 3);
    CHECK(ids[0] == 1 && ids[1] == 2 && ids[2] == 3);
    raft_boot_t boot;
    CHECK_EQ(rstore_boot(s, 1, &boot), 0);
    CHECK_EQ(boot.n_entries, 5);
    CHECK(entry_is(&boot.entries[4], 1, 5, 1));
    CHECK_EQ(boot.hs.commit, 2);
    CHECK_EQ(rstore_boot(s, 2, &boot), 0);
    CHECK_EQ(boot.n_entries, 4);
    CHECK(entry_is(&boot.entries[1], 2, 2, 1));
    CHECK(entry_is(&boot.entries[2], 2, 3, 2));
    CHECK(entry_is(&boot.entries[3], 2, 4, 2));
    CHECK(boot.hs.term == 2 && boot.hs.vote == 2 && boot.hs.commit == 3);
    CHECK_EQ(rstore_boot(s, 9, &boot), 0);   /* unknown group: empty */
    CHECK_EQ(boot.n_entries, 0);
    CHECK_EQ(boot.hs.term, 0);
    rstore_close(s);
}

TEST(test_one_sync_per_batch_of_groups)
{
    new_dir();
    rstore_t *s = open_store(NULL);
    CHECK(s);
    rstore_stats_t a, z;
    rdbuf_t b;
    mk_ready(&b, 1000, 1, 1, 1, 0);   /* the first append creates the segment */
    CHECK_EQ(rstore_save(s, 1000, &b.rd), 0);
    CHECK_EQ(rstore_sync(s), 0);
    rstore_get_stats(s, &a);
    for (uint32_t g = 1; g <= 100; g++) {
        mk_ready(&b, g, 1, 3, 1, 1);
        CHECK_EQ(rstore_save(s, g, &b.rd), 0);
    }
    CHECK_EQ(rstore_sync(s), 0);
    rstore_get_stats(s, &z);
    CHECK_EQ(z.wal.syncs - a.wal.syncs, 1);
    CHECK_EQ(z.groups, 101);
    CHECK_EQ(z.live_entries, 301);
    rstore_close(s);
}

TEST(test_snapshots_install_and_compact)
{
    new_dir();
    rstore_t *s = open_store(NULL);
    CHECK(s);
    rdbuf_t b;
    mk_ready(&b, 1, 1, 10, 1, 10);
    CHECK_EQ(rstore_save(s, 1, &b.rd), 0);
    raft_snap_meta_t m = { .index = 6, .term = 1 };
    m.conf.n = 1;
    m.conf.s[0] = (raft_server_t){ 1, RAFT_VOTER };
    CHECK_EQ(rstore_compact(s, 1, &m), 0);           /* local snapshot: drop 1..6 */
    mk_ready(&b, 2, 1, 4, 1, 4);
    CHECK_EQ(rstore_save(s, 2, &b.rd), 0);
    memset(&b, 0, sizeof(b));
    b.snap = (raft_snap_meta_t){ .index = 20, .term = 3, .conf = m.conf };
    b.rd.snapshot = &b.snap;                         /* installed: replaces group 2's log */
    CHECK_EQ(rstore_save(s, 2, &b.rd), 0);
    mk_ready(&b, 2, 21, 22, 3, 22);
    CHECK_EQ(rstore_save(s, 2, &b.rd), 0);
    CHECK_EQ(rstore_sync(s), 0);
    rstore_close(s);
    CHECK((s = open_store(NULL)) != NULL);
    raft_boot_t boot;
    rstore_boot(s, 1, &boot);
    CHECK_EQ(boot.snap.index, 6);
    CHECK_EQ(boot.n_entries, 4);
    CHECK(entry_is(&boot.entries[0], 1, 7, 1));
    CHECK(boot.snap.conf.n == 1 && boot.snap.conf.s[0].id == 1);
    rstore_boot(s, 2, &boot);
    CHECK(boot.snap.index == 20 && boot.snap.term == 3);
    CHECK_EQ(boot.n_entries, 2);
    CHECK(entry_is(&boot.entries[0], 2, 21, 3));
    rstore_close(s);
}

TEST(test_gc_keeps_idle_groups_and_reports_holders)
{
    new_dir();
    wal_options_t o = { .segment_bytes = 4096 };
    rstore_t *s = open_store(&o);
    CHECK(s);
    rdbuf_t b;
    mk_ready(&b, 7, 1, 1, 5, 1);            /* an idle group: one entry, then compacted */
    CHECK_EQ(rstore_save(s, 7, &b.rd), 0);
    raft_snap_meta_t m7 = { .index = 1, .term = 5 };
    m7.conf.n = 1;
    m7.conf.s[0] = (raft_server_t){ 7, RAFT_VOTER };
    CHECK_EQ(rstore_compact(s, 7, &m7), 0);
    mk_ready(&b, 8, 1, 2, 1, 0);            /* group 8 keeps old, uncompacted entries */
    CHECK_EQ(rstore_save(s, 8, &b.rd), 0);
    uint64_t idx = 0;
    for (int round = 0; round < 60; round++) {  /* group 1 writes and compacts a lot */
        mk_ready(&b, 1, idx + 1, idx + 20, 1, idx + 20);
        CHECK_EQ(rstore_save(s, 1, &b.rd), 0);
        idx += 20;
        raft_snap_meta_t m = { .index = idx, .term = 1, .conf = m7.conf };
        CHECK_EQ(rstore_compact(s, 1, &m), 0);
        CHECK_EQ(rstore_sync(s), 0);
    }
    rstore_stats_t before, after;
    rstore_get_stats(s, &before);
    uint32_t hold[4];
    size_t nhold = 0;
    CHECK_EQ(rstore_gc(s, hold, 4, &nhold), 0);
    CHECK_EQ(nhold, 1);
    CHECK_EQ(hold[0], 8);                    /* its entries hold the oldest segment */
    rstore_get_stats(s, &after);
    CHECK_EQ(after.wal.segments, before.wal.segments);   /* nothing could go yet */
    raft_snap_meta_t m8 = { .index = 2, .term = 1, .conf = m7.conf };
    CHECK_EQ(rstore_compact(s, 8, &m8), 0);
    CHECK_EQ(rstore_sync(s), 0);
    CHECK_EQ(rstore_gc(s, hold, 4, &nhold), 0);
    CHECK_EQ(nhold, 0);
    rstore_get_stats(s, &after);
    CHECK(after.wal.segments < before.wal.segments);
    CHECK(after.rewrites >= 2);              /* group 7's hs and snapshot were rewritten */
    uint64_t segs = after.wal.segments, rew = after.rewrites;
    CHECK_EQ(rstore_gc(s, hold, 4, &nhold), 0);   /* idle: a second gc writes nothing */
    rstore_get_stats(s, &after);
    CHECK(after.wal.segments == segs && after.rewrites == rew);
    rstore_close(s);
    CHECK((s = open_store(&o)) != NULL);
    raft_boot_t boot;
    rstore_boot(s, 7, &boot);
    CHECK(boot.hs.term == 5 && boot.hs.vote == 7 && boot.snap.index == 1);
    rstore_boot(s, 1, &boot);
    CHECK_EQ(boot.snap.index, idx);
    CHECK_EQ(boot.hs.commit, idx);
    rstore_close(s);
}

TEST(test_drop_group)
{
    new_dir();
    rstore_t *s = open_store(NULL);
    CHECK(s);
    rdbuf_t b;
    mk_ready(&b, 1, 1, 2, 1, 1);
    CHECK_EQ(rstore_save(s, 1, &b.rd), 0);
    mk_ready(&b, 2, 1, 2, 1, 1);
    CHECK_EQ(rstore_save(s, 2, &b.rd), 0);
    CHECK_EQ(rstore_drop(s, 1), 0);
    CHECK_EQ(rstore_sync(s), 0);
    rstore_close(s);
    CHECK((s = open_store(NULL)) != NULL);
    uint32_t ids[4];
    CHECK_EQ(rstore_groups(s, ids, 4), 1);
    CHECK_EQ(ids[0], 2);
    rstore_close(s);
}

TEST(test_torn_tail_and_foreign_records)
{
    new_dir();
    rstore_t *s = open_store(NULL);
    CHECK(s);
    rdbuf_t b;
    mk_ready(&b, 1, 1, 3, 1, 3);
    CHECK_EQ(rstore_save(s, 1, &b.rd), 0);
    CHECK_EQ(rstore_sync(s), 0);
    rstore_close(s);
    /* a torn write at the end of the newest segment is cut off */
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "f=$(ls %s/*.seg 2>/dev/null | tail -n1); "
             "[ -n \"$f\" ] && printf 'garbage-garbage-garbage' >> \"$f\"", dir);
    CHECK_EQ(system(cmd), 0);
    CHECK((s = open_store(NULL)) != NULL);
    raft_boot_t boot;
    rstore_boot(s, 1, &boot);
    CHECK_EQ(boot.n_entries, 3);
    rstore_close(s);
    /* a well-formed WAL record that is no store record is refused with a message */
    wal_t *w = NULL;
    CHECK_EQ(wal_open(dir, NULL, NULL, NULL, &w, NULL), 0);
    uint8_t bad[6] = { RSTORE_VERSION, 99, 1, 0, 0, 0 };
    CHECK_EQ(wal_append(w, wal_last_index(w) + 1, 0, bad, sizeof(bad)), 0);
    CHECK_EQ(wal_sync(w), 0);
    wal_close(w);
    char *msg = NULL;
    CHECK_EQ(rstore_open(dir, NULL, &s, &msg), -QERR_CORRUPT);
    CHECK(msg && strstr(msg, dir) && strstr(msg, "kind 99"));
    free(msg);
    CHECK(s == NULL);
    /* entries that start past the snapshot, with no record covering the gap: refused */
    new_dir();
    CHECK_EQ(wal_open(dir, NULL, NULL, NULL, &w, NULL), 0);
    uint8_t ent[23] = { RSTORE_VERSION, 1, 4, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
                        0, 0, 0, 0, RAFT_ENTRY_NORMAL };   /* group 4, index 9, term 1 */
    CHECK_EQ(wal_append(w, 1, 0, ent, sizeof(ent)), 0);
    CHECK_EQ(wal_sync(w), 0);
    wal_close(w);
    msg = NULL;
    CHECK_EQ(rstore_open(dir, NULL, &s, &msg), -QERR_CORRUPT);
    CHECK(msg && strstr(msg, "group 4"));
    free(msg);
}

/* Random saves, compactions, drops, syncs and reopens against a model of what is durable. */
typedef struct model {
    int present;
    uint64_t first, last, snap, term, commit;   /* entries first..last of term-per-index */
    uint64_t t[512];
} model_t;

static unsigned random_seed;

TEST(test_random_against_model)
{
    new_dir();
    wal_options_t o = { .segment_bytes = 8192 };
    rstore_t *s = open_store(&o);
    CHECK(s);
    model_t synced[5], cur[5];
    memset(synced, 0, sizeof(synced));
    memset(cur, 0, sizeof(cur));
    unsigned seed = random_seed;
    rdbuf_t b;
    raft_conf_t conf = { .n = 1, .s = { { 1, RAFT_VOTER } } };
    for (int step = 0; step < 3000; step++) {
        uint32_t g = (uint32_t)(rand_r(&seed) % 4 + 1);
        model_t *m = &cur[g];
        int op = rand_r(&seed) % 100;
        if (op < 60 && m->last < 400) {            /* append, maybe overwriting a suffix */
            uint64_t from = m->last + 1;
            if (m->present && m->last > m->snap && rand_r(&seed) % 4 == 0)
                from = m->last - (uint64_t)(rand_r(&seed) % (m->last - m->snap));
            if (from <= m->snap)
                from = m->snap + 1;
            uint64_t n = (uint64_t)(rand_r(&seed) % 5 + 1), t = m->term + (op < 10);
            mk_ready(&b, g, from, from + n - 1, t, from - 1);
            CHECK_EQ(rstore_save(s, g, &b.rd), 0);
            for (uint64_t i = from; i < from + n; i++)
                m->t[i] = t;
            if (!m->present || m->first > from || m->last < m->snap)
                m->first = from;
            m->present = 1;
            m->last = from + n - 1;
            m->term = t;
            m->commit = from - 1;
        } else if (op < 75 && m->present && m->last > m->snap) {   /* compact */
            uint64_t upto = m->snap + 1 + (uint64_t)(rand_r(&seed) % (m->last - m->snap));
            raft_snap_meta_t meta = { .index = upto, .term = m->t[upto], .conf = conf };
            CHECK_EQ(rstore_compact(s, g, &meta), 0);
            m->snap = upto;
            m->first = upto + 1;
        } else if (op < 77 && m->present) {        /* drop */
            CHECK_EQ(rstore_drop(s, g), 0);
            memset(m, 0, sizeof(*m));
        } else if (op < 92) {
            CHECK_EQ(rstore_sync(s), 0);
            memcpy(synced, cur, sizeof(cur));
        } else if (op < 96) {
            uint32_t hold[4];
            size_t nh;
            CHECK_EQ(rstore_sync(s), 0);
            memcpy(synced, cur, sizeof(cur));
            CHECK_EQ(rstore_gc(s, hold, 4, &nh), 0);
        } else {                                   /* sync, reopen, compare */
            CHECK_EQ(rstore_sync(s), 0);
            memcpy(synced, cur, sizeof(cur));
            rstore_close(s);
            CHECK((s = open_store(&o)) != NULL);
            for (uint32_t k = 1; k <= 4; k++) {
                raft_boot_t boot;
                rstore_boot(s, k, &boot);
                const model_t *x = &synced[k];
                if (!x->present) {
                    CHECK_EQ(boot.n_entries, 0);
                    continue;
                }
                CHECK_EQ(boot.snap.index, x->snap);
                CHECK_EQ(boot.hs.term, x->term);
                uint64_t want = x->last > x->snap ? x->last - x->snap : 0;
                CHECK_EQ(boot.n_entries, want);
                for (size_t i = 0; i < boot.n_entries; i++)
                    CHECK(entry_is(&boot.entries[i], k, x->snap + 1 + i,
                                   x->t[x->snap + 1 + i]));
                rstore_boot_done(s, k);
            }
        }
    }
    rstore_close(s);
}

int main(void)
{
    snprintf(base, sizeof(base), "/tmp/qfs-rstore.XXXXXX");
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_groups_replay_with_suffix_rule);
    RUN(test_one_sync_per_batch_of_groups);
    RUN(test_snapshots_install_and_compact);
    RUN(test_gc_keeps_idle_groups_and_reports_holders);
    RUN(test_drop_group);
    RUN(test_torn_tail_and_foreign_records);
    for (random_seed = 1; random_seed <= 8; random_seed++)
        RUN(test_random_against_model);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", base); if (getenv("KEEP")) cmd[0] = 0;
    if (system(cmd) != 0)
        printf("# could not remove %s\n", base);
    return CHECK_DONE();
}
