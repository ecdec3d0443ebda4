/* tests/sim/scale.c — the scale model behind tests/sim/scale.h: nodes hosting real
 * cluster/raft.c cores on a discrete-event clock, a node-pair transport that counts frames
 * both plain and coalesced, and the quiescence driver (docs/SCALING.md). The driver only
 * withholds ticks and adds its own items (quiesce marker, wake request, liveness beat) next
 * to the Raft messages; it never alters one, so Raft's safety does not depend on it, and the
 * model checks it anyway: at most one leader per term per group, every replica applies the
 * same entry at an index, every new leader holds every committed entry. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/placement.h"
#include "tests/sim/rng.h"
#include "tests/sim/scale.h"

/* ---- the model's own allocations, counted so the cores' bytes can be told apart -------- */

static int64_t model_bytes;

static void *m_alloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (!p) {
        fprintf(stderr, "scale: out of memory\n");
        abort();
    }
    model_bytes += (int64_t)malloc_usable_size(p);
    return p;
}

static void *m_realloc(void *p, size_t n)
{
    size_t old = p ? malloc_usable_size(p) : 0;
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "scale: out of memory\n");
        abort();
    }
    model_bytes += (int64_t)malloc_usable_size(q) - (int64_t)old;
    return q;
}

static void m_free(void *p)
{
    if (!p)
        return;
    model_bytes -= (int64_t)malloc_usable_size(p);
    free(p);
}

#define GROW(arr, n, cap)                                                      \
    do {                                                                       \
        if ((n) == (cap)) {                                                    \
            (cap) = (cap) ? 2 * (cap) : 4;                                     \
            (arr) = m_realloc((arr), (cap) * sizeof *(arr));                   \
        }                                                                      \
    } while (0)

/* ---- structures ------------------------------------------------------------------------ */

/* One replica: a core on a node, plus the quiescence driver's state for it. */
typedef struct rep {
    raft_t *r;
    uint32_t group;
    uint32_t node;             /* index 0..nodes-1; the server id is node + 1 */
    uint8_t slot;              /* its place in the group's rep[] */
    bool dirty;                /* in its node's dirty list: run its Ready at the flush */
    bool quiet;                /* quiesced: gets no ticks */
    uint64_t quiet_tick;       /* its node's tick count when it quiesced */
    uint32_t silent;           /* awake follower: ticks without a message of its group */
    /* leader: a quiescence attempt (q_round 0: none) */
    uint64_t q_round, q_index, q_term;
    uint8_t q_acks;            /* slots that acknowledged round >= q_round at q_index */
    uint64_t applied;          /* last index applied */
} rep_t;

typedef struct centry {
    uint64_t term, hash;
} centry_t;

typedef struct lterm {
    uint64_t term, id;
} lterm_t;

typedef struct pprop {
    uint64_t index, term, t_us;
    uint8_t slot;
} pprop_t;

typedef struct group {
    rep_t rep[SCALE_R];
    centry_t *log;             /* the committed record: entry index i at log[i-1] */
    size_t n_log, cap_log;
    lterm_t *leaders;          /* every (term, leader) seen */
    size_t n_leaders, cap_leaders;
    pprop_t *pend;             /* proposals waiting for their apply on the proposer */
    size_t n_pend, cap_pend;
    uint64_t top_term;         /* highest term with a leader */
    uint64_t kill_term;        /* the killed leader's term; 0: not led by the killed node */
    int64_t kill_slot;         /* index in the kill stats */
} group_t;

enum { IT_RAFT = 1, IT_QUIESCE, IT_WAKE };

typedef struct item {
    uint8_t kind;
    uint32_t group;
    uint64_t term, index;      /* IT_QUIESCE */
    raft_msg_t m;              /* IT_RAFT; owns its memory (m.mem) if it has any */
} item_t;

typedef struct bundle {
    uint32_t from, to;         /* node indexes */
    item_t *it;
    size_t n, cap;
} bundle_t;

typedef struct node {
    bool dead;
    rep_t **reps;
    size_t n_reps, cap_reps;
    rep_t **dirty;
    size_t n_dirty;
    uint64_t ticks;
    bundle_t **out;            /* per destination, NULL when nothing is queued */
    uint32_t *out_list;
    size_t n_out;
    uint64_t *last_heard;      /* per peer: µs of the last arrival from it */
    uint64_t *content_tick;    /* per peer: tick of the last non-empty bundle sent to it */
    bool *peer_dead;           /* per peer: this node's liveness view */
    scale_counters_t c;
} node_t;

enum { EV_TICK = 1, EV_ARRIVE, EV_LOAD };

typedef struct event {
    uint64_t t, seq;
    uint32_t type, node;
    bundle_t *b;
} event_t;

struct scale {
    scale_config_t cfg;
    rng_t rng;
    node_t *nodes;
    group_t *groups;
    event_t *heap;
    size_t n_heap, cap_heap;
    uint64_t seq, now;
    uint64_t *pair_last;       /* nodes x nodes: last arrival time scheduled (FIFO links) */
    uint32_t load;             /* proposals per second */
    bool load_scheduled;
    uint64_t prop_seq;
    uint64_t transfers;
    uint64_t tick_us;
    /* kill */
    bool killed;
    uint64_t kill_us;
    uint32_t kill_node;
    scale_kill_stats_t ks;
    size_t cap_lat;
    scale_checks_t ck;
    /* memory accounting */
    int64_t uord0, model0;
};

/* ---- checks ------------------------------------------------------------------------------ */

static void violation(scale_t *s, const char *fmt, uint32_t g, uint64_t a, uint64_t b)
{
    if (s->ck.violations++ == 0)
        snprintf(s->ck.first, sizeof s->ck.first, "t=%.3f ms group %u: %s (%llu, %llu)",
                 s->now / 1000.0, g, fmt, (unsigned long long)a, (unsigned long long)b);
}

static uint64_t fnv(const uint8_t *p, size_t n, uint64_t type)
{
    uint64_t h = 1469598103934665603ULL ^ type;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

/* A replica became (or is) leader of term: Election Safety and Leader Completeness. */
static void saw_leader(scale_t *s, rep_t *rp, uint64_t term)
{
    group_t *g = &s->groups[rp->group];
    uint64_t id = rp->node + 1;
    for (size_t i = 0; i < g->n_leaders; i++)
        if (g->leaders[i].term == term) {
            if (g->leaders[i].id != id)
                violation(s, "two leaders in one term", rp->group, term, id);
            return;
        }
    GROW(g->leaders, g->n_leaders, g->cap_leaders);
    g->leaders[g->n_leaders++] = (lterm_t){ term, id };
    s->ck.leader_terms++;
    /* §5.4 Leader Completeness: every entry committed so far is in the new leader's log */
    for (size_t i = 0; i < g->n_log; i++) {
        uint64_t t;
        if (raft_log_term(rp->r, i + 1, &t) != 0 || t != g->log[i].term) {
            violation(s, "new leader lacks a committed entry", rp->group, term, i + 1);
            break;
        }
    }
    s->ck.completeness++;
    if (term > g->top_term)
        g->top_term = term;
    if (s->killed) {
        if (g->kill_term && term > g->kill_term) {
            int64_t *e = &s->ks.elected_us[g->kill_slot];
            if (*e < 0)
                *e = (int64_t)(s->now - s->kill_us);
        } else if (!g->kill_term) {
            s->ks.other_elections++;
        }
    }
}

/* State Machine Safety: the entry applied at an index is the same on every replica. */
static void applied_entry(scale_t *s, rep_t *rp, const raft_entry_t *e, const raft_status_t *st)
{
    group_t *g = &s->groups[rp->group];
    if (e->index != rp->applied + 1)
        violation(s, "applied out of order", rp->group, e->index, rp->applied);
    rp->applied = e->index;
    uint64_t h = fnv(e->data, e->len, e->type);
    if (e->index <= g->n_log) {
        centry_t *c = &g->log[e->index - 1];
        if (c->term != e->term || c->hash != h)
            violation(s, "replicas applied different entries at an index", rp->group,
                      e->index, e->term);
    } else if (e->index == g->n_log + 1) {
        GROW(g->log, g->n_log, g->cap_log);
        g->log[g->n_log++] = (centry_t){ e->term, h };
    } else {
        violation(s, "applied past the committed record", rp->group, e->index, g->n_log);
    }
    s->ck.applies++;
    /* the proposer's leader applying its proposal acknowledges it */
    for (size_t i = 0; i < g->n_pend; i++) {
        pprop_t *p = &g->pend[i];
        if (p->slot != rp->slot || p->index != e->index)
            continue;
        if (p->term == e->term) {
            s->ck.acked++;
            if (s->ck.commit_lat_n == s->cap_lat) {
                s->cap_lat = s->cap_lat ? 2 * s->cap_lat : 1024;
                s->ck.commit_lat_us =
                    m_realloc(s->ck.commit_lat_us, s->cap_lat * sizeof(int64_t));
            }
            s->ck.commit_lat_us[s->ck.commit_lat_n++] = (int64_t)(s->now - p->t_us);
        } else {
            s->ck.lost++;
        }
        g->pend[i] = g->pend[--g->n_pend];
        break;
    }
    /* a leader serving in the term after the kill */
    if (s->killed && g->kill_term && st->role == RAFT_LEADER && e->term == st->term &&
        e->term > g->kill_term) {
        int64_t *sv = &s->ks.serving_us[g->kill_slot];
        if (*sv < 0)
            *sv = (int64_t)(s->now - s->kill_us);
    }
}

/* ---- events ------------------------------------------------------------------------------ */

static bool ev_less(const event_t *a, const event_t *b)
{
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void push_event(scale_t *s, uint64_t t, uint32_t type, uint32_t node, bundle_t *b)
{
    GROW(s->heap, s->n_heap, s->cap_heap);
    size_t i = s->n_heap++;
    event_t e = { t, s->seq++, type, node, b };
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ev_less(&e, &s->heap[p]))
            break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = e;
}

static event_t pop_event(scale_t *s)
{
    event_t top = s->heap[0];
    event_t last = s->heap[--s->n_heap];
    size_t i = 0, n = s->n_heap;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const event_t *best = &last;
        if (l < n && ev_less(&s->heap[l], best)) {
            m = l;
            best = &s->heap[l];
        }
        if (r < n && ev_less(&s->heap[r], best))
            m = r;
        if (m == i)
            break;
        s->heap[i] = s->heap[m];
        i = m;
    }
    if (n)
        s->heap[i] = last;
    return top;
}

/* ---- the transport ------------------------------------------------------------------------ */

static node_t *node_of(scale_t *s, rep_t *rp) { return &s->nodes[rp->node]; }

static bundle_t *out_bundle(scale_t *s, uint32_t from, uint32_t to)
{
    node_t *n = &s->nodes[from];
    if (!n->out[to]) {
        bundle_t *b = m_alloc(sizeof *b);
        b->from = from;
        b->to = to;
        n->out[to] = b;
        n->out_list[n->n_out++] = to;
    }
    return n->out[to];
}

static item_t *add_item(scale_t *s, uint32_t from, uint32_t to, uint8_t kind, uint32_t group)
{
    bundle_t *b = out_bundle(s, from, to);
    GROW(b->it, b->n, b->cap);
    item_t *it = &b->it[b->n++];
    memset(it, 0, sizeof *it);
    it->kind = kind;
    it->group = group;
    return it;
}

static void send_msg(scale_t *s, rep_t *rp, const raft_msg_t *m)
{
    uint32_t to = (uint32_t)(m->to - 1);
    item_t *it = add_item(s, rp->node, to, IT_RAFT, rp->group);
    if (m->n_entries == 0 && m->len == 0) {
        it->m = *m;            /* nothing to own: a plain copy */
        it->m.mem = NULL;
    } else {
        if (raft_msg_clone(&it->m, m) != 0) {
            fprintf(stderr, "scale: out of memory\n");
            abort();
        }
        model_bytes += (int64_t)malloc_usable_size(it->m.mem);
    }
    if (m->type < RAFT_MSG__COUNT)
        node_of(s, rp)->c.raft[m->type]++;
}

static void free_item(item_t *it)
{
    if (it->kind == IT_RAFT && it->m.mem) {
        model_bytes -= (int64_t)malloc_usable_size(it->m.mem);
        raft_msg_free(&it->m);
    }
}

static void free_bundle(bundle_t *b)
{
    for (size_t i = 0; i < b->n; i++)
        free_item(&b->it[i]);
    m_free(b->it);
    m_free(b);
}

/* Frame and byte accounting of one flushed bundle (scale.h, scale_counters_t). Compact beat
 * entries (coal): HEARTBEAT group+term+commit+round = 28 bytes, HEARTBEAT_RESP
 * group+term+round+last index+flags = 29, quiesce marker group+term+index = 20, wake 4. */
#define FRAME_HDR 16
static void account(node_t *n, const bundle_t *b)
{
    uint64_t beat_entries = 0, beat_bytes = 0;
    for (size_t i = 0; i < b->n; i++) {
        const item_t *it = &b->it[i];
        uint64_t plain, compact = 0;
        if (it->kind == IT_RAFT) {
            plain = FRAME_HDR + 4 + raft_msg_encoded_size(&it->m);
            if (it->m.type == RAFT_MSG_HEARTBEAT)
                compact = 28;
            else if (it->m.type == RAFT_MSG_HEARTBEAT_RESP)
                compact = 29;
        } else if (it->kind == IT_QUIESCE) {
            plain = FRAME_HDR + 20;
            compact = 20;
            n->c.markers++;
        } else {
            plain = FRAME_HDR + 4;
            compact = 4;
            n->c.wakes++;
        }
        n->c.frames_plain++;
        n->c.bytes_plain += plain;
        if (compact) {
            beat_entries++;
            beat_bytes += compact;
        } else {
            n->c.frames_coal++;
            n->c.bytes_coal += plain;
        }
    }
    if (beat_entries || b->n == 0) {   /* an empty bundle is a liveness beat */
        n->c.frames_coal++;
        n->c.bytes_coal += FRAME_HDR + beat_bytes;
    }
    if (b->n == 0) {
        n->c.frames_plain++;
        n->c.bytes_plain += FRAME_HDR;
        n->c.beats++;
    }
}

/* ---- the Ready loop and the quiescence driver --------------------------------------------- */

static void mark_dirty(scale_t *s, rep_t *rp)
{
    if (rp->dirty)
        return;
    rp->dirty = true;
    node_t *n = node_of(s, rp);
    n->dirty[n->n_dirty++] = rp;
}

static void wake(scale_t *s, rep_t *rp)
{
    rp->quiet = false;
    rp->q_round = 0;
    rp->silent = 0;
    mark_dirty(s, rp);
}

/* Leader side: a heartbeat round R just went out. Quiescence starts being attempted when the
 * leader has committed its whole log and every follower on a live node (this node's view)
 * has it all: the round's heartbeats carry commit = last index, so once each live follower
 * answers round >= R with last index = that index, each has committed everything. */
static void maybe_start_quiesce(scale_t *s, rep_t *rp, uint64_t round, const raft_status_t *st)
{
    if (rp->q_round || st->commit != st->last_index || st->transfer_target)
        return;
    node_t *n = node_of(s, rp);
    group_t *g = &s->groups[rp->group];
    for (int k = 0; k < SCALE_R; k++) {
        rep_t *o = &g->rep[k];
        if (o == rp || n->peer_dead[o->node])
            continue;
        raft_progress_t p;
        if (raft_progress(rp->r, o->node + 1, &p) != 0 || p.match != st->last_index)
            return;
    }
    rp->q_round = round;
    rp->q_index = st->last_index;
    rp->q_term = st->term;
    rp->q_acks = 0;
}

static void maybe_quiesce(scale_t *s, rep_t *rp)
{
    if (!rp->q_round || rp->quiet)
        return;
    node_t *n = node_of(s, rp);
    group_t *g = &s->groups[rp->group];
    for (int k = 0; k < SCALE_R; k++) {
        rep_t *o = &g->rep[k];
        if (o != rp && !n->peer_dead[o->node] && !(rp->q_acks & (1u << k)))
            return;
    }
    raft_status_t st;
    raft_status(rp->r, &st);
    if (st.role != RAFT_LEADER || st.term != rp->q_term || st.last_index != rp->q_index ||
        st.commit != rp->q_index) {
        rp->q_round = 0;
        return;
    }
    rp->quiet = true;
    rp->quiet_tick = n->ticks;
    for (int k = 0; k < SCALE_R; k++) {
        rep_t *o = &g->rep[k];
        if (o == rp || n->peer_dead[o->node])
            continue;
        item_t *it = add_item(s, rp->node, o->node, IT_QUIESCE, rp->group);
        it->term = rp->q_term;
        it->index = rp->q_index;
    }
}

/* Runs one replica's Ready loop: (a) msgs, (b) persist (the core's log is the disk here:
 * instant), (c) msgs_after_persist, (d) apply, advance; then the leader's quiescence hooks. */
static void run_ready(scale_t *s, rep_t *rp)
{
    for (int loops = 0; loops < 16 && raft_has_ready(rp->r); loops++) {
        raft_ready_t rd;
        raft_ready(rp->r, &rd);
        raft_status_t st;
        raft_status(rp->r, &st);
        bool active = rd.n_entries || rd.n_committed || rd.snapshot || rd.snap_chunk;
        uint64_t round = 0;
        for (size_t i = 0; i < rd.n_msgs; i++) {
            send_msg(s, rp, &rd.msgs[i]);
            if (rd.msgs[i].type == RAFT_MSG_HEARTBEAT)
                round = rd.msgs[i].ctx;
            else if (rd.msgs[i].type != RAFT_MSG_HEARTBEAT_RESP)
                active = true;
        }
        for (size_t i = 0; i < rd.n_msgs_after_persist; i++) {
            send_msg(s, rp, &rd.msgs_after_persist[i]);
            active = true;
        }
        if (st.role == RAFT_LEADER)
            saw_leader(s, rp, st.term);
        for (size_t i = 0; i < rd.n_committed; i++)
            applied_entry(s, rp, &rd.committed[i], &st);
        raft_advance(rp->r, &rd);
        if (!s->cfg.quiesce)
            continue;
        if (active && rp->quiet)
            wake(s, rp);
        else if (active)
            rp->q_round = 0;
        if (st.role == RAFT_LEADER && round && !active) {
            raft_status(rp->r, &st);
            maybe_start_quiesce(s, rp, round, &st);
        }
    }
}

/* Sends every bundle queued on node ni: each arrives after the link latency, in order. */
static void flush(scale_t *s, uint32_t ni)
{
    node_t *n = &s->nodes[ni];
    for (size_t i = 0; i < n->n_dirty; i++) {
        rep_t *rp = n->dirty[i];
        rp->dirty = false;
        run_ready(s, rp);
    }
    n->n_dirty = 0;
    for (size_t i = 0; i < n->n_out; i++) {
        uint32_t to = n->out_list[i];
        bundle_t *b = n->out[to];
        n->out[to] = NULL;
        account(n, b);
        if (b->n)
            n->content_tick[to] = n->ticks;
        uint64_t t = s->now + s->cfg.lat_min_us + rng_below(&s->rng, s->cfg.lat_jitter_us);
        uint64_t *last = &s->pair_last[(size_t)ni * s->cfg.nodes + to];
        if (t <= *last)
            t = *last + 1;
        *last = t;
        push_event(s, t, EV_ARRIVE, to, b);
    }
    n->n_out = 0;
}

static rep_t *local_rep(scale_t *s, uint32_t group, uint32_t node)
{
    group_t *g = &s->groups[group];
    for (int k = 0; k < SCALE_R; k++)
        if (g->rep[k].node == node)
            return &g->rep[k];
    return NULL;
}

static void arrive(scale_t *s, bundle_t *b)
{
    node_t *n = &s->nodes[b->to];
    if (n->dead) {
        free_bundle(b);
        return;
    }
    n->last_heard[b->from] = s->now;
    if (n->peer_dead[b->from])
        n->peer_dead[b->from] = false;   /* not modelled: nodes never come back */
    for (size_t i = 0; i < b->n; i++) {
        item_t *it = &b->it[i];
        rep_t *rp = local_rep(s, it->group, b->to);
        if (!rp) {
            violation(s, "item for a group the node does not host", it->group, b->to, 0);
            continue;
        }
        if (it->kind == IT_RAFT) {
            bool resp = it->m.type == RAFT_MSG_HEARTBEAT_RESP;
            if (s->cfg.quiesce) {
                if (rp->quiet && !resp)
                    wake(s, rp);
                rp->silent = 0;
            }
            if (raft_step(rp->r, &it->m) != 0)
                violation(s, "raft_step refused a message", it->group, it->m.type, 0);
            n->c.steps++;
            mark_dirty(s, rp);
            if (s->cfg.quiesce && resp && rp->q_round && it->m.term == rp->q_term &&
                it->m.ctx >= rp->q_round) {
                rep_t *from = local_rep(s, it->group, b->from);
                if (it->m.index == rp->q_index)
                    rp->q_acks |= (uint8_t)(1u << from->slot);
                else
                    rp->q_round = 0;
                maybe_quiesce(s, rp);
            }
        } else if (it->kind == IT_QUIESCE) {
            if (rp->quiet)
                continue;
            raft_status_t st;
            raft_status(rp->r, &st);
            if (st.role == RAFT_FOLLOWER && st.term == it->term && st.leader == b->from + 1 &&
                st.commit == it->index && st.last_index == it->index) {
                rp->quiet = true;
                rp->quiet_tick = n->ticks;
            } else {
                add_item(s, b->to, b->from, IT_WAKE, it->group);
            }
        } else {
            raft_status_t st;
            raft_status(rp->r, &st);
            if (st.role == RAFT_LEADER)
                wake(s, rp);
        }
    }
    uint32_t to = b->to;
    free_bundle(b);
    flush(s, to);
}

static void node_tick(scale_t *s, uint32_t ni)
{
    node_t *n = &s->nodes[ni];
    if (n->dead)
        return;
    n->ticks++;
    uint32_t half = s->cfg.election_tick / 2 ? s->cfg.election_tick / 2 : 1;
    for (size_t i = 0; i < n->n_reps; i++) {
        rep_t *rp = n->reps[i];
        if (s->cfg.quiesce && rp->quiet)
            continue;
        raft_tick(rp->r);
        n->c.ticks++;
        mark_dirty(s, rp);
        if (!s->cfg.quiesce)
            continue;
        /* Safety net: an awake follower that hears nothing of its group while the leader's
         * node is alive asks the leader to wake up rather than wait to campaign (a leader
         * that quiesced without it: a marker it declined, a stray message that woke it). */
        raft_status_t st;
        raft_status(rp->r, &st);
        if (st.role == RAFT_FOLLOWER && st.leader && st.leader != ni + 1 &&
            !n->peer_dead[st.leader - 1] && ++rp->silent >= half) {
            rp->silent = 0;
            add_item(s, ni, (uint32_t)(st.leader - 1), IT_WAKE, rp->group);
            s->ck.wake_requests++;
        }
    }
    if (s->cfg.quiesce) {
        uint64_t live_ticks = s->cfg.live_ms / s->cfg.tick_ms;
        if (!live_ticks)
            live_ticks = 1;
        uint64_t timeout_us = (uint64_t)s->cfg.live_timeout_ms * 1000;
        for (uint32_t p = 0; p < s->cfg.nodes; p++) {
            if (p == ni)
                continue;
            /* the liveness beat: an empty bundle at every beat boundary, unless something
             * else went to that peer during the last period */
            if (n->ticks % live_ticks == 0 && n->ticks - n->content_tick[p] >= live_ticks)
                out_bundle(s, ni, p);
            if (!n->peer_dead[p] && s->now - n->last_heard[p] > timeout_us) {
                n->peer_dead[p] = true;
                /* wake every quiesced follower whose leader is there, with the ticks it
                 * was not given since it last heard of that node (the liveness beats stood
                 * in for the leader's heartbeats), at most an election timeout: the
                 * randomized part of the timer still separates the followers' campaigns */
                uint64_t silent_ticks = (s->now - n->last_heard[p]) / s->tick_us;
                for (size_t i = 0; i < n->n_reps; i++) {
                    rep_t *rp = n->reps[i];
                    raft_status_t st;
                    raft_status(rp->r, &st);
                    if (st.leader != p + 1)
                        continue;
                    if (rp->quiet) {
                        uint64_t owed = n->ticks - rp->quiet_tick;
                        if (owed > silent_ticks)
                            owed = silent_ticks;
                        if (owed > s->cfg.election_tick)
                            owed = s->cfg.election_tick;
                        wake(s, rp);
                        for (uint64_t k = 0; k < owed; k++) {
                            raft_tick(rp->r);
                            n->c.ticks++;
                        }
                    }
                }
            }
        }
    }
    flush(s, ni);
    push_event(s, s->now + s->tick_us, EV_TICK, ni, NULL);
}

/* ---- load ---------------------------------------------------------------------------------- */

static rep_t *find_leader(scale_t *s, uint32_t group)
{
    group_t *g = &s->groups[group];
    rep_t *best = NULL;
    uint64_t best_term = 0;
    for (int k = 0; k < SCALE_R; k++) {
        rep_t *rp = &g->rep[k];
        if (s->nodes[rp->node].dead)
            continue;
        raft_status_t st;
        raft_status(rp->r, &st);
        if (st.role == RAFT_LEADER && st.term > best_term) {
            best = rp;
            best_term = st.term;
        }
    }
    return best;
}

static void propose(scale_t *s, uint32_t group)
{
    s->ck.proposals++;
    rep_t *rp = find_leader(s, group);
    if (!rp) {
        s->ck.no_leader++;
        return;
    }
    uint8_t buf[4096];
    size_t len = s->cfg.payload < sizeof buf ? s->cfg.payload : sizeof buf;
    memset(buf, 0, len);
    uint64_t id = ++s->prop_seq;
    memcpy(buf, &id, len < 8 ? len : 8);
    if (s->cfg.quiesce)
        wake(s, rp);
    raft_prop_info_t info;
    int rc = raft_propose(rp->r, buf, len, &info);
    if (rc != 0) {
        s->ck.no_leader++;
        return;
    }
    group_t *g = &s->groups[group];
    GROW(g->pend, g->n_pend, g->cap_pend);
    g->pend[g->n_pend++] = (pprop_t){ info.index, info.term, s->now, rp->slot };
    mark_dirty(s, rp);
    flush(s, rp->node);
}

static void load_event(scale_t *s)
{
    s->load_scheduled = false;
    if (!s->load)
        return;
    propose(s, (uint32_t)rng_below(&s->rng, s->cfg.groups));
    s->load_scheduled = true;
    push_event(s, s->now + 1000000ull / s->load, EV_LOAD, 0, NULL);
}

/* ---- public API ---------------------------------------------------------------------------- */

void scale_config_defaults(scale_config_t *c)
{
    if (!c->nodes)
        c->nodes = 100;
    if (!c->groups)
        c->groups = 10000;
    if (!c->tick_ms)
        c->tick_ms = 100;
    if (!c->election_tick)
        c->election_tick = 10;
    if (!c->heartbeat_tick)
        c->heartbeat_tick = 1;
    if (!c->max_inflight)
        c->max_inflight = 256;
    if (!c->live_ms)
        c->live_ms = 500;
    if (!c->live_timeout_ms)
        c->live_timeout_ms = 1500;
    if (!c->lat_min_us)
        c->lat_min_us = 200;
    if (!c->lat_jitter_us)
        c->lat_jitter_us = 600;
    if (!c->payload)
        c->payload = 64;
}

scale_t *scale_new(const scale_config_t *cfg)
{
    scale_config_t c = *cfg;
    scale_config_defaults(&c);
    if (c.nodes < SCALE_R || c.nodes > SCALE_MAX_NODES || c.groups > SCALE_MAX_GROUPS ||
        c.heartbeat_tick >= c.election_tick || c.election_tick > 1000 ||
        c.max_inflight > 65536 || c.live_timeout_ms <= c.live_ms || c.live_ms < c.tick_ms ||
        c.tick_ms > 60000 || c.lat_min_us + (uint64_t)c.lat_jitter_us > 10000000) {
        fprintf(stderr, "scale: bad configuration: needs %u <= nodes <= %u, groups <= %u, "
                        "heartbeat_tick < election_tick <= 1000, max_inflight <= 65536, "
                        "tick <= live period < live timeout, tick <= 60 s\n",
                SCALE_R, SCALE_MAX_NODES, SCALE_MAX_GROUPS);
        return NULL;
    }
    scale_t *s = m_alloc(sizeof *s);
    s->cfg = c;
    rng_seed(&s->rng, c.seed);
    s->tick_us = (uint64_t)c.tick_ms * 1000;
    s->nodes = m_alloc(c.nodes * sizeof *s->nodes);
    s->groups = m_alloc((size_t)c.groups * sizeof *s->groups);
    s->pair_last = m_alloc((size_t)c.nodes * c.nodes * sizeof *s->pair_last);
    uint64_t *ids = m_alloc(c.nodes * sizeof *ids);
    for (uint32_t i = 0; i < c.nodes; i++) {
        node_t *n = &s->nodes[i];
        ids[i] = i + 1;
        n->out = m_alloc(c.nodes * sizeof *n->out);
        n->out_list = m_alloc(c.nodes * sizeof *n->out_list);
        n->last_heard = m_alloc(c.nodes * sizeof *n->last_heard);
        n->content_tick = m_alloc(c.nodes * sizeof *n->content_tick);
        n->peer_dead = m_alloc(c.nodes * sizeof *n->peer_dead);
    }
    /* placement first, so every per-node array is allocated before the cores */
    for (uint32_t g = 0; g < c.groups; g++) {
        uint64_t out[SCALE_R];
        replicas_for_shard(g, ids, c.nodes, SCALE_R, out);
        for (int k = 0; k < SCALE_R; k++) {
            rep_t *rp = &s->groups[g].rep[k];
            rp->group = g;
            rp->node = (uint32_t)(out[k] - 1);
            rp->slot = (uint8_t)k;
            node_t *n = &s->nodes[rp->node];
            GROW(n->reps, n->n_reps, n->cap_reps);
            n->reps[n->n_reps++] = rp;
        }
    }
    for (uint32_t i = 0; i < c.nodes; i++)
        s->nodes[i].dirty = m_alloc((s->nodes[i].n_reps + 1) * sizeof(rep_t *));
    s->cap_heap = 4096;
    s->heap = m_alloc(s->cap_heap * sizeof *s->heap);
    s->uord0 = (int64_t)mallinfo2().uordblks;
    s->model0 = model_bytes;
    for (uint32_t g = 0; g < c.groups; g++) {
        raft_boot_t boot = { 0 };
        boot.snap.conf.n = SCALE_R;
        for (int k = 0; k < SCALE_R; k++)
            boot.snap.conf.s[k] = (raft_server_t){ s->groups[g].rep[k].node + 1, RAFT_VOTER };
        for (int k = 0; k < SCALE_R; k++) {
            rep_t *rp = &s->groups[g].rep[k];
            raft_config_t rc = {
                .id = rp->node + 1, .election_tick = c.election_tick,
                .heartbeat_tick = c.heartbeat_tick, .max_inflight = c.max_inflight,
                .seed = rng_next(&s->rng), .pre_vote = true, .check_quorum = true,
            };
            if (raft_new(&rc, &boot, &rp->r) != 0) {
                fprintf(stderr, "scale: raft_new failed for group %u\n", g);
                abort();
            }
        }
    }
    m_free(ids);
    for (uint32_t i = 0; i < c.nodes; i++)
        push_event(s, rng_below(&s->rng, s->tick_us), EV_TICK, i, NULL);
    return s;
}

void scale_free(scale_t *s)
{
    if (!s)
        return;
    while (s->n_heap) {
        event_t e = pop_event(s);
        if (e.b)
            free_bundle(e.b);
    }
    for (uint32_t g = 0; g < s->cfg.groups; g++) {
        group_t *gr = &s->groups[g];
        for (int k = 0; k < SCALE_R; k++)
            raft_free(gr->rep[k].r);
        m_free(gr->log);
        m_free(gr->leaders);
        m_free(gr->pend);
    }
    for (uint32_t i = 0; i < s->cfg.nodes; i++) {
        node_t *n = &s->nodes[i];
        for (uint32_t j = 0; j < s->cfg.nodes; j++)
            if (n->out[j])
                free_bundle(n->out[j]);
        m_free(n->reps);
        m_free(n->dirty);
        m_free(n->out);
        m_free(n->out_list);
        m_free(n->last_heard);
        m_free(n->content_tick);
        m_free(n->peer_dead);
    }
    m_free(s->ks.elected_us);
    m_free(s->ks.serving_us);
    m_free(s->ck.commit_lat_us);
    m_free(s->heap);
    m_free(s->pair_last);
    m_free(s->nodes);
    m_free(s->groups);
    m_free(s);
}

void scale_run_until(scale_t *s, uint64_t t_us)
{
    while (s->n_heap && s->heap[0].t < t_us) {
        event_t e = pop_event(s);
        s->now = e.t;
        switch (e.type) {
        case EV_TICK:
            node_tick(s, e.node);
            break;
        case EV_ARRIVE:
            arrive(s, e.b);
            break;
        case EV_LOAD:
            load_event(s);
            break;
        }
    }
    if (s->now < t_us)
        s->now = t_us;
}

uint64_t scale_now(const scale_t *s) { return s->now; }

void scale_set_load(scale_t *s, uint32_t per_s)
{
    s->load = per_s;
    if (per_s && !s->load_scheduled) {
        s->load_scheduled = true;
        push_event(s, s->now, EV_LOAD, 0, NULL);
    }
}

void scale_balance(scale_t *s)
{
    for (uint32_t g = 0; g < s->cfg.groups; g++) {
        rep_t *rp = find_leader(s, g), *pref = &s->groups[g].rep[0];
        if (!rp || rp == pref || s->nodes[pref->node].dead)
            continue;
        if (s->cfg.quiesce)
            wake(s, rp);
        if (raft_transfer(rp->r, pref->node + 1) == 0)
            s->transfers++;
        mark_dirty(s, rp);
        flush(s, rp->node);
    }
}

void scale_propose_all(scale_t *s)
{
    for (uint32_t g = 0; g < s->cfg.groups; g++)
        propose(s, g);
}

uint32_t scale_busiest_leader(const scale_t *s)
{
    uint32_t *cnt = calloc(s->cfg.nodes, sizeof *cnt);
    if (!cnt)
        abort();
    for (uint32_t g = 0; g < s->cfg.groups; g++) {
        rep_t *rp = find_leader((scale_t *)s, g);
        if (rp)
            cnt[rp->node]++;
    }
    uint32_t best = 0;
    for (uint32_t i = 1; i < s->cfg.nodes; i++)
        if (cnt[i] > cnt[best])
            best = i;
    free(cnt);
    return best + 1;
}

void scale_kill(scale_t *s, uint32_t id)
{
    uint32_t ni = id - 1;
    s->killed = true;
    s->kill_us = s->now;
    s->kill_node = ni;
    size_t cap = 0;
    for (uint32_t g = 0; g < s->cfg.groups; g++) {
        group_t *gr = &s->groups[g];
        rep_t *rp = local_rep(s, g, ni);
        if (!rp)
            continue;
        raft_status_t st;
        raft_status(rp->r, &st);
        if (st.role != RAFT_LEADER)
            continue;
        if (s->ks.n == cap) {
            cap = cap ? 2 * cap : 64;
            s->ks.elected_us = m_realloc(s->ks.elected_us, cap * sizeof(int64_t));
            s->ks.serving_us = m_realloc(s->ks.serving_us, cap * sizeof(int64_t));
        }
        gr->kill_term = st.term;
        gr->kill_slot = (int64_t)s->ks.n;
        s->ks.elected_us[s->ks.n] = -1;
        s->ks.serving_us[s->ks.n] = -1;
        s->ks.n++;
    }
    node_t *n = &s->nodes[ni];
    n->dead = true;
    for (uint32_t j = 0; j < s->cfg.nodes; j++)
        if (n->out[j]) {
            free_bundle(n->out[j]);
            n->out[j] = NULL;
        }
    n->n_out = 0;
    for (size_t i = 0; i < n->n_dirty; i++)
        n->dirty[i]->dirty = false;
    n->n_dirty = 0;
}

void scale_reset_counters(scale_t *s)
{
    for (uint32_t i = 0; i < s->cfg.nodes; i++)
        memset(&s->nodes[i].c, 0, sizeof s->nodes[i].c);
}

const scale_counters_t *scale_node_counters(const scale_t *s, uint32_t id)
{
    return &s->nodes[id - 1].c;
}

const scale_kill_stats_t *scale_kill_stats(const scale_t *s) { return &s->ks; }

const scale_checks_t *scale_checks(scale_t *s)
{
    for (uint32_t g = 0; g < s->cfg.groups; g++) {
        group_t *gr = &s->groups[g];
        for (int k = 0; k < SCALE_R; k++) {
            rep_t *rp = &gr->rep[k];
            if (s->nodes[rp->node].dead)
                continue;
            if (rp->applied != gr->n_log)
                violation(s, "a live replica did not apply the whole committed record", g,
                          rp->applied, gr->n_log);
        }
    }
    return &s->ck;
}

void scale_group_summary(const scale_t *s, uint32_t *led, uint32_t *quiet, uint32_t *min_lead,
                         uint32_t *max_lead)
{
    uint32_t *cnt = calloc(s->cfg.nodes, sizeof *cnt);
    if (!cnt)
        abort();
    *led = *quiet = 0;
    for (uint32_t g = 0; g < s->cfg.groups; g++) {
        rep_t *rp = find_leader((scale_t *)s, g);
        if (!rp)
            continue;
        (*led)++;
        cnt[rp->node]++;
        if (rp->quiet)
            (*quiet)++;
    }
    *min_lead = UINT32_MAX;
    *max_lead = 0;
    for (uint32_t i = 0; i < s->cfg.nodes; i++) {
        if (s->nodes[i].dead)
            continue;
        if (cnt[i] < *min_lead)
            *min_lead = cnt[i];
        if (cnt[i] > *max_lead)
            *max_lead = cnt[i];
    }
    free(cnt);
}

int64_t scale_core_bytes(const scale_t *s)
{
    int64_t uord = (int64_t)mallinfo2().uordblks;
    return (uord - s->uord0) - (model_bytes - s->model0);
}

uint64_t scale_transfers(const scale_t *s) { return s->transfers; }

bool scale_node_dead(const scale_t *s, uint32_t id) { return s->nodes[id - 1].dead; }

uint64_t scale_replicas(const scale_t *s) { return (uint64_t)s->cfg.groups * SCALE_R; }
