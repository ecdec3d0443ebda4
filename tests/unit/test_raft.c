/* tests/unit/test_raft.c — scenario tests of the Raft core (cluster/raft.h) on a tiny
 * deterministic in-process harness: per node a durable store it restarts from, a state
 * machine (the concatenation of applied commands), and a FIFO network with cuttable links
 * and a drop filter. Every Ready is checked for the persistence contract, State Machine
 * Safety (committed entries agree across nodes) and Election Safety (one leader a term). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/err.h"
#include "cluster/raft.h"
#include "tests/unit/check.h"

#define MAXN 6
#define MAXIDX 8192
#define MAXTERM 4096

typedef struct tnode {
    uint64_t id;
    raft_t *r;
    bool up;
    raft_config_t cfg;
    /* durable store */
    raft_hard_state_t hs;
    raft_snap_meta_t snap;
    uint8_t *snapdata;
    size_t snaplen;
    raft_entry_t *ents;       /* each entry's data is its own malloc */
    size_t n, cap;
    uint8_t *rx;              /* snapshot being received */
    size_t rxlen;
    /* state machine: concatenation of applied NORMAL payloads */
    uint8_t *sm;
    size_t smlen;
    uint64_t sm_applied;
    /* finished reads */
    raft_read_state_t rs[64];
    int nrs;
} tnode_t;

struct tcluster;
typedef bool (*filter_fn)(struct tcluster *c, const raft_msg_t *m);

typedef struct tcluster {
    int n;
    tnode_t nd[MAXN + 1];
    raft_msg_t *q;
    size_t qhead, qn, qcap;
    bool cut[MAXN + 1][MAXN + 1];
    filter_fn filter;
    uint64_t commit_term[MAXIDX];
    uint64_t leader_of_term[MAXTERM];
    int violation;
    char why[256];
    int delivered[RAFT_MSG__COUNT];
    int rejects[MAXN + 1];    /* APPEND_RESP rejections sent by each node */
    uint64_t compact_every;   /* >0: a node snapshots once this many entries are applied */
    bool crash_after_send[MAXN + 1]; /* send rd.msgs, then crash before persisting */
    int bad_timeout_now;      /* TIMEOUT_NOW delivered to a node with a shorter log */
} tcluster_t;

static void violation(tcluster_t *c, const char *fmt, ...)
{
    if (c->violation++)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof c->why, fmt, ap);
    va_end(ap);
    printf("# violation: %s\n", c->why);
}

/* ---- the node's storage, as a real caller would keep it --------------------------------- */

static int snap_read(void *ctx, uint64_t index, uint64_t off, void *buf, size_t cap, size_t *got)
{
    tnode_t *nd = ctx;
    if (index != nd->snap.index)
        return -QERR_NOTFOUND;
    if (off > nd->snaplen)
        return -QERR_INVAL;
    size_t n = nd->snaplen - off < cap ? nd->snaplen - off : cap;
    memcpy(buf, nd->snapdata + off, n);
    *got = n;
    return 0;
}

static void store_drop_before(tnode_t *nd, uint64_t first)
{
    size_t k = 0;
    for (size_t i = 0; i < nd->n; i++) {
        if (nd->ents[i].index < first)
            free((void *)nd->ents[i].data);
        else
            nd->ents[k++] = nd->ents[i];
    }
    nd->n = k;
}

static void store_truncate(tnode_t *nd, uint64_t from)
{
    while (nd->n && nd->ents[nd->n - 1].index >= from)
        free((void *)nd->ents[--nd->n].data);
}

static void store_append(tnode_t *nd, const raft_entry_t *e)
{
    if (nd->n == nd->cap) {
        nd->cap = nd->cap ? 2 * nd->cap : 64;
        nd->ents = realloc(nd->ents, nd->cap * sizeof *nd->ents);
    }
    raft_entry_t x = *e;
    if (e->len) {
        uint8_t *d = malloc(e->len);
        memcpy(d, e->data, e->len);
        x.data = d;
    } else {
        x.data = NULL;
    }
    nd->ents[nd->n++] = x;
}

static void store_free(tnode_t *nd)
{
    store_truncate(nd, 0);
    free(nd->ents);
    free(nd->snapdata);
    free(nd->rx);
    free(nd->sm);
    memset(nd, 0, sizeof *nd);
}

/* ---- cluster --------------------------------------------------------------------------- */

static raft_config_t base_cfg(uint64_t id)
{
    raft_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.id = id;
    cfg.election_tick = 10;
    cfg.heartbeat_tick = 1;
    cfg.seed = 42;
    cfg.pre_vote = true;
    cfg.check_quorum = true;
    cfg.snap_chunk_bytes = 64;
    cfg.snap_read = snap_read;
    return cfg;
}

static int node_start(tcluster_t *c, int i)
{
    tnode_t *nd = &c->nd[i];
    raft_boot_t b;
    memset(&b, 0, sizeof b);
    b.hs = nd->hs;
    b.snap = nd->snap;
    b.entries = nd->ents;
    b.n_entries = nd->n;
    /* the state machine is not durable: rebuilt from the snapshot, then replayed */
    free(nd->sm);
    nd->sm = NULL;
    nd->smlen = nd->snaplen;
    if (nd->snaplen) {
        nd->sm = malloc(nd->snaplen);
        memcpy(nd->sm, nd->snapdata, nd->snaplen);
    }
    nd->sm_applied = nd->snap.index;
    nd->cfg.snap_ctx = nd;
    int rc = raft_new(&nd->cfg, &b, &nd->r);
    nd->up = rc == 0;
    return rc;
}

/* n founding voters; nodes n+1..total start with an empty configuration (not members). */
static void cluster_init2(tcluster_t *c, int n, int total, void (*tweak)(raft_config_t *))
{
    memset(c, 0, sizeof *c);
    c->n = total;
    for (int i = 1; i <= total; i++) {
        tnode_t *nd = &c->nd[i];
        nd->id = (uint64_t)i;
        nd->cfg = base_cfg(nd->id);
        nd->cfg.seed = 1000 + (uint64_t)i;
        if (tweak)
            tweak(&nd->cfg);
        if (i <= n) {
            nd->snap.conf.n = (uint32_t)n;
            for (int j = 0; j < n; j++) {
                nd->snap.conf.s[j].id = (uint64_t)(j + 1);
                nd->snap.conf.s[j].role = RAFT_VOTER;
            }
        }
    }
    for (int i = 1; i <= n; i++)
        node_start(c, i);
}

static void cluster_init(tcluster_t *c, int n, void (*tweak)(raft_config_t *))
{
    cluster_init2(c, n, n, tweak);
}

static void cluster_free(tcluster_t *c)
{
    for (int i = 1; i <= c->n; i++) {
        raft_free(c->nd[i].r);
        store_free(&c->nd[i]);
    }
    for (size_t k = c->qhead; k < c->qn; k++)
        raft_msg_free(&c->q[k]);
    free(c->q);
}

static void enqueue(tcluster_t *c, const raft_msg_t *m)
{
    if (c->qn == c->qcap) {
        if (c->qhead > 0) {
            memmove(c->q, c->q + c->qhead, (c->qn - c->qhead) * sizeof *c->q);
            c->qn -= c->qhead;
            c->qhead = 0;
        }
        if (c->qn == c->qcap) {
            c->qcap = c->qcap ? 2 * c->qcap : 256;
            c->q = realloc(c->q, c->qcap * sizeof *c->q);
        }
    }
    raft_msg_clone(&c->q[c->qn++], m);
}

static void apply_entry(tcluster_t *c, tnode_t *nd, const raft_entry_t *e)
{
    if (e->index != nd->sm_applied + 1)
        violation(c, "node %d applied %llu after %llu", (int)nd->id,
                  (unsigned long long)e->index, (unsigned long long)nd->sm_applied);
    if (e->index < MAXIDX) {
        if (c->commit_term[e->index] == 0)
            c->commit_term[e->index] = e->term;
        else if (c->commit_term[e->index] != e->term)
            violation(c, "index %llu committed with term %llu and term %llu",
                      (unsigned long long)e->index, (unsigned long long)c->commit_term[e->index],
                      (unsigned long long)e->term);
    }
    nd->sm_applied = e->index;
    if (e->type == RAFT_ENTRY_NORMAL && e->len) {
        nd->sm = realloc(nd->sm, nd->smlen + e->len);
        memcpy(nd->sm + nd->smlen, e->data, e->len);
        nd->smlen += e->len;
    }
}

/* Runs the Ready loop of node i until it has nothing more to say. */
static void process(tcluster_t *c, int i)
{
    tnode_t *nd = &c->nd[i];
    for (int guard = 0; nd->up && raft_has_ready(nd->r) && guard < 1000; guard++) {
        raft_ready_t rd;
        raft_ready(nd->r, &rd);
        /* the contract: what promises durability waits for persistence */
        for (size_t k = 0; k < rd.n_msgs; k++) {
            const raft_msg_t *m = &rd.msgs[k];
            if (m->type == RAFT_MSG_VOTE ||
                (!m->reject && (m->type == RAFT_MSG_VOTE_RESP ||
                                m->type == RAFT_MSG_APPEND_RESP ||
                                m->type == RAFT_MSG_SNAPSHOT_RESP)))
                violation(c, "node %d: message type %u may leave before persisting",
                          (int)nd->id, m->type);
        }
        if (c->crash_after_send[i]) {
            /* a caller that sends rd.msgs while its disk write is in flight, and dies */
            for (size_t k = 0; k < rd.n_msgs; k++)
                enqueue(c, &rd.msgs[k]);
            raft_free(nd->r);
            nd->r = NULL;
            nd->up = false;
            return;
        }
        /* persist */
        if (rd.snap_chunk) {
            const raft_snap_chunk_t *ch = rd.snap_chunk;
            if (ch->offset == 0)
                nd->rxlen = 0;
            nd->rx = realloc(nd->rx, nd->rxlen + ch->len + 1);
            if (ch->len)
                memcpy(nd->rx + nd->rxlen, ch->data, ch->len);
            nd->rxlen += ch->len;
        }
        if (rd.snapshot) {
            free(nd->snapdata);
            nd->snapdata = nd->rx;
            nd->snaplen = nd->rxlen;
            nd->rx = NULL;
            nd->rxlen = 0;
            nd->snap = *rd.snapshot;
            store_truncate(nd, 0);
        }
        if (rd.n_entries) {
            store_truncate(nd, rd.entries[0].index);
            for (size_t k = 0; k < rd.n_entries; k++)
                store_append(nd, &rd.entries[k]);
        }
        if (rd.hs_changed)
            nd->hs = rd.hs;
        /* send */
        for (size_t k = 0; k < rd.n_msgs; k++)
            enqueue(c, &rd.msgs[k]);
        for (size_t k = 0; k < rd.n_msgs_after_persist; k++)
            enqueue(c, &rd.msgs_after_persist[k]);
        /* apply */
        if (rd.snapshot) {
            free(nd->sm);
            nd->sm = NULL;
            nd->smlen = nd->snaplen;
            if (nd->snaplen) {
                nd->sm = malloc(nd->snaplen);
                memcpy(nd->sm, nd->snapdata, nd->snaplen);
            }
            nd->sm_applied = rd.snapshot->index;
        }
        for (size_t k = 0; k < rd.n_committed; k++)
            apply_entry(c, nd, &rd.committed[k]);
        for (size_t k = 0; k < rd.n_reads && nd->nrs < 64; k++)
            nd->rs[nd->nrs++] = rd.reads[k];
        if (rd.role == RAFT_LEADER) {
            uint64_t t = rd.hs.term;
            if (t < MAXTERM) {
                if (c->leader_of_term[t] && c->leader_of_term[t] != nd->id)
                    violation(c, "two leaders in term %llu", (unsigned long long)t);
                c->leader_of_term[t] = nd->id;
            }
        }
        raft_advance(nd->r, &rd);
        /* the application's snapshot policy */
        if (c->compact_every) {
            raft_status_t st;
            raft_status(nd->r, &st);
            if (st.applied >= st.snap_index + c->compact_every) {
                uint64_t first;
                if (raft_compact(nd->r, st.applied, &first) == 0) {
                    free(nd->snapdata);
                    nd->snapdata = malloc(nd->smlen + 1);
                    memcpy(nd->snapdata, nd->sm, nd->smlen);
                    nd->snaplen = nd->smlen;
                    raft_snapshot_meta(nd->r, &nd->snap);
                    store_drop_before(nd, first);
                }
            }
        }
    }
}

static bool delivery_ok(tcluster_t *c, const raft_msg_t *m)
{
    if (m->to < 1 || m->to > (uint64_t)c->n || !c->nd[m->to].up)
        return false;
    if (c->cut[m->from][m->to])
        return false;
    if (c->filter && c->filter(c, m))
        return false;
    return true;
}

/* Delivers every queued message (and what they cause) until the network is quiet. */
static void deliver_all(tcluster_t *c)
{
    for (int guard = 0; c->qhead < c->qn && guard < 200000; guard++) {
        raft_msg_t m = c->q[c->qhead++];
        if (delivery_ok(c, &m)) {
            tnode_t *to = &c->nd[m.to];
            c->delivered[m.type]++;
            if (m.type == RAFT_MSG_APPEND_RESP && m.reject && m.index)
                c->rejects[m.from]++;
            if (m.type == RAFT_MSG_TIMEOUT_NOW) {
                raft_status_t a, b;
                raft_status(to->r, &a);
                if (c->nd[m.from].up) {
                    raft_status(c->nd[m.from].r, &b);
                    if (a.last_index < b.last_index)
                        c->bad_timeout_now++;
                }
            }
            raft_step(to->r, &m);
            process(c, (int)m.to);
        }
        raft_msg_free(&m);
    }
}

static void process_all(tcluster_t *c)
{
    for (int i = 1; i <= c->n; i++)
        process(c, i);
}

static void run(tcluster_t *c, int ticks)
{
    process_all(c);
    deliver_all(c);
    for (int t = 0; t < ticks; t++) {
        for (int i = 1; i <= c->n; i++)
            if (c->nd[i].up) {
                raft_tick(c->nd[i].r);
                process(c, i);
            }
        deliver_all(c);
    }
}

static uint32_t role_of(tcluster_t *c, int i)
{
    raft_status_t st;
    raft_status(c->nd[i].r, &st);
    return st.role;
}

static raft_status_t status_of(tcluster_t *c, int i)
{
    raft_status_t st;
    raft_status(c->nd[i].r, &st);
    return st;
}

/* The leader with the highest term among up nodes, 0 if none. */
static int leader(tcluster_t *c)
{
    int best = 0;
    uint64_t bt = 0;
    for (int i = 1; i <= c->n; i++) {
        if (!c->nd[i].up)
            continue;
        raft_status_t st = status_of(c, i);
        if (st.role == RAFT_LEADER && st.term >= bt) {
            best = i;
            bt = st.term;
        }
    }
    return best;
}

static int wait_leader(tcluster_t *c, int max_ticks)
{
    for (int t = 0; t < max_ticks; t++) {
        int l = leader(c);
        if (l)
            return l;
        run(c, 1);
    }
    return leader(c);
}

static int propose_str(tcluster_t *c, int i, const char *s)
{
    int rc = raft_propose(c->nd[i].r, s, strlen(s), NULL);
    process(c, i);
    return rc;
}

static void crash(tcluster_t *c, int i)
{
    raft_free(c->nd[i].r);
    c->nd[i].r = NULL;
    c->nd[i].up = false;
}

static void isolate(tcluster_t *c, int i, bool on)
{
    for (int j = 1; j <= c->n; j++)
        if (j != i)
            c->cut[i][j] = c->cut[j][i] = on;
}

/* Makes node i campaign now, as a TimeoutNow would. */
static void force_campaign(tcluster_t *c, int i)
{
    raft_status_t st = status_of(c, i);
    raft_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = RAFT_MSG_TIMEOUT_NOW;
    m.to = (uint64_t)i;
    m.from = i == 1 ? 2 : 1;
    m.term = st.term;
    raft_step(c->nd[i].r, &m);
    process(c, i);
}

static bool sm_prefix_agree(tcluster_t *c)
{
    for (int i = 1; i <= c->n; i++)
        for (int j = 1; j <= c->n; j++) {
            tnode_t *a = &c->nd[i], *b = &c->nd[j];
            if (!a->up || !b->up || a->smlen > b->smlen)
                continue;
            if (a->smlen && memcmp(a->sm, b->sm, a->smlen) != 0)
                return false;
        }
    return true;
}

/* Boots node i with a hand-made log: terms[k] is the term of index k+1. */
static void craft_log(tcluster_t *c, int i, const uint64_t *terms, size_t n, uint64_t term)
{
    tnode_t *nd = &c->nd[i];
    raft_free(nd->r);
    store_truncate(nd, 0);
    for (size_t k = 0; k < n; k++) {
        char buf[32];
        int len = snprintf(buf, sizeof buf, "e%zu.t%llu;", k + 1, (unsigned long long)terms[k]);
        raft_entry_t e = { .term = terms[k], .index = k + 1, .type = RAFT_ENTRY_NORMAL,
                           .len = (uint32_t)len, .data = (const uint8_t *)buf };
        store_append(nd, &e);
    }
    nd->hs.term = term;
    nd->hs.vote = 0;
    nd->hs.commit = 1;
    node_start(c, i);
}

/* ---- cases ------------------------------------------------------------------------------ */

TEST(test_elect_and_replicate)
{
    tcluster_t c;
    cluster_init(&c, 3, NULL);
    int l = wait_leader(&c, 100);
    CHECK(l != 0);
    for (int k = 0; k < 20; k++) {
        char b[16];
        snprintf(b, sizeof b, "v%d;", k);
        CHECK_EQ(propose_str(&c, l, b), 0);
    }
    run(&c, 3);
    for (int i = 1; i <= 3; i++) {
        raft_status_t st = status_of(&c, i);
        CHECK_EQ(st.commit, 21); /* NOOP + 20 */
        CHECK_EQ(c.nd[i].sm_applied, 21);
    }
    CHECK(sm_prefix_agree(&c));
    CHECK_EQ(c.nd[1].smlen, c.nd[2].smlen);
    CHECK(!c.violation);
    /* a restart replays from the durable store and agrees */
    crash(&c, 2);
    CHECK_EQ(node_start(&c, 2), 0);
    run(&c, 3);
    CHECK_EQ(c.nd[2].sm_applied, 21);
    CHECK(sm_prefix_agree(&c));
    CHECK(!c.violation);
    cluster_free(&c);
}

/* Drops S1's APPENDs that would give index 3 to a server already holding index 2. */
static bool drop_index3_from_1(tcluster_t *c, const raft_msg_t *m)
{
    uint64_t t;
    return m->from == 1 && m->type == RAFT_MSG_APPEND && m->n_entries &&
           m->index + m->n_entries >= 3 && raft_log_term(c->nd[m->to].r, 2, &t) == 0;
}

static void one_entry_per_msg(raft_config_t *cfg)
{
    cfg->max_msg_bytes = 1;
}

/* Figure 8 of the paper: an entry of an earlier term stored on a majority may still be
 * overwritten, so a leader must not count replicas to commit it (§5.4.2). */
TEST(test_figure8)
{
    tcluster_t c;
    cluster_init(&c, 5, one_entry_per_msg);
    /* (b): S1 led term 2 and stored index 2 on itself; S5 led term 3 and stored index 2 */
    const uint64_t s1[] = { 1, 2 }, s34[] = { 1 }, s5[] = { 1, 3 };
    craft_log(&c, 1, s1, 2, 3);
    craft_log(&c, 2, s34, 1, 3);
    craft_log(&c, 3, s34, 1, 3);
    craft_log(&c, 4, s34, 1, 3);
    craft_log(&c, 5, s5, 2, 3);
    /* (c): S1 restarts and leads term 4 with S2,S3; it copies index 2 to both, so term 2's
     * entry is on a majority, but its own term-4 entry reaches nobody */
    c.cut[1][4] = c.cut[4][1] = c.cut[1][5] = c.cut[5][1] = true;
    c.filter = drop_index3_from_1;
    force_campaign(&c, 1);
    deliver_all(&c);
    CHECK_EQ(role_of(&c, 1), RAFT_LEADER);
    CHECK_EQ(status_of(&c, 1).term, 4);
    uint64_t t;
    CHECK_EQ(raft_log_term(c.nd[3].r, 2, &t), 0);
    CHECK_EQ(t, 2); /* index 2 (term 2) is now on S1, S2, S3 */
    CHECK_EQ(raft_log_term(c.nd[2].r, 2, &t), 0);
    CHECK_EQ(t, 2);
    CHECK(status_of(&c, 1).commit < 2); /* but it is not committed by counting */
    /* (d): S1 crashes; S5 is elected by S2, S3, S4 and overwrites index 2 */
    crash(&c, 1);
    c.filter = NULL;
    force_campaign(&c, 5); /* term 4: S2, S3 already voted for S1 */
    deliver_all(&c);
    if (role_of(&c, 5) != RAFT_LEADER) {
        force_campaign(&c, 5); /* term 5 */
        deliver_all(&c);
    }
    CHECK_EQ(role_of(&c, 5), RAFT_LEADER);
    run(&c, 3);
    CHECK_EQ(raft_log_term(c.nd[3].r, 2, &t), 0);
    CHECK_EQ(t, 3);
    CHECK(status_of(&c, 5).commit >= 3);
    CHECK(!c.violation); /* nobody ever applied index 2 from term 2 */
    CHECK(sm_prefix_agree(&c));
    cluster_free(&c);
}

/* §5.4.1: a server whose log lacks committed entries cannot become leader. */
TEST(test_stale_log_cannot_win)
{
    tcluster_t c;
    cluster_init(&c, 3, NULL);
    int l = wait_leader(&c, 100);
    CHECK(l != 0);
    int stale = l % 3 + 1, other = 6 - l - stale;
    isolate(&c, stale, true);
    for (int k = 0; k < 5; k++)
        CHECK_EQ(propose_str(&c, l, "x;"), 0);
    run(&c, 2);
    CHECK_EQ(status_of(&c, other).commit, status_of(&c, l).last_index);
    uint64_t committed = status_of(&c, l).commit;
    crash(&c, l);
    isolate(&c, stale, false);
    /* the stale node asks first; the up-to-date one refuses (§5.4.1) */
    force_campaign(&c, stale);
    deliver_all(&c);
    CHECK(role_of(&c, stale) != RAFT_LEADER);
    int nl = wait_leader(&c, 200);
    CHECK_EQ(nl, other);
    run(&c, 3);
    CHECK(status_of(&c, stale).commit >= committed);
    CHECK(!c.violation);
    CHECK(sm_prefix_agree(&c));
    cluster_free(&c);
}

/* Check-quorum: a leader cut off from the majority steps down within an election timeout;
 * the majority elects another and goes on. */
TEST(test_partitioned_leader_steps_down)
{
    tcluster_t c;
    cluster_init(&c, 3, NULL);
    int l = wait_leader(&c, 100);
    CHECK(l != 0);
    uint64_t term = status_of(&c, l).term;
    isolate(&c, l, true);
    run(&c, 25); /* > 2 election timeouts */
    CHECK(role_of(&c, l) != RAFT_LEADER);
    int nl = leader(&c);
    CHECK(nl != 0 && nl != l);
    CHECK(status_of(&c, nl).term > term);
    CHECK_EQ(propose_str(&c, nl, "after;"), 0);
    isolate(&c, l, false);
    run(&c, 5);
    CHECK_EQ(status_of(&c, l).leader, (uint64_t)nl);
    CHECK_EQ(status_of(&c, l).commit, status_of(&c, nl).commit);
    CHECK(!c.violation);
    cluster_free(&c);
}

static void no_prevote(raft_config_t *cfg)
{
    cfg->pre_vote = false;
}

/* §9.6: a node that was partitioned does not raise its term with pre-vote, so rejoining
 * does not depose a healthy leader. Without pre-vote it does (shown as the contrast). */
static void rejoin(bool pre_vote, uint64_t *term_before, uint64_t *term_after, int *l_before,
                   int *l_after, uint64_t *iso_term)
{
    tcluster_t c;
    cluster_init(&c, 3, pre_vote ? NULL : no_prevote);
    int l = wait_leader(&c, 100);
    *l_before = l;
    *term_before = status_of(&c, l).term;
    int iso = l % 3 + 1;
    isolate(&c, iso, true);
    run(&c, 100);
    *iso_term = status_of(&c, iso).term;
    isolate(&c, iso, false);
    run(&c, 30);
    *l_after = leader(&c);
    *term_after = *l_after ? status_of(&c, *l_after).term : 0;
    if (c.violation)
        *l_after = -1;
    cluster_free(&c);
}

TEST(test_prevote_rejoin)
{
    uint64_t tb, ta, it;
    int lb, la;
    rejoin(true, &tb, &ta, &lb, &la, &it);
    CHECK_EQ(it, tb);      /* the isolated node never raised its term */
    CHECK_EQ(la, lb);      /* same leader */
    CHECK_EQ(ta, tb);      /* same term: no disruption */
    rejoin(false, &tb, &ta, &lb, &la, &it);
    CHECK(it > tb);        /* without pre-vote the isolated node's term ran away */
    CHECK(ta > tb);        /* and rejoining forced a new election */
    CHECK(la > 0);
}

static void compact_tweak(raft_config_t *cfg)
{
    cfg->snap_chunk_bytes = 50;
}

/* §7: a follower behind the leader's first log index is caught up with a snapshot sent in
 * chunks; afterwards normal replication resumes. */
TEST(test_snapshot_catch_up)
{
    tcluster_t c;
    cluster_init(&c, 3, compact_tweak);
    c.compact_every = 10;
    int l = wait_leader(&c, 100);
    CHECK(l != 0);
    int lag = l % 3 + 1;
    isolate(&c, lag, true);
    for (int k = 0; k < 60; k++) {
        char b[32];
        snprintf(b, sizeof b, "value-%03d;", k);
        CHECK_EQ(propose_str(&c, l, b), 0);
        deliver_all(&c);
    }
    run(&c, 2);
    raft_status_t ls = status_of(&c, l);
    CHECK(ls.snap_index >= 50);
    CHECK(ls.first_index > status_of(&c, lag).last_index + 1); /* it must be a snapshot */
    int chunks_before = c.delivered[RAFT_MSG_SNAPSHOT];
    isolate(&c, lag, false);
    run(&c, 10);
    int chunks = c.delivered[RAFT_MSG_SNAPSHOT] - chunks_before;
    CHECK(chunks >= 10); /* > 500 bytes in 50-byte chunks */
    raft_status_t fs = status_of(&c, lag);
    CHECK_EQ(fs.commit, status_of(&c, l).commit);
    CHECK(fs.snap_index >= 50);
    CHECK_EQ(c.nd[lag].smlen, c.nd[l].smlen);
    CHECK(memcmp(c.nd[lag].sm, c.nd[l].sm, c.nd[l].smlen) == 0);
    /* and it follows normal replication after that */
    CHECK_EQ(propose_str(&c, l, "tail;"), 0);
    run(&c, 2);
    CHECK_EQ(status_of(&c, lag).commit, status_of(&c, l).commit);
    /* restart from its stored snapshot */
    crash(&c, lag);
    CHECK_EQ(node_start(&c, lag), 0);
    run(&c, 3);
    CHECK_EQ(c.nd[lag].smlen, c.nd[l].smlen);
    CHECK(!c.violation);
    CHECK(sm_prefix_agree(&c));
    cluster_free(&c);
}

/* Thesis §4.2.2: the leader removes itself; it leads until the change commits, then steps
 * down, and the rest elect a leader and keep committing without it. */
TEST(test_leader_removes_itself)
{
    tcluster_t c;
    cluster_init(&c, 3, NULL);
    int l = wait_leader(&c, 100);
    CHECK(l != 0);
    run(&c, 2);
    CHECK_EQ(raft_propose_conf(c.nd[l].r, RAFT_CONF_REMOVE, (uint64_t)l, NULL), 0);
    process(&c, l);
    /* a second change must wait for the first to commit */
    CHECK_EQ(raft_propose_conf(c.nd[l].r, RAFT_CONF_ADD_LEARNER, 9, NULL), -QERR_CONFCHANGE);
    run(&c, 30);
    CHECK(role_of(&c, l) != RAFT_LEADER);
    int nl = leader(&c);
    CHECK(nl != 0 && nl != l);
    const raft_conf_t *conf = raft_conf(c.nd[nl].r);
    CHECK_EQ(conf->n, 2);
    CHECK_EQ(raft_conf_role(conf, (uint64_t)l), 0);
    CHECK_EQ(propose_str(&c, nl, "without-old-leader;"), 0);
    isolate(&c, l, true); /* it is not needed any more */
    run(&c, 3);
    int other = 6 - l - nl;
    CHECK_EQ(status_of(&c, other).commit, status_of(&c, nl).last_index);
    /* the removed server never campaigns */
    uint64_t t = status_of(&c, l).term;
    run(&c, 50);
    CHECK_EQ(status_of(&c, l).term, t);
    CHECK(!c.violation);
    cluster_free(&c);
}

/* Drops appends that carry entries past g_hold_after, while g_hold is set. */
static bool g_hold;
static uint64_t g_hold_after;
static bool hold_appends(tcluster_t *c, const raft_msg_t *m)
{
    (void)c;
    return g_hold && m->type == RAFT_MSG_APPEND && m->n_entries > 0 && m->index >= g_hold_after;
}

/* A leader whose removal commits while no voter has its whole log hands over anyway: it
 * brings the most up-to-date voter up to date, sends it TimeoutNow and steps down (one
 * round trip, no election timeout); if that voter never catches up, it steps down after an
 * election timeout. */
TEST(test_removed_leader_hands_over_to_lagging)
{
    for (int catch_up = 1; catch_up >= 0; catch_up--) {
        tcluster_t c;
        cluster_init(&c, 3, NULL);
        int l = wait_leader(&c, 100);
        CHECK(l != 0);
        run(&c, 2);
        CHECK_EQ(raft_propose_conf(c.nd[l].r, RAFT_CONF_REMOVE, (uint64_t)l, NULL), 0);
        process(&c, l);
        g_hold_after = status_of(&c, l).last_index;     /* the removal's entry */
        g_hold = true;
        c.filter = hold_appends;
        for (int k = 0; k < 3; k++)
            CHECK_EQ(propose_str(&c, l, "after-removal;"), 0);
        run(&c, 1);
        /* the removal committed; nobody has the entries after it: still leading, handing over */
        CHECK(status_of(&c, l).commit >= g_hold_after);
        CHECK_EQ(role_of(&c, l), RAFT_LEADER);
        CHECK(status_of(&c, l).transfer_target != 0);
        CHECK_EQ(propose_str(&c, l, "refused;"), -QERR_TRANSFER);
        CHECK_EQ(c.delivered[RAFT_MSG_TIMEOUT_NOW], 0);
        if (catch_up) {
            g_hold = false;
            run(&c, 3);
            CHECK_EQ(c.delivered[RAFT_MSG_TIMEOUT_NOW], 1);
            CHECK_EQ(c.bad_timeout_now, 0);
            CHECK(role_of(&c, l) != RAFT_LEADER);
            int nl = leader(&c);
            CHECK(nl != 0 && nl != l);
            CHECK(status_of(&c, nl).commit >= g_hold_after + 3);
        } else {
            run(&c, 12);
            CHECK(role_of(&c, l) != RAFT_LEADER);
            CHECK_EQ(c.delivered[RAFT_MSG_TIMEOUT_NOW], 0);
            g_hold = false;
            CHECK(wait_leader(&c, 100) != l);
        }
        CHECK(!c.violation);
        CHECK(sm_prefix_agree(&c));
        c.filter = NULL;
        cluster_free(&c);
    }
}

/* Thesis §3.10: transferring to a lagging server waits until it has caught up. */
TEST(test_transfer_to_lagging)
{
    tcluster_t c;
    cluster_init(&c, 3, NULL);
    int l = wait_leader(&c, 100);
    CHECK(l != 0);
    int target = l % 3 + 1;
    isolate(&c, target, true);
    for (int k = 0; k < 20; k++)
        CHECK_EQ(propose_str(&c, l, "lag;"), 0);
    run(&c, 2);
    CHECK_EQ(raft_transfer(c.nd[l].r, (uint64_t)target), 0);
    CHECK_EQ(propose_str(&c, l, "refused;"), -QERR_TRANSFER);
    process(&c, l);
    run(&c, 2); /* the target is still unreachable */
    CHECK_EQ(role_of(&c, l), RAFT_LEADER);
    CHECK_EQ(c.delivered[RAFT_MSG_TIMEOUT_NOW], 0);
    isolate(&c, target, false);
    run(&c, 5);
    CHECK_EQ(c.delivered[RAFT_MSG_TIMEOUT_NOW], 1);
    CHECK_EQ(c.bad_timeout_now, 0); /* it was up to date when told to campaign */
    CHECK_EQ(leader(&c), target);
    CHECK(status_of(&c, target).commit >= 21);
    CHECK_EQ(propose_str(&c, target, "new;"), 0);
    run(&c, 2);
    CHECK(!c.violation);
    CHECK(sm_prefix_agree(&c));
    cluster_free(&c);
}

/* A transfer that cannot complete is aborted after an election timeout. */
TEST(test_transfer_abort)
{
    tcluster_t c;
    cluster_init(&c, 3, NULL);
    int l = wait_leader(&c, 100);
    CHECK(l != 0);
    int target = l % 3 + 1;
    isolate(&c, target, true);
    CHECK_EQ(propose_str(&c, l, "x;"), 0);
    CHECK_EQ(raft_transfer(c.nd[l].r, (uint64_t)target), 0);
    CHECK_EQ(raft_transfer(c.nd[l].r, (uint64_t)(6 - l - target)), -QERR_TRANSFER);
    CHECK_EQ(raft_transfer(c.nd[l].r, (uint64_t)l), -QERR_INVAL);
    run(&c, 12);
    CHECK_EQ(role_of(&c, l), RAFT_LEADER);
    CHECK_EQ(status_of(&c, l).transfer_target, 0);
    CHECK_EQ(propose_str(&c, l, "accepted-again;"), 0);
    cluster_free(&c);
}

static void no_checkquorum(raft_config_t *cfg)
{
    cfg->check_quorum = false;
}

static int find_read(tnode_t *nd, uint64_t id, raft_read_state_t *out)
{
    for (int k = 0; k < nd->nrs; k++)
        if (nd->rs[k].id == id) {
            *out = nd->rs[k];
            return 1;
        }
    return 0;
}

/* Thesis §6.4: a deposed leader that does not know it yet must not answer a read with its
 * stale commit index: its heartbeat round gets no quorum, and the read fails when it
 * learns of the new term. Check-quorum is off so the old leader keeps believing. */
TEST(test_read_index_deposed_leader)
{
    tcluster_t c;
    cluster_init(&c, 3, no_checkquorum);
    int l = wait_leader(&c, 100);
    CHECK(l != 0);
    CHECK_EQ(propose_str(&c, l, "x=1;"), 0);
    run(&c, 2);
    /* a read on the healthy leader completes at its commit index */
    CHECK_EQ(raft_read_index(c.nd[l].r, 7, NULL), 0);
    process(&c, l);
    deliver_all(&c);
    raft_read_state_t rs;
    CHECK(find_read(&c.nd[l], 7, &rs));
    CHECK_EQ(rs.err, 0);
    CHECK_EQ(rs.index, 2);
    /* depose it behind its back */
    isolate(&c, l, true);
    int a = l % 3 + 1;
    force_campaign(&c, a);
    deliver_all(&c);
    int nl = leader(&c) == l ? a : leader(&c);
    CHECK_EQ(role_of(&c, nl), RAFT_LEADER);
    CHECK(nl != l);
    CHECK_EQ(propose_str(&c, nl, "x=2;"), 0);
    run(&c, 2);
    uint64_t new_commit = status_of(&c, nl).commit;
    CHECK(new_commit > 2);
    CHECK_EQ(role_of(&c, l), RAFT_LEADER); /* still believes */
    CHECK_EQ(raft_read_index(c.nd[l].r, 8, NULL), 0);
    process(&c, l);
    run(&c, 20);
    CHECK(!find_read(&c.nd[l], 8, &rs)); /* no answer while cut off */
    isolate(&c, l, false);
    run(&c, 3);
    CHECK(find_read(&c.nd[l], 8, &rs));
    CHECK_EQ(rs.err, -QERR_NOTLEADER); /* refused, never a stale index */
    /* a read forwarded by a follower to the new leader sees x=2 */
    int f = 6 - l - nl;
    CHECK_EQ(raft_read_index(c.nd[f].r, 9, NULL), 0);
    process(&c, f);
    deliver_all(&c);
    CHECK(find_read(&c.nd[f], 9, &rs));
    CHECK_EQ(rs.err, 0);
    CHECK(rs.index >= new_commit);
    CHECK(!c.violation);
    cluster_free(&c);
}

static bool drop_appends(tcluster_t *c, const raft_msg_t *m)
{
    (void)c;
    return m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT;
}

/* A new leader answers reads only after an entry of its term has committed. */
TEST(test_read_waits_for_term_commit)
{
    tcluster_t c;
    cluster_init(&c, 3, NULL);
    int l = wait_leader(&c, 100);
    CHECK(l != 0);
    run(&c, 2);
    int a = l % 3 + 1, b = 6 - l - a;
    /* a becomes leader but its NOOP cannot commit yet: b is cut off, l is down */
    crash(&c, l);
    c.filter = drop_appends; /* votes go through; appends do not */
    force_campaign(&c, a);
    deliver_all(&c);
    c.filter = NULL;
    c.cut[a][b] = c.cut[b][a] = true;
    CHECK_EQ(role_of(&c, a), RAFT_LEADER);
    CHECK(status_of(&c, a).commit < status_of(&c, a).last_index);
    CHECK_EQ(raft_read_index(c.nd[a].r, 5, NULL), 0);
    process(&c, a);
    deliver_all(&c);
    raft_read_state_t rs;
    CHECK(!find_read(&c.nd[a], 5, &rs));
    c.cut[a][b] = c.cut[b][a] = false;
    run(&c, 2);
    CHECK(find_read(&c.nd[a], 5, &rs));
    CHECK_EQ(rs.err, 0);
    CHECK_EQ(rs.index, status_of(&c, a).last_index);
    cluster_free(&c);
}

static bool drop_timeout_now(tcluster_t *c, const raft_msg_t *m)
{
    (void)c;
    return m->type == RAFT_MSG_TIMEOUT_NOW;
}

static void lease_tweak(raft_config_t *cfg)
{
    cfg->lease_reads = true;
    cfg->max_clock_drift_ticks = 2;
}

/* Thesis §6.4.1: with a lease, the leader answers without a round; the lease lapses when
 * the quorum stops answering. */
TEST(test_lease_read)
{
    tcluster_t c;
    cluster_init(&c, 3, lease_tweak);
    int l = wait_leader(&c, 100);
    CHECK(l != 0);
    run(&c, 3);
    CHECK(status_of(&c, l).lease_valid);
    int hb = c.delivered[RAFT_MSG_HEARTBEAT];
    CHECK_EQ(raft_read_index(c.nd[l].r, 1, NULL), 0);
    process(&c, l);
    raft_read_state_t rs;
    CHECK(find_read(&c.nd[l], 1, &rs)); /* at once, no round trip */
    CHECK_EQ(rs.err, 0);
    CHECK_EQ(c.delivered[RAFT_MSG_HEARTBEAT], hb);
    isolate(&c, l, true);
    run(&c, 9);
    CHECK(!status_of(&c, l).lease_valid); /* 10 - 2 ticks after the last confirmed round */
    CHECK_EQ(status_of(&c, l).lease_read_ticks, 0);
    isolate(&c, l, false);
    run(&c, 3);
    CHECK_EQ(leader(&c), l);
    CHECK(status_of(&c, l).lease_valid);
    /* once a TimeoutNow has gone out, its target may win with votes that ignore leases:
     * no lease for the rest of the term, even if the transfer is aborted */
    c.filter = drop_timeout_now;
    CHECK_EQ(raft_transfer(c.nd[l].r, (uint64_t)(l % 3 + 1)), 0);
    process(&c, l);
    CHECK(!status_of(&c, l).lease_valid);
    CHECK_EQ(status_of(&c, l).lease_read_ticks, 0);
    run(&c, 15); /* the transfer is aborted; heartbeats are acknowledged all along */
    CHECK_EQ(leader(&c), l);
    CHECK_EQ(status_of(&c, l).transfer_target, 0);
    CHECK(!status_of(&c, l).lease_valid);
    c.filter = NULL;
    cluster_free(&c);

    /* lease_read_ticks counts the ticks left: one less per tick, 0 exactly when the lease
     * lapses, and reads are answered at once until then (mraft's leader fast path) */
    cluster_init(&c, 3, lease_tweak);
    l = wait_leader(&c, 100);
    CHECK(l != 0);
    run(&c, 3);
    isolate(&c, l, true);
    uint64_t left = status_of(&c, l).lease_read_ticks;
    CHECK(left >= 1 && left <= 8);
    for (uint64_t id = 100; left > 0; id++) {
        CHECK_EQ(raft_read_index(c.nd[l].r, id, NULL), 0);
        process(&c, l);
        CHECK(find_read(&c.nd[l], id, &rs));
        CHECK_EQ(rs.err, 0);
        run(&c, 1);
        raft_status_t s = status_of(&c, l);
        CHECK_EQ(s.lease_read_ticks, left - 1);
        CHECK_EQ(s.lease_valid, s.lease_read_ticks > 0);
        left--;
    }
    raft_config_t bad = base_cfg(1);
    bad.lease_reads = true;
    bad.check_quorum = false;
    bad.max_clock_drift_ticks = 2;
    raft_boot_t boot;
    memset(&boot, 0, sizeof boot);
    raft_t *r = NULL;
    CHECK_EQ(raft_new(&bad, &boot, &r), -QERR_INVAL); /* leases need check-quorum */
    cluster_free(&c);
}

/* Thesis §4.2.1: a new server joins as a non-voting learner, catches up, and only then is
 * promoted to voter; a plain learner stays one. */
TEST(test_learner_promotion)
{
    tcluster_t c;
    cluster_init2(&c, 3, 5, NULL);
    int l = wait_leader(&c, 100);
    CHECK(l != 0);
    for (int k = 0; k < 100; k++)
        CHECK_EQ(propose_str(&c, l, "some-data;"), 0);
    run(&c, 2);
    CHECK_EQ(raft_propose_conf(c.nd[l].r, RAFT_CONF_ADD_VOTER, 4, NULL), 0);
    process(&c, l);
    run(&c, 2);
    /* node 4 is not running: it is staged, not a voter; the quorum is still 2 of 3 */
    const raft_conf_t *conf = raft_conf(c.nd[l].r);
    CHECK_EQ(raft_conf_role(conf, 4), RAFT_STAGING);
    CHECK_EQ(propose_str(&c, l, "while-staging;"), 0);
    run(&c, 2);
    CHECK_EQ(status_of(&c, l).commit, status_of(&c, l).last_index);
    /* it starts with an empty log, catches up, then is promoted */
    CHECK_EQ(node_start(&c, 4), 0);
    run(&c, 10);
    conf = raft_conf(c.nd[l].r);
    CHECK_EQ(raft_conf_role(conf, 4), RAFT_VOTER);
    CHECK_EQ(status_of(&c, 4).commit, status_of(&c, l).commit);
    CHECK_EQ(c.nd[4].smlen, c.nd[l].smlen);
    /* a learner stays a learner and does not count */
    CHECK_EQ(raft_propose_conf(c.nd[l].r, RAFT_CONF_ADD_LEARNER, 5, NULL), 0);
    process(&c, l);
    CHECK_EQ(raft_propose_conf(c.nd[l].r, RAFT_CONF_ADD_LEARNER, 5, NULL), -QERR_CONFCHANGE);
    CHECK_EQ(node_start(&c, 5), 0);
    run(&c, 10);
    conf = raft_conf(c.nd[l].r);
    CHECK_EQ(raft_conf_role(conf, 5), RAFT_LEARNER);
    CHECK_EQ(status_of(&c, 5).commit, status_of(&c, l).commit);
    CHECK_EQ(raft_propose_conf(c.nd[l].r, RAFT_CONF_ADD_LEARNER, 5, NULL), -QERR_EXISTS);
    CHECK_EQ(raft_propose_conf(c.nd[l].r, RAFT_CONF_PROMOTE, 6, NULL), -QERR_NOTFOUND);
    /* 4 voters now: two of them down means no commit; the learner does not help */
    int down1 = l % 4 + 1, down2 = down1 % 4 + 1;
    if (down2 == l)
        down2 = down2 % 4 + 1;
    isolate(&c, down1, true);
    isolate(&c, down2, true);
    raft_status_t before = status_of(&c, l);
    CHECK_EQ(propose_str(&c, l, "needs-3-of-4;"), 0);
    run(&c, 3);
    CHECK_EQ(status_of(&c, l).commit, before.commit);
    isolate(&c, down1, false);
    run(&c, 5);
    int nl = leader(&c);
    CHECK(nl != 0);
    CHECK(status_of(&c, nl).commit > before.commit);
    CHECK(!c.violation);
    CHECK(sm_prefix_agree(&c));
    cluster_free(&c);
}

static void small_backlog(raft_config_t *cfg)
{
    cfg->max_uncommitted_bytes = 1000;
}

/* Backpressure: past max_uncommitted_bytes the leader refuses with -QERR_BUSY; once the
 * backlog commits, it accepts again. */
TEST(test_backpressure)
{
    tcluster_t c;
    cluster_init(&c, 3, small_backlog);
    int l = wait_leader(&c, 100);
    CHECK(l != 0);
    run(&c, 2);
    isolate(&c, l, true);
    char v[100];
    memset(v, 'b', sizeof v);
    int ok = 0, rc = 0;
    for (int k = 0; k < 50; k++) {
        rc = raft_propose(c.nd[l].r, v, sizeof v, NULL);
        if (rc < 0)
            break;
        ok++;
    }
    CHECK_EQ(rc, -QERR_BUSY);
    CHECK(ok >= 7 && ok <= 9); /* 1000 / (100 + 24) */
    CHECK(status_of(&c, l).uncommitted_bytes <= 1000);
    isolate(&c, l, false);
    run(&c, 3);
    CHECK_EQ(status_of(&c, l).uncommitted_bytes, 0);
    CHECK_EQ(raft_propose(c.nd[l].r, v, sizeof v, NULL), 0);
    /* an entry larger than the cap is accepted when nothing is uncommitted */
    run(&c, 3);
    static char big[5000];
    CHECK_EQ(raft_propose(c.nd[l].r, big, sizeof big, NULL), 0);
    CHECK_EQ(raft_propose(c.nd[l].r, v, sizeof v, NULL), -QERR_BUSY);
    cluster_free(&c);
}

/* A proposal to a follower is refused and names the leader. */
TEST(test_notleader_hint)
{
    tcluster_t c;
    cluster_init(&c, 3, NULL);
    int l = wait_leader(&c, 100);
    CHECK(l != 0);
    run(&c, 2);
    int f = l % 3 + 1;
    raft_prop_info_t info;
    CHECK_EQ(raft_propose(c.nd[f].r, "x", 1, &info), -QERR_NOTLEADER);
    CHECK_EQ(info.leader, (uint64_t)l);
    CHECK_EQ(raft_propose_conf(c.nd[f].r, RAFT_CONF_ADD_LEARNER, 4, &info), -QERR_NOTLEADER);
    CHECK_EQ(info.leader, (uint64_t)l);
    uint64_t hint = 0;
    CHECK_EQ(raft_transfer(c.nd[f].r, 1), -QERR_NOTLEADER);
    /* before any leader is known there is no hint */
    tcluster_t d;
    cluster_init(&d, 3, NULL);
    CHECK_EQ(raft_propose(d.nd[1].r, "x", 1, &info), -QERR_NOTLEADER);
    CHECK_EQ(info.leader, 0);
    CHECK_EQ(raft_read_index(d.nd[1].r, 1, &hint), -QERR_NOTLEADER);
    CHECK_EQ(hint, 0);
    raft_prop_info_t ok;
    CHECK_EQ(raft_propose(c.nd[l].r, "y", 1, &ok), 0);
    CHECK_EQ(ok.term, status_of(&c, l).term);
    CHECK_EQ(ok.index, status_of(&c, l).last_index);
    cluster_free(&d);
    cluster_free(&c);
}

/* §5.3 fast backtracking: a follower with 200 conflicting entries is repaired in a few
 * round trips (one per conflicting term), not one per entry. */
TEST(test_fast_backtracking)
{
    tcluster_t c;
    cluster_init(&c, 3, NULL);
    uint64_t good[30], bad[210];
    for (int k = 0; k < 10; k++)
        good[k] = bad[k] = 1;
    for (int k = 10; k < 30; k++)
        good[k] = 3;
    for (int k = 10; k < 210; k++)
        bad[k] = 2;
    craft_log(&c, 1, good, 30, 3);
    craft_log(&c, 2, good, 30, 3);
    craft_log(&c, 3, bad, 210, 3);
    force_campaign(&c, 1);
    deliver_all(&c);
    CHECK_EQ(role_of(&c, 1), RAFT_LEADER);
    run(&c, 3);
    CHECK(c.rejects[3] >= 1);
    CHECK(c.rejects[3] <= 3);
    uint64_t t;
    CHECK_EQ(raft_log_term(c.nd[3].r, 30, &t), 0);
    CHECK_EQ(t, 3);
    CHECK_EQ(status_of(&c, 3).last_index, status_of(&c, 1).last_index);
    CHECK_EQ(status_of(&c, 3).commit, 31);
    CHECK(!c.violation);
    CHECK(sm_prefix_agree(&c));
    cluster_free(&c);
}

/* A single-server group commits on its own once its entries are durable. */
TEST(test_single_node)
{
    tcluster_t c;
    cluster_init(&c, 1, NULL);
    /* a read asked before the term's first entry is durable completes once it is */
    for (int t = 0; t < 30 && role_of(&c, 1) != RAFT_LEADER; t++) {
        raft_tick(c.nd[1].r);
        if (role_of(&c, 1) != RAFT_LEADER)
            process(&c, 1);
    }
    CHECK_EQ(role_of(&c, 1), RAFT_LEADER);
    CHECK_EQ(raft_read_index(c.nd[1].r, 1, NULL), 0);
    process(&c, 1);
    raft_read_state_t first;
    CHECK(find_read(&c.nd[1], 1, &first));
    CHECK_EQ(first.err, 0);
    CHECK_EQ(first.index, 1);
    int l = wait_leader(&c, 30);
    CHECK_EQ(l, 1);
    CHECK_EQ(propose_str(&c, 1, "solo;"), 0);
    CHECK_EQ(status_of(&c, 1).commit, 2);
    CHECK_EQ(c.nd[1].smlen, 5);
    CHECK_EQ(raft_read_index(c.nd[1].r, 3, NULL), 0);
    process(&c, 1);
    raft_read_state_t rs;
    CHECK(find_read(&c.nd[1], 3, &rs));
    CHECK_EQ(rs.index, 2);
    cluster_free(&c);
}

static uint64_t chaos_rng;
static uint64_t next_rand(void)
{
    chaos_rng ^= chaos_rng << 13;
    chaos_rng ^= chaos_rng >> 7;
    chaos_rng ^= chaos_rng << 17;
    return chaos_rng;
}

static bool chaos_drop(tcluster_t *c, const raft_msg_t *m)
{
    (void)c;
    (void)m;
    return next_rand() % 10 == 0;
}

static void chaos_tweak(raft_config_t *cfg)
{
    cfg->max_msg_bytes = 200;
    cfg->max_inflight = 4;
    cfg->snap_chunk_bytes = 100;
}

/* A few seeded runs with drops, partitions, crashes, compaction and membership churn; the
 * harness checks safety on every Ready, and the group must still make progress at the end.
 * (tests/sim does this at scale; this is a smoke test of the same invariants.)
 * RAFT_CHAOS_SEEDS=n runs n seeds instead of 6. */
TEST(test_chaos_smoke)
{
    const char *env = getenv("RAFT_CHAOS_SEEDS"); /* more seeds for a manual soak */
    uint64_t seeds = env ? strtoull(env, NULL, 10) : 6;
    for (uint64_t seed = 1; seed <= seeds; seed++) {
        chaos_rng = seed * 0x9e3779b97f4a7c15ULL + 1;
        tcluster_t c;
        cluster_init(&c, 5, chaos_tweak);
        c.compact_every = 25;
        c.filter = chaos_drop;
        for (int step = 0; step < 400; step++) {
            int l = leader(&c);
            uint64_t x = next_rand() % 100;
            if (x < 50) {
                char b[24];
                snprintf(b, sizeof b, "s%llu.%d;", (unsigned long long)seed, step);
                if (l)
                    propose_str(&c, l, b);
            } else if (x < 53) {
                int i = (int)(next_rand() % 5) + 1;
                if (c.nd[i].up)
                    crash(&c, i);
            } else if (x < 58) {
                for (int i = 1; i <= 5; i++)
                    if (!c.nd[i].up) {
                        node_start(&c, i);
                        break;
                    }
            } else if (x < 60) {
                int i = (int)(next_rand() % 5) + 1;
                isolate(&c, i, true);
            } else if (x < 61) {
                for (int i = 1; i <= 5; i++)
                    isolate(&c, i, false);
            } else if (x < 62 && l) {
                raft_transfer(c.nd[l].r, next_rand() % 5 + 1);
                process(&c, l);
            } else if (x < 64 && l) {
                raft_read_index(c.nd[l].r, (uint64_t)step, NULL);
                process(&c, l);
            }
            run(&c, 1);
            if (c.violation)
                break;
        }
        /* heal and settle */
        c.filter = NULL;
        for (int i = 1; i <= 5; i++) {
            isolate(&c, i, false);
            if (!c.nd[i].up)
                node_start(&c, i);
        }
        int l = wait_leader(&c, 300);
        if (!c.violation) {
            printf("# seed %llu: leader %d term %llu commit %llu\n", (unsigned long long)seed, l,
                   (unsigned long long)(l ? status_of(&c, l).term : 0),
                   (unsigned long long)(l ? status_of(&c, l).commit : 0));
        }
        CHECK(!c.violation);
        CHECK(l != 0);
        int rc = -1;
        for (int t = 0; t < 50 && rc != 0; t++) { /* a transfer may still be running */
            l = leader(&c);
            rc = l ? propose_str(&c, l, "final;") : -1;
            if (rc != 0)
                run(&c, 1);
        }
        CHECK_EQ(rc, 0);
        run(&c, 20);
        for (int i = 1; i <= 5; i++)
            CHECK_EQ(status_of(&c, i).commit, status_of(&c, l).last_index);
        CHECK(sm_prefix_agree(&c));
        CHECK_EQ(c.nd[1].smlen, c.nd[l].smlen);
        cluster_free(&c);
    }
}

/* The persistence contract: a vote granted by a server that crashes before its vote is
 * durable must never reach the candidate, or the server could vote twice in a term. */
TEST(test_crash_before_persist)
{
    tcluster_t c;
    cluster_init(&c, 3, no_prevote);
    c.cut[1][3] = c.cut[3][1] = true;
    c.crash_after_send[2] = true;
    force_campaign(&c, 1); /* term 1: asks 2 only; 2 grants, then dies before persisting */
    deliver_all(&c);
    CHECK(!c.nd[2].up);
    c.crash_after_send[2] = false;
    CHECK_EQ(node_start(&c, 2), 0);
    CHECK_EQ(status_of(&c, 2).term, 0); /* nothing of term 1 was durable */
    force_campaign(&c, 3); /* term 1 again: 2 has no durable vote and grants it */
    deliver_all(&c);
    CHECK_EQ(role_of(&c, 3), RAFT_LEADER);
    CHECK(role_of(&c, 1) != RAFT_LEADER);
    CHECK(!c.violation);
    cluster_free(&c);
}

/* raft_new accepts any torn prefix of a Ready's persist step: entries without the hard
 * state that came with them, a snapshot without the deletion of the entries it replaced. */
TEST(test_boot_after_torn_persist)
{
    raft_config_t cfg = base_cfg(2);
    raft_boot_t b;
    memset(&b, 0, sizeof b);
    b.snap.conf.n = 3;
    for (int j = 0; j < 3; j++)
        b.snap.conf.s[j] = (raft_server_t){ (uint64_t)(j + 1), RAFT_VOTER };
    raft_entry_t e[4];
    for (int k = 0; k < 4; k++)
        e[k] = (raft_entry_t){ .term = k < 2 ? 1 : 3, .index = (uint64_t)k + 1,
                               .type = RAFT_ENTRY_NOOP };
    /* entries of term 3 on disk, hard state still at term 1 with a vote */
    b.hs = (raft_hard_state_t){ .term = 1, .vote = 1, .commit = 9 };
    b.entries = e;
    b.n_entries = 4;
    raft_t *r = NULL;
    CHECK_EQ(raft_new(&cfg, &b, &r), 0);
    raft_status_t st;
    raft_status(r, &st);
    CHECK_EQ(st.term, 3);
    CHECK_EQ(st.vote, 0);      /* the old vote was for term 1 */
    CHECK_EQ(st.commit, 4);    /* clamped to the log */
    CHECK(raft_has_ready(r));  /* the repaired hard state gets persisted */
    raft_ready_t rd;
    raft_ready(r, &rd);
    CHECK(rd.hs_changed);
    CHECK_EQ(rd.hs.term, 3);
    raft_advance(r, &rd);
    raft_free(r);
    /* a snapshot at 3 (term 2) whose install left the old entries 1..4 on disk */
    b.hs = (raft_hard_state_t){ .term = 3, .vote = 0, .commit = 3 };
    b.snap.index = 3;
    b.snap.term = 2;
    CHECK_EQ(raft_new(&cfg, &b, &r), 0);
    raft_status(r, &st);
    CHECK_EQ(st.last_index, 3); /* the conflicting entries are gone */
    CHECK_EQ(st.snap_index, 3);
    raft_free(r);
    /* matching entries around the snapshot are kept (trailing + after) */
    b.snap.term = 3;
    CHECK_EQ(raft_new(&cfg, &b, &r), 0);
    raft_status(r, &st);
    CHECK_EQ(st.last_index, 4);
    CHECK_EQ(st.first_index, 2);
    raft_free(r);
    /* a gap after the snapshot is corruption */
    b.snap.index = 0;
    b.snap.term = 0;
    b.entries = e + 1;
    b.n_entries = 3;
    CHECK_EQ(raft_new(&cfg, &b, &r), -QERR_INVAL);
}

/* ---- messages as values ------------------------------------------------------------------- */

static raft_msg_t sample_append(raft_entry_t *ents)
{
    static const char *p[] = { "alpha", "", "gamma-gamma" };
    for (int i = 0; i < 3; i++) {
        ents[i] = (raft_entry_t){ .term = 4, .index = 11 + (uint64_t)i,
                                  .type = RAFT_ENTRY_NORMAL, .len = (uint32_t)strlen(p[i]),
                                  .data = (const uint8_t *)(strlen(p[i]) ? p[i] : NULL) };
    }
    raft_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = RAFT_MSG_APPEND;
    m.from = 1;
    m.to = 2;
    m.term = 4;
    m.index = 10;
    m.log_term = 3;
    m.commit = 9;
    m.n_entries = 3;
    m.entries = ents;
    return m;
}

static bool same_msg(const raft_msg_t *a, const raft_msg_t *b)
{
    if (a->type != b->type || a->from != b->from || a->to != b->to || a->term != b->term ||
        a->index != b->index || a->log_term != b->log_term || a->commit != b->commit ||
        a->reject != b->reject || a->flags != b->flags || a->ctx != b->ctx ||
        a->hint_index != b->hint_index || a->hint_term != b->hint_term ||
        a->n_entries != b->n_entries || a->len != b->len || a->offset != b->offset)
        return false;
    for (uint32_t i = 0; i < a->n_entries; i++) {
        const raft_entry_t *x = &a->entries[i], *y = &b->entries[i];
        if (x->term != y->term || x->index != y->index || x->type != y->type ||
            x->len != y->len || (x->len && memcmp(x->data, y->data, x->len)))
            return false;
    }
    if (a->len && memcmp(a->data, b->data, a->len))
        return false;
    if (a->type == RAFT_MSG_SNAPSHOT && memcmp(&a->snap, &b->snap, sizeof a->snap))
        return false;
    return true;
}

TEST(test_msg_clone_and_wire)
{
    raft_entry_t ents[3];
    raft_msg_t m = sample_append(ents), c, d;
    CHECK_EQ(raft_msg_clone(&c, &m), 0);
    CHECK(c.mem != NULL);
    CHECK(c.entries != m.entries);
    CHECK(same_msg(&c, &m));
    uint8_t buf[512];
    size_t len;
    CHECK_EQ(raft_msg_encoded_size(&m), 4 + 80 + 4 + 3 * 21 + 16);
    CHECK_EQ(raft_msg_encode(&m, buf, sizeof buf, &len), 0);
    CHECK_EQ(len, raft_msg_encoded_size(&m));
    CHECK_EQ(buf[0], RAFT_WIRE_VERSION);
    CHECK_EQ(raft_msg_encode(&m, buf, len - 1, &len), -QERR_TOOBIG);
    CHECK_EQ(raft_msg_encode(&m, buf, sizeof buf, &len), 0);
    CHECK_EQ(raft_msg_decode(buf, len, &d), 0);
    CHECK(same_msg(&d, &m));
    raft_msg_free(&d);
    /* a snapshot chunk with its configuration */
    raft_msg_t s;
    memset(&s, 0, sizeof s);
    s.type = RAFT_MSG_SNAPSHOT;
    s.from = 3;
    s.to = 1;
    s.term = 9;
    s.snap.index = 77;
    s.snap.term = 8;
    s.snap.conf.n = 2;
    s.snap.conf.s[0] = (raft_server_t){ 1, RAFT_VOTER };
    s.snap.conf.s[1] = (raft_server_t){ 3, RAFT_LEARNER };
    s.offset = 128;
    s.len = 5;
    s.data = (const uint8_t *)"chunk";
    s.flags = RAFT_MSGF_LAST;
    CHECK_EQ(raft_msg_encode(&s, buf, sizeof buf, &len), 0);
    CHECK_EQ(raft_msg_decode(buf, len, &d), 0);
    CHECK(same_msg(&d, &s));
    raft_msg_free(&d);
    /* bad version, truncation at every length, trailing bytes */
    CHECK_EQ(raft_msg_encode(&m, buf, sizeof buf, &len), 0);
    buf[0] = 2;
    CHECK_EQ(raft_msg_decode(buf, len, &d), -QERR_FORMAT);
    buf[0] = RAFT_WIRE_VERSION;
    for (size_t k = 0; k < len; k++) {
        CHECK(raft_msg_decode(buf, k, &d) < 0);
        CHECK(d.mem == NULL && d.entries == NULL);
    }
    CHECK_EQ(raft_msg_decode(buf, len + 1, &d), -QERR_CORRUPT);
    /* random corruption never crashes, and what decodes re-encodes identically */
    uint64_t x = 88172645463325252ULL;
    for (int round = 0; round < 20000; round++) {
        uint8_t b2[512];
        size_t l2 = len;
        memcpy(b2, buf, len);
        for (int f = 0; f < 3; f++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            b2[x % l2] ^= (uint8_t)(x >> 32);
        }
        if (round % 7 == 0)
            l2 = (size_t)(x % len);
        if (raft_msg_decode(b2, l2, &d) == 0) {
            uint8_t b3[512];
            size_t l3;
            CHECK(raft_msg_encoded_size(&d) <= sizeof b3);
            CHECK_EQ(raft_msg_encode(&d, b3, sizeof b3, &l3), 0);
            CHECK_EQ(l3, l2);
            CHECK(memcmp(b2, b3, l2) == 0);
            raft_msg_free(&d);
        }
    }
    raft_msg_free(&c);
    raft_msg_free(&c); /* freeing twice is harmless: the first zeroed it */
    /* configurations */
    raft_conf_t cf = { .n = 2 }, cg;
    cf.s[0] = (raft_server_t){ 5, RAFT_STAGING };
    cf.s[1] = (raft_server_t){ 2, RAFT_VOTER };
    CHECK_EQ(raft_conf_normalize(&cf), 0);
    CHECK_EQ(cf.s[0].id, 2);
    uint8_t cb[RAFT_CONF_MAX_BYTES];
    size_t cl = raft_conf_encode(&cf, cb);
    CHECK_EQ(raft_conf_decode(cb, cl, &cg), 0);
    CHECK(memcmp(&cf, &cg, sizeof cf) == 0);
    CHECK_EQ(raft_conf_decode(cb, cl - 1, &cg), -QERR_CORRUPT);
    cf.s[1].id = 2; /* duplicate */
    CHECK_EQ(raft_conf_normalize(&cf), -QERR_INVAL);
}

/* raft_step refuses malformed input instead of acting on it. */
TEST(test_step_rejects_malformed)
{
    tcluster_t c;
    cluster_init(&c, 3, NULL);
    int l = wait_leader(&c, 100);
    CHECK(l != 0);
    int f = l % 3 + 1;
    raft_entry_t ents[3];
    raft_msg_t m = sample_append(ents);
    m.to = 99;
    CHECK_EQ(raft_step(c.nd[f].r, &m), -QERR_INVAL); /* not for us */
    m.to = (uint64_t)f;
    m.from = (uint64_t)f;
    CHECK_EQ(raft_step(c.nd[f].r, &m), -QERR_INVAL); /* from ourselves */
    m.from = (uint64_t)l;
    ents[1].index = 40;
    CHECK_EQ(raft_step(c.nd[f].r, &m), -QERR_INVAL); /* indexes not consecutive */
    ents[1].index = 12;
    ents[2].term = 99;
    CHECK_EQ(raft_step(c.nd[f].r, &m), -QERR_INVAL); /* entry term beyond the message's */
    m.type = 200;
    CHECK_EQ(raft_step(c.nd[f].r, &m), -QERR_INVAL);
    run(&c, 3);
    CHECK_EQ(leader(&c), l);
    CHECK(!c.violation);
    cluster_free(&c);
}

/* Issue 9, finding 1: a follower that restarts forgets the leader it heard, so without a
 * start-up quiet period it grants a higher-term (pre-)vote while the old leader's lease
 * still stands. Here L is cut from F2; F1 restarts just as F2 campaigns, and L's heartbeats
 * to F1 are delayed. F2 must not commit anything while L can still answer a lease read at
 * its old index. */
TEST(test_lease_survives_follower_restart)
{
    tcluster_t c;
    cluster_init(&c, 3, lease_tweak);
    int l = wait_leader(&c, 100);
    CHECK(l != 0);
    int f1 = l % 3 + 1, f2 = f1 % 3 + 1;
    CHECK_EQ(propose_str(&c, l, "x=1;"), 0);
    run(&c, 3);
    c.cut[l][f2] = c.cut[f2][l] = true;
    /* tick until F2's election timer fires: its pre-votes are queued, not yet delivered */
    bool restarted = false;
    for (int t = 0; t < 100 && !restarted; t++) {
        for (int i = 1; i <= 3; i++) {
            raft_tick(c.nd[i].r);
            process(&c, i);
        }
        if (role_of(&c, f2) == RAFT_PRECANDIDATE) {
            crash(&c, f1);
            CHECK_EQ(node_start(&c, f1), 0);
            c.cut[l][f1] = true;          /* L's next heartbeats reach F1 late */
            restarted = true;
        }
        deliver_all(&c);
    }
    CHECK(restarted);
    uint64_t stale_reads = 0;
    for (int t = 0; t < 60; t++) {
        int nl = leader(&c);
        if (nl == f2 && status_of(&c, f2).commit > status_of(&c, l).commit &&
            status_of(&c, l).lease_valid && role_of(&c, l) == RAFT_LEADER)
            stale_reads++;                /* L would answer a lease read below F2's commit */
        if (nl == f2)
            propose_str(&c, f2, "x=2;");
        run(&c, 1);
    }
    CHECK_EQ(stale_reads, 0);
    c.cut[l][f1] = false;
    c.cut[l][f2] = c.cut[f2][l] = false;
    run(&c, 30);
    CHECK(leader(&c) != 0);
    CHECK(!c.violation);
    cluster_free(&c);
}

static void no_snap_read_tweak(raft_config_t *cfg)
{
    cfg->snap_read = NULL;
    cfg->max_inflight = 1;
}

/* Issue 9, finding 2: without snap_read, a follower whose next index falls into the
 * compacted prefix must not stay in replicate state, or raft_has_ready stays true and
 * raft_ready hands out empty Readies for ever. A late duplicate acknowledgement of the
 * follower's old last index puts it there. */
TEST(test_compacted_follower_without_snap_read_goes_quiet)
{
    tcluster_t c;
    cluster_init(&c, 3, no_snap_read_tweak);
    c.compact_every = 10;
    int l = wait_leader(&c, 100);
    CHECK(l != 0);
    int lag = l % 3 + 1;
    uint64_t lag_last = status_of(&c, lag).last_index;
    isolate(&c, lag, true);
    for (int k = 0; k < 40; k++) {
        CHECK_EQ(propose_str(&c, l, "v;"), 0);
        deliver_all(&c);
    }
    run(&c, 2);
    CHECK(status_of(&c, l).first_index > lag_last + 1);
    raft_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = RAFT_MSG_APPEND_RESP;
    m.from = (uint64_t)lag;
    m.to = (uint64_t)l;
    m.term = status_of(&c, l).term;
    m.index = lag_last;
    CHECK_EQ(raft_step(c.nd[l].r, &m), 0);
    process(&c, l);
    CHECK(!raft_has_ready(c.nd[l].r));
    isolate(&c, lag, false);
    run(&c, 5);
    CHECK(!raft_has_ready(c.nd[l].r));
    CHECK_EQ(leader(&c), l);
    cluster_free(&c);
}

static void no_prevote_tweak(raft_config_t *cfg)
{
    cfg->pre_vote = false;
    cfg->check_quorum = false;
    if (cfg->id == 2)
        cfg->election_tick = 5;           /* n2 always times out first */
}

/* Issue 9, finding 3: a candidate with a stale log that keeps timing out first must not
 * starve the up-to-date servers: rejecting its vote request must not restart their
 * election timers (Figure 2 restarts them only on AppendEntries from the current leader
 * or on granting a vote). */
TEST(test_stale_candidate_cannot_starve_elections)
{
    tcluster_t c;
    cluster_init(&c, 3, no_prevote_tweak);
    int l = 0;
    for (int t = 0; t < 200 && l != 1; t++) {
        l = wait_leader(&c, 100);
        if (l != 1) {                     /* make n1 the leader, so n2 can lag behind it */
            force_campaign(&c, 1);
            deliver_all(&c);
            l = leader(&c);
        }
    }
    CHECK_EQ(l, 1);
    isolate(&c, 2, true);
    for (int k = 0; k < 5; k++)
        CHECK_EQ(propose_str(&c, 1, "w;"), 0);
    run(&c, 2);
    CHECK(status_of(&c, 3).last_index > status_of(&c, 2).last_index);
    crash(&c, 1);
    isolate(&c, 2, false);
    int nl = wait_leader(&c, 200);
    CHECK_EQ(nl, 3);
    CHECK(!c.violation);
    cluster_free(&c);
}

static void mixed_cq_tweak(raft_config_t *cfg)
{
    cfg->lease_reads = cfg->id == 1;
    cfg->max_clock_drift_ticks = 2;
    cfg->check_quorum = cfg->id == 1;     /* n2 and n3 grant votes at any time */
}

/* Issue 9, finding 4: a lease needs check-quorum on the followers that back it. Followers
 * without it say so (no RAFT_MSGF_STICKY), and a leader never gets a lease from them. */
TEST(test_no_lease_from_followers_without_check_quorum)
{
    tcluster_t c;
    cluster_init(&c, 3, mixed_cq_tweak);
    int l = 0;
    for (int t = 0; t < 50 && l != 1; t++) {
        force_campaign(&c, 1);
        deliver_all(&c);
        l = leader(&c);
    }
    CHECK_EQ(l, 1);
    run(&c, 5);
    CHECK(!status_of(&c, 1).lease_valid);
    CHECK_EQ(raft_read_index(c.nd[1].r, 3, NULL), 0);   /* served by a heartbeat round */
    process(&c, 1);
    raft_read_state_t rs;
    CHECK(!find_read(&c.nd[1], 3, &rs));
    deliver_all(&c);
    CHECK(find_read(&c.nd[1], 3, &rs));
    CHECK_EQ(rs.err, 0);
    cluster_free(&c);
}

static void lease_noprevote_tweak(raft_config_t *cfg)
{
    cfg->lease_reads = true;
    cfg->max_clock_drift_ticks = 2;
    cfg->pre_vote = false;
}

/* Simulator finding 5: a stale message that makes a server of a higher term answer a
 * follower (here an old VOTE request of the follower's own, answered by a candidate C)
 * brings it the higher term, and with it used to clear the leader it heard from, so it
 * granted C's next vote while the old leader's lease, backed by that follower, still held. */
TEST(test_lease_survives_stale_higher_term)
{
    int bad = 0;
    for (int k = 0; k < 20; k++) {
        tcluster_t c;
        cluster_init(&c, 3, lease_noprevote_tweak);
        int l = wait_leader(&c, 100);
        CHECK(l != 0);
        int f = l % 3 + 1, cand = f % 3 + 1;
        run(&c, 3);
        c.cut[l][cand] = c.cut[cand][l] = true;
        for (int t = 0; t < 100 && status_of(&c, cand).term <= status_of(&c, l).term; t++)
            run(&c, 1);
        run(&c, k);
        raft_msg_t m;
        memset(&m, 0, sizeof m);
        m.type = RAFT_MSG_VOTE;             /* an old vote request of f's, delivered late */
        m.from = (uint64_t)f;
        m.to = (uint64_t)cand;
        m.term = 1;
        raft_step(c.nd[cand].r, &m);
        process(&c, cand);
        c.cut[f][l] = true;
        deliver_all(&c);
        for (int t = 0; t < 30; t++) {
            int nl = leader(&c);
            if (nl == cand && role_of(&c, l) == RAFT_LEADER && status_of(&c, l).lease_valid &&
                status_of(&c, cand).term > status_of(&c, l).term) {
                bad++;
                break;
            }
            run(&c, 1);
        }
        cluster_free(&c);
    }
    CHECK_EQ(bad, 0);
}

int main(void)
{
    RUN(test_elect_and_replicate);
    RUN(test_figure8);
    RUN(test_stale_log_cannot_win);
    RUN(test_partitioned_leader_steps_down);
    RUN(test_prevote_rejoin);
    RUN(test_snapshot_catch_up);
    RUN(test_leader_removes_itself);
    RUN(test_removed_leader_hands_over_to_lagging);
    RUN(test_transfer_to_lagging);
    RUN(test_transfer_abort);
    RUN(test_read_index_deposed_leader);
    RUN(test_read_waits_for_term_commit);
    RUN(test_lease_read);
    RUN(test_learner_promotion);
    RUN(test_backpressure);
    RUN(test_notleader_hint);
    RUN(test_fast_backtracking);
    RUN(test_single_node);
    RUN(test_crash_before_persist);
    RUN(test_boot_after_torn_persist);
    RUN(test_chaos_smoke);
    RUN(test_msg_clone_and_wire);
    RUN(test_step_rejects_malformed);
    RUN(test_lease_survives_follower_restart);
    RUN(test_compacted_follower_without_snap_read_goes_quiet);
    RUN(test_stale_candidate_cannot_starve_elections);
    RUN(test_no_lease_from_followers_without_check_quorum);
    RUN(test_lease_survives_stale_higher_term);
    return CHECK_DONE();
}
