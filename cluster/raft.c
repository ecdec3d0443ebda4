/* cluster/raft.c — the Raft core behind cluster/raft.h: elections with pre-vote and
 * check-quorum, replication with flow control and fast backtracking, the §5.4.2 commit rule,
 * ReadIndex and leases, chunked snapshots, one-server membership changes with learners, and
 * leadership transfer. No I/O: results are collected into a raft_ready_t (see raft.h).
 * -DRAFT_BUG=n switches on known bug n (see the end of raft.h). */
#include <stdlib.h>
#include <string.h>

#include "cluster/assert.h"
#include "cluster/err.h"
#include "cluster/raft.h"
#include "cluster/raft_log.h"

#ifndef RAFT_BUG
#define RAFT_BUG 0
#endif

#define ROUND_RING 64          /* remembered heartbeat rounds (for leases) */

/* Replication state of one other server (leader side), plus election bookkeeping. */
struct peer {
    uint64_t id;
    uint32_t role;             /* RAFT_VOTER / RAFT_LEARNER / RAFT_STAGING */
    uint32_t state;            /* RAFT_PR_* */
    uint64_t match, next;
    bool probe_sent;           /* PROBE: one APPEND is out; wait for its answer or a beat */
    bool recent_active;        /* answered since the last check-quorum */
    bool voted, granted;       /* answered our (pre-)vote request, and how */
    uint64_t acked_round;      /* highest heartbeat round acknowledged this term */
    uint64_t lease_round;      /* highest round acknowledged by a check-quorum follower
                                  (RAFT_MSGF_STICKY): only these acks back a lease */
    uint64_t sent_commit;      /* commit index last sent in an APPEND */
    uint32_t slot;             /* its in-flight ring in r->rings */
    uint32_t infl_head, infl_n;/* REPLICATE: ring of last indexes of unacknowledged APPENDs */
    uint64_t snap_index;       /* SNAPSHOT: the snapshot being sent */
    uint64_t snap_offset;      /* SNAPSHOT: offset of the chunk out (or next to send) */
    uint32_t snap_elapsed;     /* SNAPSHOT: ticks since that chunk went out */
    bool snap_last;            /* SNAPSHOT: the chunk out is the last one */
};

/* A read waiting for its heartbeat round (or for the leader's first commit in its term). */
struct pread {
    uint64_t from;             /* 0 = local, else the follower that forwarded it */
    uint64_t id;
    uint64_t index;
    uint64_t round;            /* 0 = waiting for an entry of this term to commit */
};

/* Outgoing messages. APPEND messages carry no entry pointers until raft_ready(): hi_term[i]
 * remembers the term of their last entry so that a range no longer in the log (truncated or
 * compacted in between) is detected and the message dropped, as a network may drop it. */
struct msgq {
    raft_msg_t *m;
    uint64_t *hi_term;
    size_t n, cap;
};

struct raft {
    raft_config_t cfg;
    uint64_t id;
    uint64_t rng;
    /* persistent state (Figure 2) and what the caller has made durable */
    uint64_t term, vote, commit;
    raft_hard_state_t hs_saved;
    raft_log_t log;
    uint64_t persisted;        /* last index acknowledged durable (raft_advance) */
    uint64_t applied;          /* last index handed out in a Ready and advanced */
    raft_snap_meta_t snap;     /* newest snapshot */
    raft_conf_t conf;          /* latest configuration in the log (in force, thesis §4.1) */
    uint64_t conf_index;       /* index of the entry holding it; 0 = from the snapshot */
    /* volatile state */
    uint32_t role;
    uint64_t leader;
    uint32_t elapsed;          /* ticks since the last reset of the election timer; on the
                                  leader, ticks since the last check-quorum */
    uint32_t hb_elapsed;
    uint32_t since_start;      /* ticks since raft_new, counted up to election_tick */
    bool heard;                /* heard_at is set */
    uint64_t heard_at;         /* r->now when a leader's APPEND/HEARTBEAT/SNAPSHOT was last
                                  accepted. Survives term changes (unlike
                                  r->leader), so a stale higher-term message cannot end
                                  the stickiness a lease relies on. */
    uint32_t timeout;          /* randomized election timeout */
    uint64_t now;              /* ticks since start */
    struct peer peers[RAFT_MAX_SERVERS];  /* every server of conf but this one */
    uint32_t n_peers;
    uint64_t *rings;           /* RAFT_MAX_SERVERS rings of max_inflight indexes */
    uint32_t slots_used;       /* bitmask of rings in use */
    /* leader state */
    uint64_t term_start;       /* index of this term's NOOP entry */
    uint64_t uncommitted;      /* bytes proposed and not yet committed (backpressure) */
    uint64_t transfer_target;
    uint32_t transfer_elapsed;
    bool transfer_sent;
    bool removed_handover;     /* the transfer is a removed leader's last act: it steps down
                                  once TimeoutNow is sent, or when the transfer times out */
    uint64_t read_round;       /* last heartbeat round started */
    bool round_unsent;         /* read_round's heartbeats are still in the outbox */
    struct { uint64_t round, tick; } rounds[ROUND_RING];
    uint64_t lease_until;      /* tick before which the lease is valid */
    bool lease_off;            /* a TimeoutNow went out this term: its target may win with
                                  votes that ignore leases, so no lease until the next term */
    struct pread *preads;
    size_t n_preads, cap_preads;
    /* snapshot being received */
    bool rx_active;
    uint64_t rx_index, rx_term, rx_offset;
    /* outputs */
    struct msgq now_q, after_q;
    raft_read_state_t *reads;
    size_t n_reads, cap_reads;
    void **garbage;            /* buffers to free at raft_advance (outgoing chunks) */
    size_t n_garbage, cap_garbage;
    bool chunk_ready;
    raft_snap_chunk_t chunk;   /* incoming chunk to persist; data is chunk_buf */
    uint8_t *chunk_buf;
    bool install_ready;
    raft_snap_meta_t install;  /* incoming snapshot complete */
    bool rd_taken;
    raft_ready_t rd;
};

/* ---- small helpers ------------------------------------------------------------------ */

static uint64_t rnd(raft_t *r)
{
    if (r->cfg.rand)
        return r->cfg.rand(r->cfg.rand_ctx);
    uint64_t z = (r->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void reset_timer(raft_t *r)
{
    r->elapsed = 0;
    r->timeout = r->cfg.election_tick + (uint32_t)(rnd(r) % r->cfg.election_tick);
}

static uint64_t last_index(const raft_t *r) { return raft_log_last(&r->log); }
static uint64_t last_term(const raft_t *r) { return raft_log_term0(&r->log, last_index(r)); }
static uint64_t term_at(const raft_t *r, uint64_t i) { return raft_log_term0(&r->log, i); }

static uint32_t self_role(const raft_t *r) { return raft_conf_role(&r->conf, r->id); }
static bool self_voter(const raft_t *r) { return self_role(r) == RAFT_VOTER; }

static uint32_t n_voters(const raft_t *r)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->conf.n; i++)
        n += r->conf.s[i].role == RAFT_VOTER;
    return n;
}

static uint32_t quorum(const raft_t *r) { return n_voters(r) / 2 + 1; }

static struct peer *find_peer(raft_t *r, uint64_t id)
{
    for (uint32_t i = 0; i < r->n_peers; i++)
        if (r->peers[i].id == id)
            return &r->peers[i];
    return NULL;
}

static uint64_t *ring(raft_t *r, struct peer *p)
{
    return r->rings + (size_t)p->slot * r->cfg.max_inflight;
}

static int u64_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The largest value v such that a quorum of voters have value >= v; self counts selfv. */
static uint64_t quorum_value(raft_t *r, uint64_t selfv, int which)
{
    uint64_t v[RAFT_MAX_SERVERS];
    uint32_t n = 0;
    if (self_voter(r))
        v[n++] = selfv;
    for (uint32_t i = 0; i < r->n_peers; i++)
        if (r->peers[i].role == RAFT_VOTER)
            v[n++] = which == 0 ? r->peers[i].match
                   : which == 1 ? r->peers[i].acked_round : r->peers[i].lease_round;
    if (n == 0)
        return 0;
    qsort(v, n, sizeof v[0], u64_desc);
    return v[quorum(r) - 1];
}

/* ---- outbox --------------------------------------------------------------------------- */

/* Queues a zeroed message of type to `to`; NULL if out of memory (the message is dropped,
 * which Raft tolerates like any network loss). after: send only after persisting. The
 * pointer is valid until the next queued message. */
static raft_msg_t *queue(raft_t *r, bool after, uint32_t type, uint64_t to)
{
    struct msgq *q = after ? &r->after_q : &r->now_q;
    if (q->n == q->cap) {
        size_t nc = q->cap ? 2 * q->cap : 16;
        raft_msg_t *m = realloc(q->m, nc * sizeof *m);
        if (!m)
            return NULL;
        q->m = m;
        uint64_t *h = realloc(q->hi_term, nc * sizeof *h);
        if (!h)
            return NULL;
        q->hi_term = h;
        q->cap = nc;
    }
    raft_msg_t *m = &q->m[q->n];
    q->hi_term[q->n] = 0;
    q->n++;
    memset(m, 0, sizeof *m);
    m->type = type;
    m->from = r->id;
    m->to = to;
    m->term = r->term;
    return m;
}

static raft_msg_t *send_now(raft_t *r, uint32_t type, uint64_t to)
{
    return queue(r, false, type, to);
}

static raft_msg_t *send_after(raft_t *r, uint32_t type, uint64_t to)
{
    return queue(r, true, type, to);
}

/* Acknowledgements that promise durability (vote grants, APPEND/SNAPSHOT acks). */
static raft_msg_t *send_ack(raft_t *r, uint32_t type, uint64_t to)
{
#if RAFT_BUG == 2
    /* BUG 2: the acknowledgement may leave before the vote / entries it vouches for are
     * durable; a crash in between breaks the promise. */
    return send_now(r, type, to);
#else
    return send_after(r, type, to);
#endif
}

static void push_read(raft_t *r, uint64_t id, uint64_t index, int err)
{
    if (r->n_reads == r->cap_reads) {
        size_t nc = r->cap_reads ? 2 * r->cap_reads : 16;
        raft_read_state_t *n = realloc(r->reads, nc * sizeof *n);
        if (!n)
            return; /* lost like a lost message: the caller's read times out */
        r->reads = n;
        r->cap_reads = nc;
    }
    r->reads[r->n_reads++] = (raft_read_state_t){ .id = id, .index = index, .err = err };
}

static bool push_garbage(raft_t *r, void *p)
{
    if (r->n_garbage == r->cap_garbage) {
        size_t nc = r->cap_garbage ? 2 * r->cap_garbage : 8;
        void **n = realloc(r->garbage, nc * sizeof *n);
        if (!n)
            return false;
        r->garbage = n;
        r->cap_garbage = nc;
    }
    r->garbage[r->n_garbage++] = p;
    return true;
}

/* ---- configuration -------------------------------------------------------------------- */

static int alloc_slot(raft_t *r)
{
    for (uint32_t s = 0; s < RAFT_MAX_SERVERS; s++)
        if (!(r->slots_used & (1u << s))) {
            r->slots_used |= 1u << s;
            return (int)s;
        }
    return -1;
}

static void reset_peer(raft_t *r, struct peer *p)
{
    p->state = RAFT_PR_PROBE;
    p->match = 0;
    p->next = last_index(r) + 1;
    p->probe_sent = false;
    p->recent_active = false;
    p->voted = p->granted = false;
    p->acked_round = 0;
    p->lease_round = 0;
    p->sent_commit = 0;
    p->infl_head = p->infl_n = 0;
    p->snap_index = p->snap_offset = 0;
    p->snap_elapsed = 0;
    p->snap_last = false;
}

/* Makes peers[] follow conf: keeps the progress of servers still present, adds new ones
 * (probing from the end of the log), drops removed ones. */
static void sync_peers(raft_t *r)
{
    struct peer old[RAFT_MAX_SERVERS];
    uint32_t n_old = r->n_peers;
    memcpy(old, r->peers, n_old * sizeof old[0]);
    /* release the rings of removed servers first, so new ones always find a free one */
    for (uint32_t j = 0; j < n_old; j++)
        if (raft_conf_role(&r->conf, old[j].id) == 0 || old[j].id == r->id)
            r->slots_used &= ~(1u << old[j].slot);
    r->n_peers = 0;
    for (uint32_t i = 0; i < r->conf.n; i++) {
        const raft_server_t *s = &r->conf.s[i];
        if (s->id == r->id)
            continue;
        struct peer *p = &r->peers[r->n_peers];
        uint32_t j;
        for (j = 0; j < n_old && old[j].id != s->id; j++)
            ;
        if (j < n_old) {
            *p = old[j];
        } else {
            memset(p, 0, sizeof *p);
            p->id = s->id;
            p->slot = (uint32_t)alloc_slot(r); /* conf.n <= RAFT_MAX_SERVERS: never fails */
            reset_peer(r, p);
        }
        p->role = s->role;
        r->n_peers++;
    }
}

static void set_conf(raft_t *r, const raft_conf_t *c, uint64_t index)
{
    r->conf = *c;
    r->conf_index = index;
    sync_peers(r);
}

/* After entries first..last were appended: the newest CONF entry among them takes effect
 * at once (thesis §4.1: a server uses the latest configuration in its log). */
static void conf_after_append(raft_t *r, uint64_t first, uint64_t last)
{
    for (uint64_t i = last; i >= first && i > r->log.base_index; i--) {
        const raft_entry_t *e = raft_log_at(&r->log, i);
        if (e->type != RAFT_ENTRY_CONF)
            continue;
        raft_conf_t c;
        if (raft_conf_decode(e->data, e->len, &c) == 0)
            set_conf(r, &c, i);
        return;
    }
}

/* The configuration in force at index (<= last): the newest CONF entry at or before it,
 * else the snapshot's. */
static void conf_at(const raft_t *r, uint64_t index, raft_conf_t *c, uint64_t *at)
{
    for (uint64_t i = index; i > r->log.base_index && i > r->snap.index; i--) {
        const raft_entry_t *e = raft_log_at(&r->log, i);
        if (e->type == RAFT_ENTRY_CONF && raft_conf_decode(e->data, e->len, c) == 0) {
            *at = i;
            return;
        }
    }
    *c = r->snap.conf;
    *at = 0;
}

/* Drops entries >= from; a configuration they held is rolled back (thesis §4.1). */
static void truncate_log(raft_t *r, uint64_t from)
{
    ASSERT_MSG(from > r->commit, "truncating committed entries from %llu (commit %llu)",
               (unsigned long long)from, (unsigned long long)r->commit);   /* §5.4 */
    raft_log_truncate(&r->log, from);
    if (r->persisted >= from)
        r->persisted = from - 1;
    if (r->conf_index >= from) {
        raft_conf_t c;
        uint64_t at;
        conf_at(r, from - 1, &c, &at);
        set_conf(r, &c, at);
    }
}

/* ---- role changes ------------------------------------------------------------------- */

static void fail_reads(raft_t *r)
{
    for (size_t i = 0; i < r->n_preads; i++) {
        struct pread *pr = &r->preads[i];
        if (pr->from == 0) {
            push_read(r, pr->id, 0, -QERR_NOTLEADER);
        } else {
            raft_msg_t *m = send_now(r, RAFT_MSG_READ_INDEX_RESP, pr->from);
            if (m) {
                m->ctx = pr->id;
                m->reject = 1;
            }
        }
    }
    r->n_preads = 0;
}

static void become_follower(raft_t *r, uint64_t term, uint64_t leader)
{
    ASSERT(term >= r->term);   /* §5.1: terms never go backwards */
    if (r->role == RAFT_LEADER)
        fail_reads(r);
    if (term > r->term) {
        r->term = term;
        r->vote = 0;
    }
    r->role = RAFT_FOLLOWER;
    r->leader = leader;
    r->transfer_target = 0;
    r->removed_handover = false;
    r->uncommitted = 0;
    r->lease_until = 0;
    reset_timer(r);
}

static void send_append(raft_t *r, struct peer *p, bool allow_empty);

static void bcast_append(raft_t *r)
{
    for (uint32_t i = 0; i < r->n_peers; i++)
        send_append(r, &r->peers[i], false);
}

/* Starts a heartbeat round (also confirms leadership for reads, thesis §6.4). */
static void bcast_heartbeat(raft_t *r)
{
    r->read_round++;
    r->round_unsent = true;
    r->rounds[r->read_round % ROUND_RING].round = r->read_round;
    r->rounds[r->read_round % ROUND_RING].tick = r->now;
    r->hb_elapsed = 0;
    for (uint32_t i = 0; i < r->n_peers; i++) {
        struct peer *p = &r->peers[i];
        raft_msg_t *m = send_now(r, RAFT_MSG_HEARTBEAT, p->id);
        if (!m)
            continue;
        m->commit = p->match < r->commit ? p->match : r->commit;
        m->ctx = r->read_round;
    }
}

static int append_local(raft_t *r, uint32_t type, const void *data, size_t len)
{
    ASSERT(r->role == RAFT_LEADER);   /* §5.3: only a leader appends new entries */
    raft_lbuf_t *buf = NULL;
    if (len) {
        buf = raft_log_buf_new(&r->log, len);
        if (!buf)
            return -QERR_NOMEM;
        memcpy(buf->data, data, len);
    }
    raft_entry_t *e = raft_log_extend(&r->log, 1, buf);
    if (!e) {
        raft_log_buf_put(&r->log, buf);
        return -QERR_NOMEM;
    }
    e->index = last_index(r);
    e->term = r->term;
    e->type = type;
    e->len = (uint32_t)len;
    e->data = buf ? buf->data : NULL;
    return 0;
}

static void maybe_commit(raft_t *r);

static void become_leader(raft_t *r)
{
    r->role = RAFT_LEADER;
    r->leader = r->id;
    r->elapsed = 0;
    r->hb_elapsed = 0;
    r->transfer_target = 0;
    r->removed_handover = false;
    r->uncommitted = 0;
    r->lease_until = 0;
    r->lease_off = false;
    for (uint32_t i = 0; i < r->n_peers; i++)
        reset_peer(r, &r->peers[i]);
    /* §8: a new leader commits an entry of its own term to learn what is committed; it also
     * makes earlier-term entries committed indirectly (§5.4.2). If the NOOP cannot be
     * allocated the term simply starts without it (reads and conf changes wait). */
    if (append_local(r, RAFT_ENTRY_NOOP, NULL, 0) == 0) {
        r->term_start = last_index(r);
        r->uncommitted = RAFT_ENTRY_OVERHEAD;
    } else
        r->term_start = UINT64_MAX;
    bcast_append(r);
    maybe_commit(r);
}

/* Campaigns (§5.2). pre: run a pre-vote first (thesis §9.6); transfer: because of
 * TimeoutNow (thesis §3.10), so voters ignore their leader lease. */
static void campaign(raft_t *r, bool pre, bool transfer)
{
    r->leader = 0;
    reset_timer(r);
    uint64_t t = r->term + 1;
    if (pre) {
        r->role = RAFT_PRECANDIDATE;
    } else {
        r->role = RAFT_CANDIDATE;
        r->term = t;
        r->vote = r->id;
    }
    for (uint32_t i = 0; i < r->n_peers; i++)
        r->peers[i].voted = r->peers[i].granted = false;
    if (quorum(r) <= 1) {
        if (pre)
            campaign(r, false, transfer);
        else
            become_leader(r);
        return;
    }
    for (uint32_t i = 0; i < r->n_peers; i++) {
        struct peer *p = &r->peers[i];
        if (p->role != RAFT_VOTER)
            continue;
        /* a VOTE request must wait for our own vote to be durable; a PREVOTE promises
         * nothing */
        raft_msg_t *m = pre ? send_now(r, RAFT_MSG_PREVOTE, p->id)
                            : send_after(r, RAFT_MSG_VOTE, p->id);
        if (!m)
            continue;
        m->term = t;
        m->index = last_index(r);
        m->log_term = last_term(r);
        if (transfer)
            m->flags |= RAFT_MSGF_TRANSFER;
    }
}

/* ---- replication (leader) ------------------------------------------------------------ */

static void send_chunk(raft_t *r, struct peer *p);

static void start_snapshot(raft_t *r, struct peer *p)
{
    if (!r->cfg.snap_read || r->snap.index == 0) {
        /* Cannot catch this follower up. It waits in PROBE (probe_sent: until a heartbeat
         * answer) rather than in REPLICATE, where raft_has_ready would stay true and
         * raft_ready hand out empty Readies for ever. */
        p->state = RAFT_PR_PROBE;
        p->probe_sent = true;
        p->infl_n = 0;
        return;
    }
    p->state = RAFT_PR_SNAPSHOT;
    p->snap_index = r->snap.index;
    p->snap_offset = 0;
    p->infl_n = 0;
    send_chunk(r, p);
}

/* Sends the chunk of the snapshot at p->snap_offset (stop-and-wait: one chunk out). */
static void send_chunk(raft_t *r, struct peer *p)
{
    if (p->snap_index != r->snap.index) { /* a newer snapshot replaced it: start over */
        p->snap_index = r->snap.index;
        p->snap_offset = 0;
    }
    size_t cap = r->cfg.snap_chunk_bytes;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return;
    size_t got = 0;
    int rc = r->cfg.snap_read(r->cfg.snap_ctx, p->snap_index, p->snap_offset, buf, cap, &got);
    if (rc < 0 || got > cap) {
        free(buf);
        p->snap_offset = 0;
        p->snap_elapsed = 0; /* retried when the retransmission timer fires */
        return;
    }
    if (!push_garbage(r, buf)) {
        free(buf);
        return;
    }
    p->snap_elapsed = 0;
    p->snap_last = got < cap;
    raft_msg_t *m = send_now(r, RAFT_MSG_SNAPSHOT, p->id);
    if (!m)
        return;
    m->snap = r->snap;
    m->offset = p->snap_offset;
    m->len = (uint32_t)got;
    m->data = got ? buf : NULL;
    if (p->snap_last)
        m->flags |= RAFT_MSGF_LAST;
}

/* Sends the next APPEND(s) to p as flow control allows (§5.3). allow_empty: send even with
 * no new entries (a probe, or to carry a new commit index). */
static void send_append(raft_t *r, struct peer *p, bool allow_empty)
{
    for (;;) {
        if (p->state == RAFT_PR_SNAPSHOT)
            return;
        if (p->state == RAFT_PR_PROBE && p->probe_sent)
            return;
        if (p->state == RAFT_PR_REPLICATE && p->infl_n >= r->cfg.max_inflight)
            return;
        uint64_t prev = p->next - 1, prev_term;
        if (raft_log_term_at(&r->log, prev, &prev_term) < 0) {
            /* the entries it needs are compacted: catch it up from the snapshot (§7) */
            start_snapshot(r, p);
            return;
        }
        uint64_t last = last_index(r);
        if (p->next > last && !allow_empty)
            return;
        uint64_t hi = prev;
        uint64_t bytes = 0;
        while (hi < last) {
            uint64_t b = (uint64_t)raft_log_at(&r->log, hi + 1)->len + RAFT_ENTRY_OVERHEAD;
            if (hi > prev && bytes + b > r->cfg.max_msg_bytes)
                break;
            bytes += b;
            hi++;
        }
        raft_msg_t *m = send_now(r, RAFT_MSG_APPEND, p->id);
        if (!m)
            return;
        struct msgq *q = &r->now_q;
        m->index = prev;
        m->log_term = prev_term;
        m->commit = r->commit;
        m->n_entries = (uint32_t)(hi - prev);
        q->hi_term[q->n - 1] = term_at(r, hi);
        p->sent_commit = r->commit;
        if (p->state == RAFT_PR_PROBE) {
            p->probe_sent = true;
            return;
        }
        if (hi == prev)
            return;
        /* REPLICATE: optimistic pipelining */
        p->next = hi + 1;
        ring(r, p)[(p->infl_head + p->infl_n) % r->cfg.max_inflight] = hi;
        p->infl_n++;
        if (p->next > last)
            return;
        allow_empty = false;
    }
}

static void free_inflight(raft_t *r, struct peer *p, uint64_t upto)
{
    uint64_t *rg = ring(r, p);
    while (p->infl_n && rg[p->infl_head] <= upto) {
        p->infl_head = (p->infl_head + 1) % r->cfg.max_inflight;
        p->infl_n--;
    }
}

static void step_down_removed(raft_t *r);
static void start_reads(raft_t *r);
static void send_timeout_now(raft_t *r, uint64_t to);

static void commit_to(raft_t *r, uint64_t n)
{
    if (n <= r->commit)
        return;
    ASSERT_MSG(n <= last_index(r), "commit %llu past the last entry %llu",
               (unsigned long long)n, (unsigned long long)last_index(r));
    bool had_term_commit = r->commit >= r->term_start;
    if (r->role == RAFT_LEADER) {
        for (uint64_t i = n; i > r->commit; i--) {
            const raft_entry_t *e = raft_log_at(&r->log, i);
            if (e->term != r->term)
                break; /* only this term's entries were counted */
            uint64_t b = (uint64_t)e->len + RAFT_ENTRY_OVERHEAD;
            r->uncommitted = r->uncommitted > b ? r->uncommitted - b : 0;
        }
    }
    r->commit = n;
    if (r->role != RAFT_LEADER)
        return;
    if (!had_term_commit && r->commit >= r->term_start)
        start_reads(r);
    if (r->conf_index <= r->commit && !self_voter(r))
        step_down_removed(r);
}

static void maybe_promote(raft_t *r);

/* Advances the commit index to what a quorum has (§5.3), but only by counting replicas of
 * an entry of the current term (§5.4.2, Figure 8). */
static void maybe_commit(raft_t *r)
{
    if (r->role != RAFT_LEADER)
        return;
    uint64_t n = quorum_value(r, r->persisted, 0);
    if (n <= r->commit)
        return;
#if RAFT_BUG == 1
    /* BUG 1: commits an entry of an earlier term by counting replicas (Figure 8). */
    commit_to(r, n);
#else
    if (term_at(r, n) == r->term)
        commit_to(r, n);
#endif
    maybe_promote(r);
}

/* ---- membership (thesis §4) ---------------------------------------------------------- */

static int append_conf(raft_t *r, const raft_conf_t *c)
{
    uint8_t buf[RAFT_CONF_MAX_BYTES];
    size_t len = raft_conf_encode(c, buf);
    int rc = append_local(r, RAFT_ENTRY_CONF, buf, len);
    if (rc < 0)
        return rc;
    r->uncommitted += len + RAFT_ENTRY_OVERHEAD;
    set_conf(r, c, last_index(r));
    return 0;
}

/* A staging learner that has caught up becomes a voter (thesis §4.2.1, simplified to a
 * lag bound). One change at a time, after an entry of this term has committed. */
static void maybe_promote(raft_t *r)
{
    if (r->role != RAFT_LEADER || r->conf_index > r->commit || r->commit < r->term_start ||
        r->transfer_target)
        return;
    for (uint32_t i = 0; i < r->n_peers; i++) {
        struct peer *p = &r->peers[i];
        if (p->role != RAFT_STAGING || p->match + r->cfg.promote_lag < last_index(r))
            continue;
        raft_conf_t c = r->conf;
        for (uint32_t j = 0; j < c.n; j++)
            if (c.s[j].id == p->id)
                c.s[j].role = RAFT_VOTER;
        if (append_conf(r, &c) == 0)
            bcast_append(r);
        return;
    }
}

/* The leader's own removal has committed (thesis §4.2.2): hand over to a voter, then step
 * down. A voter with the whole log gets TimeoutNow at once. Else the most up-to-date voter
 * heard from since the last check-quorum is brought up to date, as raft_transfer does
 * (proposals refused meanwhile), and the first voter found with the whole log
 * (handle_append_resp) gets TimeoutNow; the leader steps down then, usually one round trip
 * later, or after an election timeout if none catches up (tick_leader; the voters then wait
 * their own election timeout on top). No voter heard from: it steps down at once. */
static void step_down_removed(raft_t *r)
{
    if (r->removed_handover)
        return;                                  /* handing over already */
    struct peer *best = NULL;
    for (uint32_t i = 0; i < r->n_peers; i++) {
        struct peer *p = &r->peers[i];
        if (p->role == RAFT_VOTER && p->match == last_index(r)) {
            best = p;
            break;
        }
        if (p->role == RAFT_VOTER && p->recent_active && (!best || p->match > best->match))
            best = p;
    }
    if (best && best->match == last_index(r))
        send_timeout_now(r, best->id);
    if (!best || best->match == last_index(r)) {
        become_follower(r, r->term, 0);
        return;
    }
    r->transfer_target = best->id;
    r->transfer_elapsed = 0;
    r->transfer_sent = false;
    r->removed_handover = true;
    r->lease_until = 0;
    send_append(r, best, false);
}

/* ---- reads (thesis §6.4) -------------------------------------------------------------- */

static void deliver_read(raft_t *r, uint64_t from, uint64_t id, uint64_t index)
{
    if (from == 0) {
        push_read(r, id, index, 0);
        return;
    }
    raft_msg_t *m = send_now(r, RAFT_MSG_READ_INDEX_RESP, from);
    if (m) {
        m->ctx = id;
        m->index = index;
    }
}

static bool lease_valid(const raft_t *r)
{
    return r->cfg.lease_reads && r->role == RAFT_LEADER && r->transfer_target == 0 &&
           !r->lease_off && r->now < r->lease_until;
}

static void send_timeout_now(raft_t *r, uint64_t to)
{
    r->lease_off = true;
    r->lease_until = 0;
    send_now(r, RAFT_MSG_TIMEOUT_NOW, to);
}

static void confirm_reads(raft_t *r);

/* Gives a round to reads waiting for the term's first commit. */
static void start_reads(raft_t *r)
{
    bool any = false;
    for (size_t i = 0; i < r->n_preads; i++)
        if (r->preads[i].round == 0)
            any = true;
    if (!any)
        return;
    if (!r->round_unsent)
        bcast_heartbeat(r);
    for (size_t i = 0; i < r->n_preads; i++)
        if (r->preads[i].round == 0) {
            r->preads[i].round = r->read_round;
            r->preads[i].index = r->commit;
        }
    confirm_reads(r); /* a single voter needs no acknowledgement */
}

/* Releases the reads whose round a quorum has acknowledged, and extends the lease. */
static void confirm_reads(raft_t *r)
{
    uint64_t done = quorum_value(r, r->read_round, 1);
    if (done == 0)
        return;
    /* The lease counts only acknowledgements of followers that run check-quorum (they
     * said so with RAFT_MSGF_STICKY): a follower without it grants votes at any time, so
     * its acknowledgement promises nothing about the next election. */
    uint64_t lease = quorum_value(r, r->read_round, 2);
    if (r->cfg.lease_reads && !r->lease_off && lease &&
        r->rounds[lease % ROUND_RING].round == lease) {
        /* the quorum heard from us at or after the round's start: none of them votes for
         * another leader for an election timeout after that (check-quorum stickiness) */
        uint64_t until = r->rounds[lease % ROUND_RING].tick + r->cfg.election_tick -
                         r->cfg.max_clock_drift_ticks;
        if (until > r->lease_until)
            r->lease_until = until;
    }
    size_t k = 0;
    for (size_t i = 0; i < r->n_preads; i++) {
        struct pread *pr = &r->preads[i];
        if (pr->round != 0 && pr->round <= done)
            deliver_read(r, pr->from, pr->id, pr->index);
        else
            r->preads[k++] = *pr;
    }
    r->n_preads = k;
}

/* Returns 0 or -QERR_NOMEM (the read is not started). */
static int leader_read(raft_t *r, uint64_t from, uint64_t id)
{
    if (r->commit >= r->term_start) {
        if (lease_valid(r) || (quorum(r) == 1 && self_voter(r))) {
            deliver_read(r, from, id, r->commit);
            return 0;
        }
    }
    if (r->n_preads == r->cap_preads) {
        size_t nc = r->cap_preads ? 2 * r->cap_preads : 16;
        struct pread *n = realloc(r->preads, nc * sizeof *n);
        if (!n)
            return -QERR_NOMEM;
        r->preads = n;
        r->cap_preads = nc;
    }
    struct pread *pr = &r->preads[r->n_preads++];
    pr->from = from;
    pr->id = id;
    pr->index = 0;
    pr->round = 0;
    if (r->commit >= r->term_start) {
        if (!r->round_unsent)
            bcast_heartbeat(r);
        pr->round = r->read_round;
        pr->index = r->commit;
    }
    return 0;
}

int raft_read_index(raft_t *r, uint64_t id, uint64_t *leader_hint)
{
    if (leader_hint)
        *leader_hint = r->leader;
    if (r->rd_taken)
        return -QERR_INVAL;
    if (r->role == RAFT_LEADER)
        return leader_read(r, 0, id);
    if (r->leader == 0)
        return -QERR_NOTLEADER;
    raft_msg_t *m = send_now(r, RAFT_MSG_READ_INDEX, r->leader);
    if (!m)
        return -QERR_NOMEM;
    m->ctx = id;
    return 0;
}

/* ---- message handlers --------------------------------------------------------------- */

static void handle_vote(raft_t *r, const raft_msg_t *m)
{
    bool pre = m->type == RAFT_MSG_PREVOTE;
    bool can_vote = r->vote == m->from || (r->vote == 0 && r->leader == 0) ||
                    (pre && m->term > r->term);
    /* A vote of this node's own term is sticky too: a late answer of a higher term can have
     * moved it to that term (no leader, no vote) while the leader it heard less than an
     * election timeout ago still holds a lease this node backs (simulator finding 7: seed
     * 2297 with --groups 4). raft_step's check covers only requests of a higher term. The
     * start-up period holds here too, whatever this run's settings: a node that adopted a
     * term with no vote (that late answer) and then restarted has forgotten the leader it
     * heard, whose lease its previous run may back (found by review: a same-term VOTE
     * delivered after such a restart was granted). */
    if (r->vote != m->from && !(m->flags & RAFT_MSGF_TRANSFER) &&
        ((r->cfg.check_quorum && r->heard && r->now - r->heard_at < r->cfg.election_tick) ||
         r->since_start < r->cfg.election_tick))
        can_vote = false;
#if RAFT_BUG == 3
    /* BUG 3: grants a vote to any up-to-date candidate, even after voting in this term. */
    can_vote = true;
#endif
    /* §5.4.1 election restriction: the candidate's log is at least as up to date */
    bool up_to_date = m->log_term > last_term(r) ||
                      (m->log_term == last_term(r) && m->index >= last_index(r));
    uint32_t rtype = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
    if (can_vote && up_to_date) {
        if (pre) {
            /* a pre-vote promises nothing and changes no state */
            raft_msg_t *resp = send_now(r, rtype, m->from);
            if (resp)
                resp->term = m->term; /* echo the term asked for */
        } else {
            r->vote = m->from;
            reset_timer(r);
            send_ack(r, rtype, m->from); /* only once the vote is durable */
        }
        return;
    }
    raft_msg_t *resp = send_now(r, rtype, m->from);
    if (resp)
        resp->reject = 1;
}

static void handle_vote_resp(raft_t *r, const raft_msg_t *m)
{
    bool pre = m->type == RAFT_MSG_PREVOTE_RESP;
    if (pre ? r->role != RAFT_PRECANDIDATE : r->role != RAFT_CANDIDATE)
        return;
    if (pre && !m->reject && m->term != r->term + 1)
        return; /* a grant for an older pre-vote */
    if (!pre && m->term != r->term)
        return;
    struct peer *p = find_peer(r, m->from);
    if (!p || p->role != RAFT_VOTER)
        return;
    p->voted = true;
    p->granted = !m->reject;
    uint32_t yes = self_voter(r), no = 0;
    for (uint32_t i = 0; i < r->n_peers; i++) {
        const struct peer *q = &r->peers[i];
        if (q->role == RAFT_VOTER && q->voted) {
            yes += q->granted;
            no += !q->granted;
        }
    }
    if (yes >= quorum(r)) {
        if (pre)
            campaign(r, false, false);
        else
            become_leader(r);
    } else if (no >= quorum(r)) {
        become_follower(r, r->term, 0);
    }
}

/* §5.3 + fast backtracking: the largest index <= index whose term is <= term. */
static uint64_t find_conflict(const raft_t *r, uint64_t index, uint64_t term)
{
    if (index > last_index(r))
        index = last_index(r);
    while (index > r->log.base_index && term_at(r, index) > term)
        index--;
    return index;
}

static void handle_append(raft_t *r, const raft_msg_t *m)
{
    r->leader = m->from;
    reset_timer(r);
    raft_msg_t *resp;
    if (m->index < r->commit) {
        /* old or duplicate: what we have up to commit is already known to match */
        resp = send_ack(r, RAFT_MSG_APPEND_RESP, m->from);
        if (resp)
            resp->index = r->commit;
        return;
    }
    uint64_t t;
    if (raft_log_term_at(&r->log, m->index, &t) < 0 || t != m->log_term) {
        /* §5.3 consistency check failed: reject with a hint (fast backtracking) */
        resp = send_now(r, RAFT_MSG_APPEND_RESP, m->from);
        if (resp) {
            resp->reject = 1;
            resp->index = m->index;
            resp->hint_index = find_conflict(r, m->index, m->log_term);
            resp->hint_term = term_at(r, resp->hint_index);
        }
        return;
    }
    uint64_t last_new = m->index + m->n_entries;
    uint32_t i = 0;
    for (; i < m->n_entries; i++) {
        const raft_entry_t *e = &m->entries[i];
        if (e->index > last_index(r))
            break;
        if (term_at(r, e->index) != e->term) {
            if (e->index <= r->commit)
                return; /* would overwrite a committed entry: a broken leader; ignore */
            truncate_log(r, e->index);
            break;
        }
    }
    if (i < m->n_entries) {
        uint64_t first = m->entries[i].index;
        if (raft_log_append_copy(&r->log, &m->entries[i], m->n_entries - i) < 0)
            return; /* out of memory: as if the message were lost */
        conf_after_append(r, first, last_index(r));
    }
    if (m->commit > r->commit)
        commit_to(r, m->commit < last_new ? m->commit : last_new);
    resp = send_ack(r, RAFT_MSG_APPEND_RESP, m->from);
    if (resp)
        resp->index = last_new;
}

static void handle_append_resp(raft_t *r, const raft_msg_t *m, struct peer *p)
{
    if (m->reject) {
        if (p->state == RAFT_PR_SNAPSHOT)
            return;
        uint64_t rejected = m->index;
        if (rejected <= p->match)
            return; /* stale */
        if (p->state == RAFT_PR_PROBE && rejected != p->next - 1)
            return; /* an answer to an older probe */
        uint64_t hint = m->hint_index;
        if (m->hint_term > 0)
            hint = find_conflict(r, hint, m->hint_term);
        uint64_t next = rejected < hint + 1 ? rejected : hint + 1;
        if (next < p->match + 1)
            next = p->match + 1;
        p->next = next;
        p->state = RAFT_PR_PROBE;
        p->probe_sent = false;
        p->infl_n = 0;
        send_append(r, p, true);
        return;
    }
    if (m->index > last_index(r))
        return; /* cannot be: acknowledges entries we never had */
    bool progressed = m->index > p->match;
    if (progressed)
        p->match = m->index;
    if (p->next < p->match + 1)
        p->next = p->match + 1;
    if (p->state == RAFT_PR_SNAPSHOT && p->match >= r->log.base_index) {
        p->state = RAFT_PR_PROBE;
        p->probe_sent = false;
    }
    if (p->state == RAFT_PR_PROBE && (progressed || p->match == m->index)) {
        p->state = RAFT_PR_REPLICATE;
        p->next = p->match + 1;
        p->probe_sent = false;
        p->infl_n = 0;
    }
    if (p->state == RAFT_PR_REPLICATE)
        free_inflight(r, p, m->index);
    if (progressed)
        maybe_commit(r);
    if (r->role != RAFT_LEADER)
        return; /* the commit removed us */
    if ((r->transfer_target == p->id || (r->removed_handover && p->role == RAFT_VOTER)) &&
        p->match == last_index(r) && !r->transfer_sent) {
        send_timeout_now(r, p->id);
        r->transfer_sent = true;
        if (r->removed_handover) {
            become_follower(r, r->term, 0);      /* a removed leader's hand-over is done */
            return;
        }
    }
    send_append(r, p, false);
    if (p->role == RAFT_STAGING)
        maybe_promote(r);
}

static void handle_heartbeat_resp(raft_t *r, const raft_msg_t *m, struct peer *p)
{
    if (m->ctx > p->acked_round && m->ctx <= r->read_round)
        p->acked_round = m->ctx;
    if ((m->flags & RAFT_MSGF_STICKY) && m->ctx > p->lease_round && m->ctx <= r->read_round)
        p->lease_round = m->ctx;
    if (p->state == RAFT_PR_PROBE)
        p->probe_sent = false;
    if (p->state == RAFT_PR_REPLICATE && p->infl_n >= r->cfg.max_inflight) {
        /* an APPEND may be lost: let one more go out */
        p->infl_head = (p->infl_head + 1) % r->cfg.max_inflight;
        p->infl_n--;
    }
    /* a lagging follower gets an APPEND even if empty: if one was lost in REPLICATE, its
     * rejection sends the leader back to probing */
    if (p->match < last_index(r) || p->state == RAFT_PR_PROBE)
        send_append(r, p, true);
    confirm_reads(r);
}

static void handle_snapshot(raft_t *r, const raft_msg_t *m)
{
    r->leader = m->from;
    reset_timer(r);
    const raft_snap_meta_t *s = &m->snap;
    raft_msg_t *resp;
    uint64_t t;
    bool have = s->index <= r->commit ||
                (raft_log_term_at(&r->log, s->index, &t) == 0 && t == s->term);
    if (have) {
        /* everything it covers is already here: fast-forward instead (like etcd) */
        if (s->index > r->commit && s->index <= last_index(r))
            commit_to(r, s->index);
        r->rx_active = false;
        resp = send_ack(r, RAFT_MSG_SNAPSHOT_RESP, m->from);
        if (resp) {
            resp->index = s->index;
            resp->flags = RAFT_MSGF_LAST;
        }
        return;
    }
    if (m->offset == 0 && !r->chunk_ready && !r->install_ready) {
        r->rx_active = true;
        r->rx_index = s->index;
        r->rx_term = s->term;
        r->rx_offset = 0;
    }
    /* chunks are stored in order, one per Ready */
    if (!r->rx_active || r->rx_index != s->index || r->rx_term != s->term ||
        r->rx_offset != m->offset || r->chunk_ready || r->install_ready) {
        resp = send_now(r, RAFT_MSG_SNAPSHOT_RESP, m->from);
        if (resp) {
            resp->reject = 1;
            resp->index = s->index;
            resp->offset = r->rx_active && r->rx_index == s->index ? r->rx_offset : 0;
        }
        return;
    }
    uint8_t *buf = NULL;
    if (m->len) {
        buf = malloc(m->len);
        if (!buf)
            return;
        memcpy(buf, m->data, m->len);
    }
    free(r->chunk_buf);
    r->chunk_buf = buf;
    r->chunk_ready = true;
    r->chunk.meta = *s;
    r->chunk.offset = m->offset;
    r->chunk.len = m->len;
    r->chunk.data = buf;
    r->chunk.last = (m->flags & RAFT_MSGF_LAST) != 0;
    r->rx_offset += m->len;
    resp = send_ack(r, RAFT_MSG_SNAPSHOT_RESP, m->from);
    if (resp) {
        resp->index = s->index;
        resp->offset = r->rx_offset;
    }
    if (!r->chunk.last)
        return;
    /* §7: the snapshot replaces the whole log: entries after its index cannot be in the
     * leader's log (their predecessor at s->index differs), so none is committed. */
    r->rx_active = false;
    raft_log_reset(&r->log, s->index, s->term);
    r->snap = *s;
    r->install_ready = true;
    r->install = *s;
    r->persisted = s->index;
    r->commit = s->index;
    r->applied = s->index;
    set_conf(r, &s->conf, 0);
    if (resp)
        resp->flags = RAFT_MSGF_LAST;
}

static void handle_snapshot_resp(raft_t *r, const raft_msg_t *m, struct peer *p)
{
    if (m->flags & RAFT_MSGF_LAST && !m->reject) {
        if (m->index > p->match && m->index <= last_index(r))
            p->match = m->index;
        if (p->next < p->match + 1)
            p->next = p->match + 1;
        if (p->state == RAFT_PR_SNAPSHOT) {
            p->state = RAFT_PR_PROBE;
            p->probe_sent = false;
        }
        maybe_commit(r);
        if (r->role == RAFT_LEADER)
            send_append(r, p, true);
        return;
    }
    if (p->state != RAFT_PR_SNAPSHOT || m->index != p->snap_index)
        return;
    if (m->reject) {
        p->snap_offset = m->offset;
        send_chunk(r, p);
        return;
    }
    if (m->offset <= p->snap_offset)
        return; /* stale */
    p->snap_offset = m->offset;
    if (p->snap_last)
        return; /* the last chunk is stored; its LAST ack follows */
    send_chunk(r, p);
}

static bool valid_msg(const raft_t *r, const raft_msg_t *m)
{
    if (m->type < 1 || m->type >= RAFT_MSG__COUNT || m->to != r->id || m->from == 0 ||
        m->from == r->id)
        return false;
    if (m->n_entries && (m->type != RAFT_MSG_APPEND || !m->entries))
        return false;
    if (m->len && !m->data)
        return false;
    if (m->type == RAFT_MSG_APPEND) {
        uint64_t prevt = m->log_term;
        for (uint32_t i = 0; i < m->n_entries; i++) {
            const raft_entry_t *e = &m->entries[i];
            if (e->index != m->index + 1 + i || e->term < prevt || e->term > m->term ||
                (e->len && !e->data) || e->type < RAFT_ENTRY_NORMAL ||
                e->type > RAFT_ENTRY_CONF)
                return false;
            prevt = e->term;
        }
    }
    if (m->type == RAFT_MSG_SNAPSHOT) {
        raft_conf_t c = m->snap.conf;
        if (m->snap.index == 0 || c.n > RAFT_MAX_SERVERS || raft_conf_normalize(&c) < 0)
            return false;
    }
    return true;
}

int raft_step(raft_t *r, const raft_msg_t *m)
{
    if (r->rd_taken)
        return -QERR_INVAL;
    if (!valid_msg(r, m))
        return -QERR_INVAL;
    bool is_vote = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE;
    if (m->term > r->term) {
        /* We heard from a live leader, or we just started and may have forgotten one whose
         * lease still stands: ignore the disruption (thesis §4.2.3). Without the start-up
         * period a restarted follower would help elect a new leader while the old one still
         * serves lease reads at its old index. */
        bool sticky = r->cfg.check_quorum &&
                      ((r->role == RAFT_LEADER && r->elapsed < r->cfg.election_tick) ||
                       (r->heard && r->now - r->heard_at < r->cfg.election_tick));
        /* The start-up period holds whatever this run's settings: the previous run may
         * have backed a lease with check-quorum on (simulator finding 4). */
        bool quiet = sticky || r->since_start < r->cfg.election_tick;
        if (is_vote && quiet && !(m->flags & RAFT_MSGF_TRANSFER))
            return 0;
        if (m->type == RAFT_MSG_PREVOTE || (m->type == RAFT_MSG_PREVOTE_RESP && !m->reject)) {
            /* pre-votes do not change terms */
        } else if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
                   m->type == RAFT_MSG_SNAPSHOT) {
            become_follower(r, m->term, m->from);
        } else if (m->type == RAFT_MSG_VOTE && r->role != RAFT_LEADER) {
            /* Adopt the term but keep the election timer running: Figure 2 restarts it only
             * on AppendEntries from the current leader or on granting a vote (handle_vote).
             * Restarting it here would let a candidate with a stale log that keeps timing
             * out first starve every up-to-date server's election. */
            uint32_t elapsed = r->elapsed, timeout = r->timeout;
            become_follower(r, m->term, 0);
            r->elapsed = elapsed;
            r->timeout = timeout;
        } else {
            become_follower(r, m->term, 0);
        }
    } else if (m->term < r->term) {
        if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
            m->type == RAFT_MSG_SNAPSHOT) {
            /* a deposed leader: tell it the current term so it steps down */
            raft_msg_t *resp = send_now(r, RAFT_MSG_APPEND_RESP, m->from);
            if (resp)
                resp->reject = 1; /* index 0: carries only the term */
        } else if (is_vote) {
            raft_msg_t *resp = send_now(r, m->type == RAFT_MSG_PREVOTE ? RAFT_MSG_PREVOTE_RESP
                                                                      : RAFT_MSG_VOTE_RESP,
                                        m->from);
            if (resp)
                resp->reject = 1;
        } else if (m->type == RAFT_MSG_READ_INDEX) {
            /* a follower behind on terms: fail its read now rather than let it time out */
            raft_msg_t *resp = send_now(r, RAFT_MSG_READ_INDEX_RESP, m->from);
            if (resp) {
                resp->ctx = m->ctx;
                resp->reject = 1;
            }
        }
        return 0;
    }

    switch (m->type) {
    case RAFT_MSG_PREVOTE:
    case RAFT_MSG_VOTE:
        handle_vote(r, m);
        return 0;
    case RAFT_MSG_PREVOTE_RESP:
    case RAFT_MSG_VOTE_RESP:
        handle_vote_resp(r, m);
        return 0;
    case RAFT_MSG_APPEND:
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_SNAPSHOT:
        if (r->role == RAFT_LEADER)
            return 0; /* two leaders in one term cannot be: ignore */
        r->heard = true;
        r->heard_at = r->now;
        if (r->role != RAFT_FOLLOWER)
            become_follower(r, r->term, m->from);
        if (m->type == RAFT_MSG_APPEND) {
            handle_append(r, m);
        } else if (m->type == RAFT_MSG_SNAPSHOT) {
            handle_snapshot(r, m);
        } else {
            r->leader = m->from;
            reset_timer(r);
            uint64_t c = m->commit < last_index(r) ? m->commit : last_index(r);
            if (c > r->commit)
                commit_to(r, c);
            raft_msg_t *resp = send_now(r, RAFT_MSG_HEARTBEAT_RESP, m->from);
            if (resp) {
                resp->ctx = m->ctx;
                resp->index = last_index(r);
                if (r->cfg.check_quorum)
                    resp->flags |= RAFT_MSGF_STICKY;
            }
        }
        return 0;
    case RAFT_MSG_TIMEOUT_NOW:
        if (r->role != RAFT_LEADER && self_voter(r))
            campaign(r, false, true);
        return 0;
    case RAFT_MSG_READ_INDEX:
        if (r->role != RAFT_LEADER || leader_read(r, m->from, m->ctx) < 0) {
            raft_msg_t *resp = send_now(r, RAFT_MSG_READ_INDEX_RESP, m->from);
            if (resp) {
                resp->ctx = m->ctx;
                resp->reject = 1;
            }
        }
        return 0;
    case RAFT_MSG_READ_INDEX_RESP:
        push_read(r, m->ctx, m->reject ? 0 : m->index, m->reject ? -QERR_NOTLEADER : 0);
        return 0;
    default:
        break;
    }
    /* responses to a leader */
    if (r->role != RAFT_LEADER)
        return 0;
    struct peer *p = find_peer(r, m->from);
    if (!p)
        return 0;
    p->recent_active = true;
    switch (m->type) {
    case RAFT_MSG_APPEND_RESP:
        handle_append_resp(r, m, p);
        break;
    case RAFT_MSG_HEARTBEAT_RESP:
        handle_heartbeat_resp(r, m, p);
        break;
    case RAFT_MSG_SNAPSHOT_RESP:
        handle_snapshot_resp(r, m, p);
        break;
    default:
        break;
    }
    return 0;
}

/* ---- ticks ---------------------------------------------------------------------------- */

static bool quorum_active(raft_t *r)
{
    uint32_t act = self_voter(r);
    for (uint32_t i = 0; i < r->n_peers; i++)
        if (r->peers[i].role == RAFT_VOTER && r->peers[i].recent_active)
            act++;
    return act >= quorum(r);
}

static void tick_leader(raft_t *r)
{
    r->hb_elapsed++;
    r->elapsed++;
    if (r->transfer_target && ++r->transfer_elapsed >= r->cfg.election_tick) {
        r->transfer_target = 0; /* thesis §3.10: abort a transfer that does not finish */
        if (r->removed_handover) {
            become_follower(r, r->term, 0);      /* removed: step down without a successor */
            return;
        }
    }
    if (r->elapsed >= r->cfg.election_tick) {
        r->elapsed = 0;
        if (r->cfg.check_quorum) {
            bool ok = quorum_active(r);
            for (uint32_t i = 0; i < r->n_peers; i++)
                r->peers[i].recent_active = false;
            if (!ok) {
                /* §6.2 / thesis §6.2: cannot reach a majority: step down */
                become_follower(r, r->term, 0);
                return;
            }
        }
    }
    for (uint32_t i = 0; i < r->n_peers; i++) {
        struct peer *p = &r->peers[i];
        if (p->state == RAFT_PR_SNAPSHOT && ++p->snap_elapsed >= r->cfg.election_tick)
            send_chunk(r, p); /* retransmit the chunk that got no answer */
    }
    if (r->hb_elapsed >= r->cfg.heartbeat_tick)
        bcast_heartbeat(r);
}

void raft_tick(raft_t *r)
{
    if (r->rd_taken)
        return;
    r->now++;
    if (r->since_start < r->cfg.election_tick)
        r->since_start++;
    if (r->role == RAFT_LEADER) {
        tick_leader(r);
        return;
    }
    r->elapsed++;
    if (r->elapsed >= r->timeout) {
        reset_timer(r);
        if (self_voter(r))
            campaign(r, r->cfg.pre_vote, false);
    }
}

/* ---- proposals ------------------------------------------------------------------------ */

static int check_leader(raft_t *r, raft_prop_info_t *info)
{
    if (info)
        memset(info, 0, sizeof *info);
    if (r->rd_taken)
        return -QERR_INVAL;
    if (r->role != RAFT_LEADER) {
        if (info)
            info->leader = r->leader;
        return -QERR_NOTLEADER;
    }
    if (r->transfer_target)
        return -QERR_TRANSFER;
    return 0;
}

int raft_propose_batch(raft_t *r, const raft_iov_t *cmds, size_t n, raft_prop_info_t *info)
{
    int rc = check_leader(r, info);
    if (rc < 0)
        return rc;
    if (n == 0 || !cmds)
        return -QERR_INVAL;
    uint64_t bytes = 0, payload = 0;
    for (size_t i = 0; i < n; i++) {
        if (cmds[i].len > UINT32_MAX)
            return -QERR_TOOBIG;
        if (cmds[i].len && !cmds[i].data)
            return -QERR_INVAL;
        payload += cmds[i].len;
        bytes += cmds[i].len + RAFT_ENTRY_OVERHEAD;
    }
    if (r->uncommitted > 0 && r->uncommitted + bytes > r->cfg.max_uncommitted_bytes)
        return -QERR_BUSY;
    raft_lbuf_t *buf = NULL;
    if (payload) {
        buf = raft_log_buf_new(&r->log, payload);
        if (!buf)
            return -QERR_NOMEM;
    }
    uint64_t first = last_index(r) + 1;
    raft_entry_t *e = raft_log_extend(&r->log, n, buf);
    if (!e) {
        raft_log_buf_put(&r->log, buf);
        return -QERR_NOMEM;
    }
    uint8_t *p = buf ? buf->data : NULL;
    for (size_t i = 0; i < n; i++) {
        e[i].index = first + i;
        e[i].term = r->term;
        e[i].type = RAFT_ENTRY_NORMAL;
        e[i].len = (uint32_t)cmds[i].len;
        e[i].data = NULL;
        if (cmds[i].len) {
            memcpy(p, cmds[i].data, cmds[i].len);
            e[i].data = p;
            p += cmds[i].len;
        }
    }
    r->uncommitted += bytes;
    if (info) {
        info->index = first;
        info->term = r->term;
    }
    bcast_append(r);
    return 0;
}

int raft_propose(raft_t *r, const void *data, size_t len, raft_prop_info_t *info)
{
    raft_iov_t v = { data, len };
    return raft_propose_batch(r, &v, 1, info);
}

int raft_propose_conf(raft_t *r, uint32_t op, uint64_t id, raft_prop_info_t *info)
{
    int rc = check_leader(r, info);
    if (rc < 0)
        return rc;
    if (id == 0 || op < RAFT_CONF_ADD_LEARNER || op > RAFT_CONF_REMOVE)
        return -QERR_INVAL;
    /* thesis §4.1: one change at a time; and (the fix to the single-server algorithm) not
     * before the leader has committed an entry of its own term */
    if (r->conf_index > r->commit || r->commit < r->term_start)
        return -QERR_CONFCHANGE;
    raft_conf_t c = r->conf;
    uint32_t role = raft_conf_role(&c, id);
    uint32_t j = 0;
    while (j < c.n && c.s[j].id != id)
        j++;
    switch (op) {
    case RAFT_CONF_ADD_LEARNER:
    case RAFT_CONF_ADD_VOTER:
        if (role == 0) {
            if (c.n >= RAFT_MAX_SERVERS)
                return -QERR_TOOBIG;
            c.s[c.n].id = id;
            c.s[c.n].role = op == RAFT_CONF_ADD_LEARNER ? RAFT_LEARNER : RAFT_STAGING;
            c.n++;
        } else if (op == RAFT_CONF_ADD_VOTER && role == RAFT_LEARNER) {
            c.s[j].role = RAFT_STAGING;
        } else {
            return -QERR_EXISTS;
        }
        break;
    case RAFT_CONF_PROMOTE:
        if (role == 0)
            return -QERR_NOTFOUND;
        if (role != RAFT_LEARNER)
            return -QERR_EXISTS;
        c.s[j].role = RAFT_STAGING;
        break;
    case RAFT_CONF_REMOVE:
        if (role == 0)
            return -QERR_NOTFOUND;
        if (role == RAFT_VOTER && n_voters(r) == 1)
            return -QERR_INVAL;
        c.s[j] = c.s[c.n - 1];
        c.n--;
        break;
    }
    if (raft_conf_normalize(&c) < 0)
        return -QERR_INVAL;
    rc = append_conf(r, &c);
    if (rc < 0)
        return rc;
    if (info) {
        info->index = last_index(r);
        info->term = r->term;
    }
    bcast_append(r);
    /* a staging server that is already caught up, or a removal that leaves the leader
     * alone, can proceed at once */
    maybe_commit(r);
    return 0;
}

int raft_transfer(raft_t *r, uint64_t target)
{
    if (r->rd_taken)
        return -QERR_INVAL;
    if (r->role != RAFT_LEADER)
        return -QERR_NOTLEADER;
    struct peer *p = find_peer(r, target);
    if (target == r->id || !p || p->role != RAFT_VOTER)
        return -QERR_INVAL;
    if (r->transfer_target)
        return r->transfer_target == target ? 0 : -QERR_TRANSFER;
    r->transfer_target = target;
    r->transfer_elapsed = 0;
    r->transfer_sent = false;
    r->lease_until = 0; /* voters may soon ignore leases for the target */
    if (p->match == last_index(r)) {
        send_timeout_now(r, target);
        r->transfer_sent = true;
    } else {
        send_append(r, p, false); /* bring it up to date first (thesis §3.10) */
    }
    return 0;
}

int raft_compact(raft_t *r, uint64_t index, uint64_t *first_index)
{
    if (r->rd_taken)
        return -QERR_INVAL;
    if (index <= r->snap.index)
        return -QERR_COMPACTED;
    if (index > r->applied)
        return -QERR_UNAVAILABLE;
    raft_snap_meta_t s;
    uint64_t at;
    s.index = index;
    s.term = term_at(r, index);
    conf_at(r, index, &s.conf, &at);
    r->snap = s;
    uint64_t upto = index > r->cfg.snap_trailing ? index - r->cfg.snap_trailing : 0;
    if (upto > r->log.base_index)
        raft_log_compact(&r->log, upto);
    if (first_index)
        *first_index = raft_log_first(&r->log);
    return 0;
}

/* ---- Ready ------------------------------------------------------------------------------ */

bool raft_has_ready(const raft_t *r)
{
    if (r->rd_taken)
        return true;
    if (r->term != r->hs_saved.term || r->vote != r->hs_saved.vote ||
        r->commit != r->hs_saved.commit)
        return true;
    if (r->persisted < last_index(r) || r->commit > r->applied)
        return true;
    if (r->now_q.n || r->after_q.n || r->n_reads || r->chunk_ready || r->install_ready)
        return true;
    if (r->role == RAFT_LEADER)
        for (uint32_t i = 0; i < r->n_peers; i++) {
            const struct peer *p = &r->peers[i];
            if (p->state == RAFT_PR_REPLICATE && p->sent_commit < r->commit &&
                p->infl_n < r->cfg.max_inflight)
                return true;
        }
    return false;
}

/* Points the APPEND messages of q at their entries; drops those whose range changed. */
static void materialize(raft_t *r, struct msgq *q)
{
    size_t k = 0;
    for (size_t i = 0; i < q->n; i++) {
        raft_msg_t *m = &q->m[i];
        if (m->type == RAFT_MSG_APPEND && m->n_entries) {
            uint64_t hi = m->index + m->n_entries, t;
            if (raft_log_term_at(&r->log, m->index, &t) < 0 || t != m->log_term ||
                hi > last_index(r) || term_at(r, hi) != q->hi_term[i])
                continue;
            m->entries = raft_log_at(&r->log, m->index + 1);
        }
        if (k != i) {
            q->m[k] = *m;
            q->hi_term[k] = q->hi_term[i];
        }
        k++;
    }
    q->n = k;
}

void raft_ready(raft_t *r, raft_ready_t *rd)
{
    if (r->rd_taken) {
        *rd = r->rd;
        return;
    }
    if (r->role == RAFT_LEADER)
        for (uint32_t i = 0; i < r->n_peers; i++) {
            struct peer *p = &r->peers[i];
            if (p->state == RAFT_PR_REPLICATE && p->sent_commit < r->commit)
                send_append(r, p, true); /* carry the new commit index */
        }
    materialize(r, &r->now_q);
    materialize(r, &r->after_q);
    memset(rd, 0, sizeof *rd);
    rd->leader = r->leader;
    rd->role = r->role;
    rd->hs = (raft_hard_state_t){ .term = r->term, .vote = r->vote, .commit = r->commit };
    rd->hs_changed = memcmp(&rd->hs, &r->hs_saved, sizeof rd->hs) != 0;
    rd->snap_chunk = r->chunk_ready ? &r->chunk : NULL;
    rd->snapshot = r->install_ready ? &r->install : NULL;
    if (r->persisted < last_index(r)) {
        uint64_t from = r->persisted + 1;
        if (from <= r->log.base_index)
            from = r->log.base_index + 1;
        rd->entries = raft_log_at(&r->log, from);
        rd->n_entries = (size_t)(last_index(r) - from + 1);
    }
    rd->msgs = r->now_q.m;
    rd->n_msgs = r->now_q.n;
    rd->msgs_after_persist = r->after_q.m;
    rd->n_msgs_after_persist = r->after_q.n;
    if (r->commit > r->applied) {
        rd->committed = raft_log_at(&r->log, r->applied + 1);
        rd->n_committed = (size_t)(r->commit - r->applied);
    }
    rd->reads = r->reads;
    rd->n_reads = r->n_reads;
    r->rd = *rd;
    r->rd_taken = true;
}

void raft_advance(raft_t *r, const raft_ready_t *rd)
{
    (void)rd; /* the Ready is the one we keep in r->rd */
    if (!r->rd_taken)
        return;
    const raft_ready_t *x = &r->rd;
    r->hs_saved = x->hs;
    if (x->n_entries) {
        uint64_t l = x->entries[x->n_entries - 1].index;
        if (l > r->persisted)
            r->persisted = l;
    }
    if (x->n_committed) {
        uint64_t l = x->committed[x->n_committed - 1].index;
        if (l > r->applied)
            r->applied = l;
    }
    r->now_q.n = 0;
    r->after_q.n = 0;
    r->n_reads = 0;
    for (size_t i = 0; i < r->n_garbage; i++)
        free(r->garbage[i]);
    r->n_garbage = 0;
    r->chunk_ready = false;
    free(r->chunk_buf);
    r->chunk_buf = NULL;
    r->install_ready = false;
    r->round_unsent = false;
    r->rd_taken = false;
    ASSERT(r->applied <= r->commit && r->persisted <= last_index(r));
    maybe_commit(r); /* the leader's own entries are now durable and count (§10.2.1) */
}

/* ---- life cycle ------------------------------------------------------------------------ */

int raft_new(const raft_config_t *cfg, const raft_boot_t *boot, raft_t **out)
{
    *out = NULL;
    raft_config_t c = *cfg;
    if (c.id == 0)
        return -QERR_INVAL;
    if (!c.election_tick)
        c.election_tick = 10;
    if (!c.heartbeat_tick)
        c.heartbeat_tick = 1;
    if (c.heartbeat_tick >= c.election_tick)
        return -QERR_INVAL;
    if (!c.max_msg_bytes)
        c.max_msg_bytes = 1u << 20;
    if (!c.max_inflight)
        c.max_inflight = 256;
    if (c.max_inflight > 65536)
        return -QERR_INVAL;
    if (!c.max_uncommitted_bytes)
        c.max_uncommitted_bytes = 64u << 20;
    if (!c.snap_chunk_bytes)
        c.snap_chunk_bytes = 1u << 20;
    if (!c.promote_lag)
        c.promote_lag = 64;
    if (c.lease_reads && (!c.check_quorum || c.max_clock_drift_ticks < 1 ||
                          c.max_clock_drift_ticks >= c.election_tick))
        return -QERR_INVAL;

    raft_snap_meta_t snap = boot->snap;
    if (snap.conf.n > RAFT_MAX_SERVERS || raft_conf_normalize(&snap.conf) < 0)
        return -QERR_INVAL;
    /* the persisted entries: consecutive, reaching past the snapshot */
    const raft_entry_t *be = boot->entries;
    size_t bn = boot->n_entries;
    if (bn && !be)
        return -QERR_INVAL;
    uint64_t base = snap.index, base_term = snap.term;
    size_t skip = 0;
    if (bn) {
        if (be[0].index == 0 || be[0].index > snap.index + 1)
            return -QERR_INVAL; /* a gap after the snapshot: the log is corrupt */
        for (size_t i = 0; i < bn; i++)
            if (be[i].index != be[0].index + i || (be[i].len && !be[i].data) ||
                be[i].type < RAFT_ENTRY_NORMAL || be[i].type > RAFT_ENTRY_CONF ||
                be[i].term == 0 || (i && be[i].term < be[i - 1].term))
                return -QERR_INVAL;
        size_t at = snap.index >= be[0].index ? (size_t)(snap.index - be[0].index) : 0;
        if (be[bn - 1].index < snap.index ||
            (snap.index >= be[0].index && be[at].term != snap.term)) {
            /* entries the snapshot replaced (a crash before the caller dropped them): the
             * snapshot is committed state, so they go */
            skip = bn;
        } else if (be[0].index <= snap.index) {
            /* trailing entries before the snapshot are kept; the first one only gives the
             * term of the log's base */
            base = be[0].index;
            base_term = be[0].term;
            skip = 1;
        }
    }
    raft_t *r = calloc(1, sizeof *r);
    if (!r)
        return -QERR_NOMEM;
    r->cfg = c;
    r->id = c.id;
    r->rng = c.seed ^ (c.id * 0x9e3779b97f4a7c15ULL);
    r->rings = calloc((size_t)RAFT_MAX_SERVERS * c.max_inflight, sizeof *r->rings);
    if (!r->rings)
        goto fail;
    raft_log_init(&r->log, base, base_term);
    if (bn > skip && raft_log_append_copy(&r->log, be + skip, bn - skip) < 0)
        goto fail;
    r->snap = snap;
    r->term = boot->hs.term;
    r->vote = boot->hs.vote;
    if (last_term(r) > r->term) {
        /* a torn persist: entries (or a snapshot) of a newer term reached the disk, the hard
         * state did not. Nothing of that Ready was sent (acks wait for all of it), so no
         * vote was cast in the newer term: adopt it with no vote. */
        r->term = last_term(r);
        r->vote = 0;
    }
    r->commit = boot->hs.commit > snap.index ? boot->hs.commit : snap.index;
    if (r->commit > last_index(r))
        r->commit = last_index(r); /* a hint only; entries past the log are not there */
    r->applied = boot->applied ? boot->applied : snap.index;
    if (r->applied < snap.index || r->applied > last_index(r))
        goto inval;
    if (r->applied > r->commit)
        r->commit = r->applied; /* applied entries were committed; hs.commit lagged */
    r->hs_saved = boot->hs; /* if adjusted above, the first Ready persists the fix */
    r->persisted = last_index(r);
    r->role = RAFT_FOLLOWER;
    r->term_start = UINT64_MAX;
    set_conf(r, &snap.conf, 0);
    if (last_index(r) > snap.index)
        conf_after_append(r, snap.index + 1 > raft_log_first(&r->log) ? snap.index + 1
                                                                      : raft_log_first(&r->log),
                          last_index(r));
    reset_timer(r);
    *out = r;
    return 0;
inval:
    raft_free(r);
    return -QERR_INVAL;
fail:
    raft_free(r);
    return -QERR_NOMEM;
}

void raft_free(raft_t *r)
{
    if (!r)
        return;
    raft_log_free(&r->log);
    free(r->rings);
    free(r->preads);
    free(r->now_q.m);
    free(r->now_q.hi_term);
    free(r->after_q.m);
    free(r->after_q.hi_term);
    free(r->reads);
    for (size_t i = 0; i < r->n_garbage; i++)
        free(r->garbage[i]);
    free(r->garbage);
    free(r->chunk_buf);
    free(r);
}

/* ---- getters -------------------------------------------------------------------------- */

void raft_status(const raft_t *r, raft_status_t *st)
{
    memset(st, 0, sizeof *st);
    st->id = r->id;
    st->role = r->role;
    st->term = r->term;
    st->vote = r->vote;
    st->leader = r->leader;
    st->commit = r->commit;
    st->applied = r->applied;
    st->first_index = raft_log_first(&r->log);
    st->last_index = last_index(r);
    st->persisted_index = r->persisted;
    st->snap_index = r->snap.index;
    st->snap_term = r->snap.term;
    st->uncommitted_bytes = r->uncommitted;
    st->transfer_target = r->transfer_target;
    st->lease_valid = lease_valid(r);
    st->lease_read_ticks = st->lease_valid && r->commit >= r->term_start
                               ? r->lease_until - r->now : 0;
}

const raft_conf_t *raft_conf(const raft_t *r)
{
    return &r->conf;
}

void raft_snapshot_meta(const raft_t *r, raft_snap_meta_t *meta)
{
    *meta = r->snap;
}

int raft_log_entry(const raft_t *r, uint64_t index, raft_entry_t *e)
{
    if (index <= r->log.base_index)
        return -QERR_COMPACTED;
    if (index > last_index(r))
        return -QERR_UNAVAILABLE;
    *e = *raft_log_at(&r->log, index);
    return 0;
}

int raft_log_term(const raft_t *r, uint64_t index, uint64_t *term)
{
    if (index == r->snap.index) {
        *term = r->snap.term;
        return 0;
    }
    return raft_log_term_at(&r->log, index, term);
}

int raft_progress(const raft_t *r, uint64_t peer, raft_progress_t *p)
{
    memset(p, 0, sizeof *p);
    if (r->role != RAFT_LEADER)
        return -QERR_NOTLEADER;
    for (uint32_t i = 0; i < r->n_peers; i++) {
        const struct peer *q = &r->peers[i];
        if (q->id != peer)
            continue;
        p->match = q->match;
        p->next = q->next;
        p->state = q->state;
        p->inflight = q->infl_n;
        p->recent_active = q->recent_active;
        return 0;
    }
    return -QERR_NOTFOUND;
}
