/* tests/sim/sim.c — the simulated cluster: nodes run cluster/raft.c through the Ready loop
 * with a virtual-time disk; a nemesis cuts links (whole partitions or one direction of one
 * link), crashes nodes (tearing unsynced writes, inside compactions, as another campaigns),
 * pauses them, fails disk writes and allocations, delivers messages many terms late, changes
 * membership and transfers leadership. Every message crosses the wire codec. Clients run
 * put/get/CAS on the KV state machine, or propose fs commands to the real fs state machine
 * (tests/sim/smi.h hides which). Invariants are checked after every step (among them: a
 * lease never outlives the promise behind it, a commit is durable on a quorum, a read sees
 * every commit made before it started); at the end, linearizability (kv), or byte-identical
 * replica snapshots (fs, also checked at regular indexes and after every restore), and
 * liveness. All randomness comes from rng_t streams seeded by the run's seed. */
#include "tests/sim/sim.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/err.h"
#include "cluster/raft.h"
#include "tests/sim/alloc.h"
#include "tests/sim/disk.h"
#include "tests/sim/invariant.h"
#include "tests/sim/kv.h"
#include "tests/sim/linearize.h"
#include "tests/sim/net.h"
#include "tests/sim/rng.h"
#include "tests/sim/smi.h"

#define MAX_SLOTS 7            /* founding voters + up to 2 spares */
#define MAX_CLIENTS 8          /* CLIENT_EP must stay below NET_MAX_ENDPOINTS */
#define KV_MAX_CLIENTS 5
#define CLIENT_EP(c) (MAX_SLOTS + (c))
#define TICK 10                /* nominal virtual time units per tick */
#define TICK_Q 16              /* tick periods are kept in 1/16 of a time unit (drift) */
#define STASH_MAX 32           /* raft messages kept back for a late delivery */
#define MAX_LIES 8             /* breach lying-fsync: unsynced batches a node may hold */
#define OLD_ACKS 4             /* breach wipe-readd: a node's last answers, replayed late */
#define MAX_PENDING 64
#define LIVENESS_BOUND 5000    /* virtual time after healing to elect and commit */
#define CONVERGE_BOUND 5000    /* fs: virtual time for every member to apply the last entry */
#define T0_MS 1700000000000ull /* fs: what the nodes' clocks read at virtual time 0 */
#define MARKER_CLIENT (KV_CLIENTS - 1)
#define MARKER_KEY (KV_KEYS - 1)
#define U(x) ((unsigned long long)(x))

/* PK_BUNDLE (--groups > 1): what every group of one node sent one peer in one step, as the
 * real transport batches a node pair's traffic: dropped, delayed, duplicated or cut as one. */
enum { PK_RAFT = 1, PK_REQ, PK_RESP, PK_BUNDLE };
enum { OP_PUT = 1, OP_CAS, OP_GET };
/* Answers: done; refused (not leader, or retry later); the proposal was replaced by another
 * entry, so it never took effect (LOST); or its index is inside a snapshot the node
 * installed, so it may or may not be that entry (UNKNOWN). */
enum { RS_DONE = 0, RS_NOTLEADER, RS_RETRY, RS_LOST, RS_UNKNOWN };

/* What travels on the simulated network: a Raft message or a client request/response. */
typedef struct pkt {
    int kind;
    raft_msg_t m;              /* PK_RAFT: owns its memory (raft_msg_clone) */
    int client;
    uint32_t seq;
    int op;
    uint32_t key;
    uint64_t expect, value;
    int status;                /* PK_RESP: RS_* */
    uint64_t result;           /* GET: value; CAS: swapped; fs: apply's verdict */
    uint64_t hint;             /* RS_NOTLEADER: leader id or 0 */
    uint8_t *cmd;              /* fs PK_REQ: the command (owned) */
    size_t cmdlen;
    struct pkt **sub;          /* PK_BUNDLE: its packets, in send order (owned) */
    int *subg;                 /* PK_BUNDLE: the group of each */
    int nsub, capsub;
} pkt_t;

typedef struct pend_prop {
    int client;
    uint32_t seq;
    uint64_t index, term;
} pend_prop_t;

typedef struct pend_read {
    int client;
    uint32_t seq, key;
    uint64_t id, index;
    uint64_t start_commit;     /* highest commit index anywhere when the read started */
    int ready;                 /* read state received: serve once applied >= index */
} pend_read_t;

typedef struct node {
    int slot;
    uint64_t id;
    int up, retired, member;   /* member: in the last committed configuration */
    int retire;                /* removal committed: shut down at the next safe point */
    raft_t *r;
    rng_t rng;                 /* the core's randomness */
    disk_t disk;
    void *sm;                  /* the state machine (s->ops); rebuilt at each boot */
    raft_conf_t applied_conf;
    int64_t skew_ms;           /* fs: this lifetime's clock offset */
    uint64_t next_sweep;       /* fs: the leader's sweeper runs then */
    /* per-node settings (seeds with mixed settings; else the run's) */
    int set_drawn, pre_vote, check_quorum, lease_reads;
    /* the persist window */
    int busy;
    int pend_w;                /* --groups > 1: its batch waits in the node's shared write
                                  (busy is then set while the host persists, for every
                                  group of the node, whether it has a batch or not) */
    uint64_t busy_until, crash_at;
    raft_ready_t rd;
    disk_batch_t batch;
    disk_batch_t lies[MAX_LIES]; /* breach lying-fsync: acknowledged, not yet durable */
    int nlies;
    /* a paused process: takes no input, completes nothing; its clock runs on */
    int paused;
    uint64_t paused_until;
    int dirty;                 /* messages were queued for it: drive it after deliveries */
    pkt_t *old_acks[OLD_ACKS]; /* breach wipe-readd: copies of its last answers (a ring) */
    unsigned old_next;
    /* input that arrived during the window */
    pkt_t **inbox;
    size_t in_head, in_len, in_cap;
    uint32_t owed_ticks;
    uint64_t next_tick, restart_at;
    uint64_t tick_q, next_tick_q; /* tick period and next tick, in 1/TICK_Q time units */
    uint64_t kill_at;          /* nemesis: crash at this time (soon after an event) */
    uint64_t kill_restart;     /* restart that long after kill_at (0: the default delay) */
    const char *kill_why;
    int hold_down;             /* the Figure 8 script restarts it, not the kill path */
    /* per-lifetime checks */
    raft_conf_t seen_conf;     /* its configuration at the previous check */
    uint64_t last_commit, last_term, led_term;
    uint32_t last_role;
    pend_prop_t props[MAX_PENDING];
    int nprops;
    pend_read_t reads[MAX_PENDING];
    int nreads;
    uint64_t next_read_id;
    raft_entry_t *boot_tmp;
} node_t;

typedef struct client {
    int active;
    uint32_t seq;
    size_t h;                  /* index of the current op in the history */
    int target;                /* slot it sends to */
    uint64_t deadline;         /* gives up (outcome unknown) at this time */
    uint64_t attempt_until;    /* retries elsewhere if no answer by then */
    uint64_t next_at, resend_at;
    int op;
    uint32_t key;
    uint64_t expect, value;
    uint64_t seen[KV_KEYS];    /* last value observed per key, for CAS expectations */
    uint8_t *cmd;              /* fs: the current command (owned) */
    size_t cmdlen;
} client_t;

/* fs: the first state seen at an index, which every other replica's must equal. */
typedef struct scheck {
    uint64_t digest, node;     /* node 0: nothing recorded yet */
    uint8_t *bytes;
    size_t len;
    const char *what;
} scheck_t;

struct world;

typedef struct sim {
    const sim_opts_t *o;
    struct world *w;           /* --groups > 1: the world this group runs in; else NULL */
    int g;                     /* its group index (0 when alone) */
    sim_stats_t *st;
    const smi_ops_t *ops;      /* the state machine */
    void *run;                 /* its per-run context */
    int fs;                    /* ops is smi_fs */
    rng_t rng;
    net_t net_own;             /* alone: its network */
    net_t *net;                /* the network it sends on: its own, or the world's */
    inv_t inv;
    uint64_t now, stamp;
    int nslots, nfound;
    node_t node[MAX_SLOTS];
    client_t client[MAX_CLIENTS];
    int nclients;
    uint32_t nkeys;
    lin_op_t *hist;
    size_t nhist, caphist;
    /* per-seed parameters */
    raft_config_t base;
    uint64_t snap_every, disk_lat_max, client_timeout, client_giveup, nem_min, nem_max;
    unsigned disk_fail_pm, disk_crash_pm, leader_crash_pm, quick_kill_pm;
    int batch_max;             /* messages stepped before a Ready is taken */
    int mixed;                 /* nodes draw their own pre-vote/check-quorum/lease settings */
    unsigned alloc_ppm;        /* chance per allocation inside the core that it fails */
    unsigned stash_pm;         /* chance a raft message is also kept for a late delivery */
    unsigned camp_restart_pm;  /* chance a campaign starts a restart of another node */
    unsigned compact_crash_pm; /* chance a compaction crashes between its two steps */
    unsigned lie_pm;           /* breach lying-fsync: chance a persist is not durable */
    rng_t alloc_rng;           /* draws of the allocation failures */
    uint64_t alloc0;           /* alloc_failures() at the start */
    /* late deliveries */
    pkt_t *stash[STASH_MAX];
    int stash_from[STASH_MAX], stash_to[STASH_MAX], nstash;
    /* quiet periods: no client load (or reads only) until then */
    uint64_t quiet_until;
    int quiet_reads;
    uint64_t max_commit;       /* highest commit index any node reported */
    int camp_armed;            /* slot + 1 of a node whose next campaign restarts others */
    uint64_t script_at;        /* the lease script cuts its link then (0: not running) */
    uint64_t readd_at;         /* breach wipe-readd: add readd_slot - 1 back then */
    uint64_t retry_at;         /* world: a membership change (retry_kind 1) or transfer (2)
                                  found the leader's node busy; tried again then */
    int retry_kind;
    int readd_slot;
    uint64_t script_until;     /* other faults wait until then while the script runs */
    int script_kind;           /* the lease script's variant: 1 restarts, 2 a stale term */
    int stale_f, stale_c;      /* variant 2: slot + 1 of F and of C (0: not waiting) */
    uint64_t stale_term;       /* variant 2: L's term when C was cut off */
    uint64_t stale_at;         /* variant 2: the late copy arrives then (0: not yet due) */
    pkt_t *last_sent[MAX_SLOTS][MAX_SLOTS]; /* the last raft message a node sent another */
    uint8_t *wire, *wire2;     /* the codec's scratch buffers */
    size_t wire_cap;
    /* phases */
    uint64_t fault_end, nemesis_at, heal_at;
    int healed, live_ok, stop;
    uint64_t marker_seq, marker_first, marker_at;
    uint64_t conf_index;       /* index of the last committed configuration seen */
    /* the Figure 8 script (see fig8_start) */
    int fig8, f8_state, f8_a_alive;
    node_t *f8_a, *f8_b;
    uint64_t f8_at;
    /* fs */
    uint64_t ms_per_unit, sweep_every, check_every, converge_until;
    int fs_resend;             /* fs clients send again commands of unknown outcome */
    struct { uint64_t index, term; } markers[64];
    int nmarkers;
    scheck_t *sc;              /* by log index */
    size_t nsc;
    /* failure */
    int failed;
    char *why;
    size_t whylen;
} sim_t;

/* --groups G > 1: G independent Raft groups (each a sim_t: its own cores, state machines,
 * clients, invariants and checks) on the same simulated nodes, as fs/node.c hosts one group
 * per shard. What a node's groups share, as cluster/mraft.c and cluster/rstore.c do:
 *   - one write path: the node takes every group's Ready, then writes all their batches to
 *     one log and fsyncs once (host_drive, host_window); while it persists no group of it
 *     steps anything. A crash keeps a prefix of the whole write (host_crash), so a tear can
 *     cut several groups' entries at once, and a failed write or a crash takes down every
 *     group of the node;
 *   - one process: a pause, a crash, a restart, its clock (tick period, skew) are the node's;
 *   - one network: what its groups send a peer in a step travels as one bundle (PK_BUNDLE).
 * The nemesis is the world's: at each of group 0's nemesis times, one group (drawn) runs
 * one fault; node-level faults then hit every group, the network's every pair. Faults end
 * at the same time for every group. Host-level draws come from the world's rng. */
#define MAX_GROUPS 8
typedef struct world {
    int G;
    sim_t *g[MAX_GROUPS];
    sim_stats_t st[MAX_GROUPS];
    char *why[MAX_GROUPS];
    rng_t rng;                 /* the network's and the shared write path's draws */
    net_t net;
    pkt_t *out[2][NET_MAX_ENDPOINTS][NET_MAX_ENDPOINTS]; /* [reliable][from][to]: bundles
                                                            filling during a step */
    int busy[MAX_SLOTS];       /* a shared write in progress */
    int driving[MAX_SLOTS], again[MAX_SLOTS];
} world_t;

/* ---------------------------------------------------------------------------------------- */

static void tr(sim_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tr(sim_t *s, const char *fmt, ...)
{
    if (!s->o->trace)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (s->w)
        fprintf(s->o->trace, "%7llu g%d  ", U(s->now), s->g);
    else
        fprintf(s->o->trace, "%7llu  ", U(s->now));
    vfprintf(s->o->trace, fmt, ap);
    fputc('\n', s->o->trace);
    va_end(ap);
}

static void fail(sim_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(sim_t *s, const char *fmt, ...)
{
    if (s->failed)
        return;
    s->failed = 1;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (s->w)
        snprintf(s->why, s->whylen, "t=%llu: group %d: %s", U(s->now), s->g, buf);
    else
        snprintf(s->why, s->whylen, "t=%llu: %s", U(s->now), buf);
    tr(s, "FAILED: %s", buf);
}

/* A broken Raft invariant fails the run, except under --lin-only, where it is only traced
 * and the run goes on so the end-of-run linearizability check must catch the damage.
 * Returns 1 if the caller should stop what it was doing. */
static int inv_broken(sim_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int inv_broken(sim_t *s, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (s->o->lin_only) {
        s->st->inv_broken++;
        tr(s, "invariant broken (not fatal under --lin-only): %s", buf);
        return 0;
    }
    fail(s, "%s", buf);
    return 1;
}

static int inv_failed(sim_t *s)
{
    return inv_broken(s, "%s", s->inv.err);
}

static const char *msg_name(uint32_t t)
{
    static const char *names[] = { "?", "PREVOTE", "PREVOTE_RESP", "VOTE", "VOTE_RESP",
                                   "APPEND", "APPEND_RESP", "HEARTBEAT", "HEARTBEAT_RESP",
                                   "SNAPSHOT", "SNAPSHOT_RESP", "TIMEOUT_NOW", "READ_INDEX",
                                   "READ_INDEX_RESP" };
    return t < RAFT_MSG__COUNT ? names[t] : "?";
}

static const char *role_name(uint32_t r)
{
    switch (r) {
    case RAFT_FOLLOWER: return "follower";
    case RAFT_PRECANDIDATE: return "pre-candidate";
    case RAFT_CANDIDATE: return "candidate";
    case RAFT_LEADER: return "LEADER";
    }
    return "?";
}

static void msg_desc(const raft_msg_t *m, char *b, size_t len)
{
    int k = snprintf(b, len, "%s t%llu", msg_name(m->type), U(m->term));
    if (k < 0 || (size_t)k >= len)
        return;
    b += k;
    len -= (size_t)k;
    switch (m->type) {
    case RAFT_MSG_PREVOTE: case RAFT_MSG_VOTE:
        snprintf(b, len, " last=%llu/t%llu%s", U(m->index), U(m->log_term),
                 m->flags & RAFT_MSGF_TRANSFER ? " transfer" : "");
        break;
    case RAFT_MSG_PREVOTE_RESP: case RAFT_MSG_VOTE_RESP: case RAFT_MSG_READ_INDEX_RESP:
        snprintf(b, len, " %s idx=%llu", m->reject ? "REJECT" : "grant/ok", U(m->index));
        break;
    case RAFT_MSG_APPEND:
        snprintf(b, len, " prev=%llu/t%llu n=%u [%llu..] commit=%llu", U(m->index),
                 U(m->log_term), m->n_entries, U(m->n_entries ? m->entries[0].index : 0),
                 U(m->commit));
        break;
    case RAFT_MSG_APPEND_RESP:
        snprintf(b, len, " %s idx=%llu hint=%llu/t%llu", m->reject ? "REJECT" : "ok",
                 U(m->index), U(m->hint_index), U(m->hint_term));
        break;
    case RAFT_MSG_HEARTBEAT:
        snprintf(b, len, " commit=%llu ctx=%llu", U(m->commit), U(m->ctx));
        break;
    case RAFT_MSG_HEARTBEAT_RESP:
        snprintf(b, len, " ctx=%llu idx=%llu", U(m->ctx), U(m->index));
        break;
    case RAFT_MSG_SNAPSHOT:
        snprintf(b, len, " snap=%llu/t%llu off=%llu len=%u%s", U(m->snap.index),
                 U(m->snap.term), U(m->offset), m->len, m->flags & RAFT_MSGF_LAST ? " last" : "");
        break;
    case RAFT_MSG_SNAPSHOT_RESP:
        snprintf(b, len, " snap=%llu off=%llu%s%s", U(m->index), U(m->offset),
                 m->reject ? " REJECT" : "", m->flags & RAFT_MSGF_LAST ? " installed" : "");
        break;
    default:
        break;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Packets */

/* The network's copy of a packet it duplicates. */
static void pkt_free(void *p);

static void *pkt_clone(const void *p)
{
    const pkt_t *src = p;
    pkt_t *d = malloc(sizeof(*d));
    if (!d)
        return NULL;
    *d = *src;
    if (src->kind == PK_BUNDLE) {
        d->sub = malloc((size_t)src->capsub * sizeof(*d->sub));
        d->subg = malloc((size_t)src->capsub * sizeof(*d->subg));
        d->nsub = 0;
        if (!d->sub || !d->subg) {
            pkt_free(d);
            return NULL;
        }
        for (int i = 0; i < src->nsub; i++) {
            if (!(d->sub[i] = pkt_clone(src->sub[i]))) {
                pkt_free(d);
                return NULL;
            }
            d->subg[i] = src->subg[i];
            d->nsub = i + 1;
        }
        return d;
    }
    if (src->kind == PK_RAFT && raft_msg_clone(&d->m, &src->m) < 0) {
        free(d);
        return NULL;
    }
    if (src->cmd && (d->cmd = malloc(src->cmdlen ? src->cmdlen : 1)))
        memcpy(d->cmd, src->cmd, src->cmdlen);
    else if (src->cmd) {
        free(d);
        return NULL;
    }
    return d;
}

static void pkt_free(void *p)
{
    pkt_t *k = p;
    if (!k)
        return;
    if (k->kind == PK_RAFT)
        raft_msg_free(&k->m);
    for (int i = 0; i < k->nsub; i++)
        pkt_free(k->sub[i]);
    free(k->sub);
    free(k->subg);
    free(k->cmd);
    free(k);
}

/* Every raft message crosses the wire codec, as on a real network: the receiver steps what
 * raft_msg_decode makes of raft_msg_encode's bytes, and those bytes must encode back the
 * same. Returns 0, or -1 after failing the run. */
static int wire_copy(sim_t *s, node_t *n, const raft_msg_t *m, raft_msg_t *out)
{
    size_t need = raft_msg_encoded_size(m), len = 0, len2 = 0;
    if (need > s->wire_cap) {
        size_t cap = need * 2;
        uint8_t *a = realloc(s->wire, cap), *b;
        if (a)
            s->wire = a;
        b = a ? realloc(s->wire2, cap) : NULL;
        if (!a || !b) {
            fail(s, "out of memory");
            return -1;
        }
        s->wire2 = b;
        s->wire_cap = cap;
    }
    int rc = raft_msg_encode(m, s->wire, need, &len);
    if (rc < 0 || len != need) {
        fail(s, "n%llu: raft_msg_encode refused its own %s to n%llu (%s, %zu of %zu bytes)",
             U(n->id), msg_name(m->type), U(m->to), rc < 0 ? qerr_str(rc) : "ok", len, need);
        return -1;
    }
    rc = raft_msg_decode(s->wire, len, out);
    if (rc == -QERR_NOMEM) {
        fail(s, "out of memory");
        return -1;
    }
    if (rc < 0) {
        fail(s, "n%llu: raft_msg_decode refused the %zu bytes of a %s to n%llu: %s", U(n->id),
             len, msg_name(m->type), U(m->to), qerr_str(rc));
        return -1;
    }
    if (raft_msg_encode(out, s->wire2, s->wire_cap, &len2) < 0 || len2 != len ||
        memcmp(s->wire, s->wire2, len) != 0) {
        raft_msg_free(out);
        fail(s, "n%llu: a %s to n%llu does not encode back to the same %zu bytes after "
             "decoding", U(n->id), msg_name(m->type), U(m->to), len);
        return -1;
    }
    return 0;
}

/* Keeps a copy of p for a late delivery (nemesis_late); a full stash replaces a random one,
 * so some copies stay for many terms. */
static void stash_keep(sim_t *s, int from, int to, const pkt_t *p)
{
    pkt_t *c = pkt_clone(p);
    if (!c)
        return;
    int k;
    if (s->nstash < STASH_MAX)
        k = s->nstash++;
    else {
        k = (int)rng_below(&s->rng, STASH_MAX);
        pkt_free(s->stash[k]);
    }
    s->stash[k] = c;
    s->stash_from[k] = from;
    s->stash_to[k] = to;
}

static void stash_clear(sim_t *s)
{
    for (int i = 0; i < s->nstash; i++) {
        pkt_free(s->stash[i]);
        s->stash[i] = NULL;
    }
    s->nstash = 0;
}

/* Sends p from endpoint from to endpoint to (over a link that loses nothing if reliable).
 * Alone, at once; in a world, into the bundle for that pair, which the world sends at the
 * end of the step. Takes p. Returns 0, or -1 on no memory (p freed). */
static int xsend(sim_t *s, int from, int to, pkt_t *p, int reliable)
{
    if (!s->w)
        return reliable ? net_send_reliable(s->net, from, to, p, s->now)
                        : net_send(s->net, from, to, p, s->now);
    pkt_t **bp = &s->w->out[reliable ? 1 : 0][from][to];
    if (!*bp && !(*bp = calloc(1, sizeof(**bp)))) {
        pkt_free(p);
        return -1;
    }
    pkt_t *b = *bp;
    b->kind = PK_BUNDLE;
    if (b->nsub == b->capsub) {
        int nc = b->capsub ? b->capsub * 2 : 8;
        pkt_t **a = realloc(b->sub, (size_t)nc * sizeof(*a));
        if (a)
            b->sub = a;
        int *g = a ? realloc(b->subg, (size_t)nc * sizeof(*g)) : NULL;
        if (!g) {
            pkt_free(p);
            return -1;
        }
        b->subg = g;
        b->capsub = nc;
    }
    b->sub[b->nsub] = p;
    b->subg[b->nsub++] = s->g;
    return 0;
}

static void send_raft(sim_t *s, node_t *n, const raft_msg_t *m)
{
    if (m->to == 0 || m->to > (uint64_t)s->nslots) {
        tr(s, "n%llu -> n%llu %s: no such node, dropped", U(n->id), U(m->to),
           msg_name(m->type));
        return;
    }
    pkt_t *p = calloc(1, sizeof(*p));
    if (!p) {
        fail(s, "out of memory");
        return;
    }
    if (wire_copy(s, n, m, &p->m) < 0) {
        free(p);
        return;
    }
    p->kind = PK_RAFT;
    s->st->msgs++;
    if (s->stash_pm && !s->healed && rng_chance(&s->rng, s->stash_pm))
        stash_keep(s, n->slot, (int)m->to - 1, p);
    pkt_t *c = pkt_clone(p);
    if (c) {
        pkt_free(s->last_sent[n->slot][m->to - 1]);
        s->last_sent[n->slot][m->to - 1] = c;
    }
    if ((s->o->breach & SIM_BREACH_WIPE_READD) && !m->reject &&
        (m->type == RAFT_MSG_APPEND_RESP || m->type == RAFT_MSG_VOTE_RESP ||
         m->type == RAFT_MSG_SNAPSHOT_RESP || m->type == RAFT_MSG_HEARTBEAT_RESP)) {
        pkt_t *c = pkt_clone(p);
        if (c) {
            unsigned k = n->old_next++ % OLD_ACKS;
            pkt_free(n->old_acks[k]);
            n->old_acks[k] = c;
        }
    }
    if (xsend(s, n->slot, (int)m->to - 1, p, 0) < 0)
        fail(s, "out of memory");
}

/* How clients and nodes talk (xsend's reliable): kv over the faulty network, like the
 * nodes; fs: a client is a mount's FUSE call to its node, which loses nothing (the fs state
 * machine does not deduplicate, so a lost request or answer would leave the outcome
 * unknown). */

static void respond(sim_t *s, node_t *n, int client, uint32_t seq, int status,
                    uint64_t result, uint64_t hint)
{
    if (client < 0 || client >= s->nclients)
        return;
    pkt_t *p = calloc(1, sizeof(*p));
    if (!p) {
        fail(s, "out of memory");
        return;
    }
    p->kind = PK_RESP;
    p->client = client;
    p->seq = seq;
    p->status = status;
    p->result = result;
    p->hint = hint;
    if (xsend(s, n->slot, CLIENT_EP(client), p, s->fs) < 0)
        fail(s, "out of memory");
}

/* ---------------------------------------------------------------------------------------- */
/* Calls into the core. Allocation failures (tests/sim/alloc.h) are armed around these only,
 * so the simulator's own allocations never fail. */

static void arm(sim_t *s)
{
    if (s->alloc_ppm)
        alloc_arm(&s->alloc_rng, s->alloc_ppm);
}

static int c_step(sim_t *s, node_t *n, const raft_msg_t *m)
{
    arm(s);
    int rc = raft_step(n->r, m);
    alloc_disarm();
    return rc;
}

static void c_tick(sim_t *s, node_t *n)
{
    arm(s);
    raft_tick(n->r);
    alloc_disarm();
}

static int c_propose(sim_t *s, node_t *n, const void *data, size_t len,
                     raft_prop_info_t *info)
{
    arm(s);
    int rc = raft_propose(n->r, data, len, info);
    alloc_disarm();
    return rc;
}

static int c_propose_conf(sim_t *s, node_t *n, uint32_t op, uint64_t id,
                          raft_prop_info_t *info)
{
    arm(s);
    int rc = raft_propose_conf(n->r, op, id, info);
    alloc_disarm();
    return rc;
}

static int c_read_index(sim_t *s, node_t *n, uint64_t id, uint64_t *hint)
{
    arm(s);
    int rc = raft_read_index(n->r, id, hint);
    alloc_disarm();
    return rc;
}

static int c_transfer(sim_t *s, node_t *n, uint64_t target)
{
    arm(s);
    int rc = raft_transfer(n->r, target);
    alloc_disarm();
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Nodes */

/* Boot, crash and drive node n. Alone: node_boot1, node_crash1, node_drive1 on n. In a
 * world they act on the whole simulated node (every group's replica on n's slot): see
 * host_boot, host_crash, host_drive. */
static void node_boot(sim_t *s, node_t *n);
static void node_crash(sim_t *s, node_t *n, const char *why);
static void node_drive(sim_t *s, node_t *n);

static uint64_t node_rand(void *ctx)
{
    return rng_next(&((node_t *)ctx)->rng);
}

static int node_snap_read(void *ctx, uint64_t index, uint64_t off, void *buf, size_t cap,
                          size_t *got)
{
    node_t *n = ctx;
    if (index != n->disk.snap.index || !n->disk.snap_data)
        return -QERR_SNAPSHOT;
    if (off > n->disk.snap_len)
        return -QERR_INVAL;
    size_t k = n->disk.snap_len - off;
    if (k > cap)
        k = cap;
    memcpy(buf, n->disk.snap_data + off, k);
    *got = k;
    return 0;
}

static uint64_t entry_hash(const raft_entry_t *e)
{
    return kv_entry_hash(e->term, e->data, e->len) ^ ((uint64_t)e->type << 56);
}

/* ---- fs: replicas' states compared byte for byte ---- */

static uint64_t digest(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h ^ n;
}

/* Records node n's state bytes at index, or compares them with the first recorded there. */
static void state_check(sim_t *s, node_t *n, uint64_t index, const uint8_t *b, size_t len,
                        const char *what)
{
    if (index >= s->nsc) {
        size_t nn = s->nsc ? s->nsc : 256;
        while (nn <= index)
            nn *= 2;
        scheck_t *t = realloc(s->sc, nn * sizeof(*t));
        if (!t) {
            fail(s, "out of memory");
            return;
        }
        memset(t + s->nsc, 0, (nn - s->nsc) * sizeof(*t));
        s->sc = t;
        s->nsc = nn;
    }
    scheck_t *c = &s->sc[index];
    uint64_t d = digest(b, len);
    if (!c->node) {
        if (!(c->bytes = malloc(len))) {
            fail(s, "out of memory");
            return;
        }
        memcpy(c->bytes, b, len);
        c->len = len;
        c->digest = d;
        c->node = n->id;
        c->what = what;
        return;
    }
    s->st->state_checks++;
    if (d == c->digest && len == c->len && memcmp(b, c->bytes, len) == 0)
        return;
    char diff[700];
    s->ops->diff(c->bytes, c->len, b, len, diff, sizeof(diff));
    fail(s, "replicas diverge at index %llu: n%llu's state (%s) differs from n%llu's (%s): %s",
         U(index), U(n->id), what, U(c->node), c->what, diff);
}

/* Takes node n's state bytes now and checks them at its applied index. */
static void check_now(sim_t *s, node_t *n, const char *what)
{
    uint8_t *b;
    size_t len;
    if (s->ops->state_bytes(n->sm, &b, &len) < 0) {
        fail(s, "n%llu: could not snapshot its state", U(n->id));
        return;
    }
    state_check(s, n, s->ops->applied(n->sm), b, len, what);
    free(b);
}

/* Replaces n's state with a snapshot's (at index). fs: the restored state must snapshot back
 * to exactly the bytes it came from, and equal the other replicas' at that index. Returns 0,
 * or -1 after failing the run. */
static int sm_restore(sim_t *s, node_t *n, const uint8_t *data, size_t len, uint64_t index,
                      const char *what)
{
    char err[300] = "";
    if (s->ops->restore(n->sm, data, len, err, sizeof(err)) < 0 ||
        s->ops->applied(n->sm) != index) {
        fail(s, "n%llu: %s %llu does not hold a state at that index%s%s", U(n->id), what,
             U(index), err[0] ? ": " : "", err);
        return -1;
    }
    if (!s->fs)
        return 0;
    uint8_t *b;
    size_t bl, hdr = s->ops->snap_hdr;
    if (s->ops->state_bytes(n->sm, &b, &bl) < 0) {
        fail(s, "n%llu: could not snapshot its restored state", U(n->id));
        return -1;
    }
    if (bl != len - hdr || memcmp(b, data + hdr, bl) != 0) {
        char diff[700];
        s->ops->diff(data + hdr, len - hdr, b, bl, diff, sizeof(diff));
        fail(s, "n%llu: the state restored from %s %llu does not snapshot back to the same "
             "bytes: %s", U(n->id), what, U(index), diff);
        free(b);
        return -1;
    }
    s->st->restore_checks++;
    state_check(s, n, index, b, bl, "restored from a snapshot");
    free(b);
    return s->failed ? -1 : 0;
}

/* fs: node n's wall clock in ms, as a proposer stamps it into a command: virtual time plus
 * the node's offset, now and then a little behind (clocks of racing proposers disagree). */
static uint64_t node_ms(sim_t *s, node_t *n)
{
    uint64_t t = T0_MS + s->now * s->ms_per_unit + (uint64_t)n->skew_ms;
    if (rng_chance(&s->rng, 30))
        t -= rng_below(&s->rng, 300);
    return t;
}

/* Seeds with mixed settings: each node runs its own pre-vote, check-quorum and lease-read
 * settings, drawn at its first boot (and with --breach restart-settings sometimes again at
 * a restart: an operator rolling a configuration change through the cluster). Every voter
 * keeps the same election timeout, as raft_tick's contract requires. */
static void node_settings(sim_t *s, node_t *n, raft_config_t *cfg)
{
    if (!s->mixed)
        return;
    if (!n->set_drawn ||
        ((s->o->breach & SIM_BREACH_RESTART_SETTINGS) && rng_chance(&s->rng, 300))) {
        n->set_drawn = 1;
        n->pre_vote = (int)rng_below(&s->rng, 2);
        n->check_quorum = (int)rng_below(&s->rng, 2);
        n->lease_reads = n->check_quorum && rng_chance(&s->rng, 600);
    }
    cfg->pre_vote = n->pre_vote;
    cfg->check_quorum = n->check_quorum;
    cfg->lease_reads = n->lease_reads;
    cfg->max_clock_drift_ticks = n->lease_reads ? 3 : 0;
}

static void node_boot1(sim_t *s, node_t *n)
{
    raft_boot_t boot;
    disk_boot(&n->disk, &boot, &n->boot_tmp);
    raft_config_t cfg = s->base;
    cfg.id = n->id;
    node_settings(s, n, &cfg);
    rng_seed(&n->rng, rng_next(&s->rng));
    cfg.rand = node_rand;
    cfg.rand_ctx = n;
    cfg.snap_read = node_snap_read;
    cfg.snap_ctx = n;
    int rc = raft_new(&cfg, &boot, &n->r);
    if (rc < 0) {
        const disk_t *d = &n->disk;
        fail(s, "n%llu: raft_new refused its durable state (hs t%llu v%llu c%llu, snapshot "
             "%llu/t%llu, entries %llu/t%llu..%llu/t%llu): %s", U(n->id), U(boot.hs.term),
             U(boot.hs.vote), U(boot.hs.commit), U(boot.snap.index), U(boot.snap.term),
             U(d->n ? d->ents[0].index : 0), U(d->n ? d->ents[0].term : 0),
             U(d->n ? d->ents[d->n - 1].index : 0), U(d->n ? d->ents[d->n - 1].term : 0),
             qerr_str(rc));
        n->r = NULL;
        return;
    }
    disk_recover(&n->disk);
    s->ops->free(n->sm);
    if (!(n->sm = s->ops->new(s->run))) {
        fail(s, "out of memory");
        return;
    }
    if (n->disk.snap.index && sm_restore(s, n, n->disk.snap_data, n->disk.snap_len,
                                         n->disk.snap.index, "its durable snapshot") < 0)
        return;
    n->applied_conf = n->disk.snap.conf;
    n->up = 1;
    n->busy = 0;
    n->pend_w = 0;
    n->crash_at = 0;
    n->kill_at = 0;
    n->restart_at = 0;
    n->paused = 0;
    n->dirty = 0;
    n->kill_restart = 0;
    /* A tick period within 10% of TICK: clocks drift (nemesis_drift changes it), but within
     * the lease's bound (max_clock_drift_ticks 3 of 10). */
    n->tick_q = rng_range(&s->rng, (TICK - 1) * TICK_Q, (TICK + 1) * TICK_Q);
    n->next_tick_q = s->now * TICK_Q + rng_range(&s->rng, 1, n->tick_q);
    n->next_tick = (n->next_tick_q + TICK_Q - 1) / TICK_Q;
    if (s->fs) {
        n->skew_ms = (int64_t)rng_below(&s->rng, 401) - 200;
        n->next_sweep = s->now + rng_range(&s->rng, 1, s->sweep_every);
    }
    n->owed_ticks = 0;
    n->nprops = n->nreads = 0;
    raft_status_t st;
    raft_status(n->r, &st);
    n->last_commit = st.commit;
    n->last_term = st.term;
    n->last_role = st.role;
    n->led_term = 0;
    n->seen_conf = *raft_conf(n->r);
    char set[80] = "";
    if (s->mixed)
        snprintf(set, sizeof(set), " (pre_vote %d check_quorum %d lease_reads %d)",
                 cfg.pre_vote, cfg.check_quorum, cfg.lease_reads);
    tr(s, "n%llu boots: term %llu vote %llu commit %llu, snapshot %llu/t%llu, log %llu..%llu%s",
       U(n->id), U(st.term), U(st.vote), U(st.commit), U(st.snap_index), U(st.snap_term),
       U(st.first_index), U(st.last_index), set);
}

static void inbox_clear(node_t *n)
{
    for (size_t i = 0; i < n->in_len; i++)
        pkt_free(n->inbox[(n->in_head + i) % n->in_cap]);
    n->in_head = n->in_len = 0;
}

static int inbox_push(node_t *n, pkt_t *p)
{
    if (n->in_len == n->in_cap) {
        size_t nc = n->in_cap ? n->in_cap * 2 : 16;
        pkt_t **a = malloc(nc * sizeof(*a));
        if (!a)
            return -1;
        for (size_t i = 0; i < n->in_len; i++)
            a[i] = n->inbox[(n->in_head + i) % n->in_cap];
        free(n->inbox);
        n->inbox = a;
        n->in_cap = nc;
        n->in_head = 0;
    }
    n->inbox[(n->in_head + n->in_len) % n->in_cap] = p;
    n->in_len++;
    return 0;
}

/* breach lying-fsync: writes the batches whose persist lied, oldest first (the first k). */
static void lies_flush(sim_t *s, node_t *n, int k)
{
    char err[256];
    for (int i = 0; i < n->nlies; i++) {
        if (i < k && !s->failed && disk_write(&n->disk, &n->lies[i], SIZE_MAX, err,
                                              sizeof(err)) < 0)
            fail(s, "n%llu disk: %s", U(n->id), err);
        disk_batch_free(&n->lies[i]);
    }
    n->nlies = 0;
}

/* Crashes n: the unsynced writes of a persist in progress keep a random prefix. (With
 * lying-fsync batches pending, some of those reach the disk, oldest first; the current
 * batch only if all of them did.) */
static void node_crash1(sim_t *s, node_t *n, const char *why)
{
    if (!n->up)
        return;
    int kept_lies = n->nlies, lost_lies = 0;
    if (n->nlies) {
        kept_lies = (int)rng_below(&s->rng, (uint64_t)n->nlies + 1);
        lost_lies = n->nlies - kept_lies;
        lies_flush(s, n, kept_lies);
        if (lost_lies)
            tr(s, "n%llu CRASH: %d acknowledged persists were never durable and are lost",
               U(n->id), lost_lies);
    }
    if (n->busy) {
        size_t recs = disk_batch_records(&n->batch);
        size_t k = lost_lies ? 0 : (size_t)rng_below(&s->rng, recs + 1);
        char err[256];
        if (disk_write(&n->disk, &n->batch, k, err, sizeof(err)) < 0)
            fail(s, "n%llu disk (torn write): %s", U(n->id), err);
        if (k < recs)
            s->st->torn++;
        tr(s, "n%llu CRASH (%s) during a persist: %zu of %zu records reached the disk",
           U(n->id), why, k, recs);
        disk_batch_free(&n->batch);
    } else
        tr(s, "n%llu CRASH (%s)", U(n->id), why);
    s->st->crashes++;
    raft_free(n->r);
    n->r = NULL;
    n->up = 0;
    n->busy = 0;
    n->pend_w = 0;
    n->paused = 0;
    n->dirty = 0;
    n->crash_at = 0;
    n->kill_at = 0;
    inbox_clear(n);
    n->owed_ticks = 0;
    if (s->fs)   /* the daemon died mid-call: those FUSE calls fail, outcome unknown */
        for (int i = 0; i < n->nprops; i++)
            respond(s, n, n->props[i].client, n->props[i].seq, RS_UNKNOWN, 0, 0);
    n->nprops = n->nreads = 0;
}

static void leader_completeness(sim_t *s, node_t *n, const raft_status_t *st)
{
    uint64_t from = st->snap_index ? st->snap_index : 1;
    for (uint64_t i = from; i <= s->inv.max_commit; i++) {
        uint64_t by = inv_commit_by(&s->inv, i);
        if (!by || by >= st->term)
            continue;
        uint64_t want = inv_commit_term(&s->inv, i), t = 0;
        int rc = raft_log_term(n->r, i, &t);
        if (rc == -QERR_COMPACTED)
            continue;
        if (rc < 0) {
            inv_broken(s, "leader completeness: n%llu leads term %llu without index %llu, "
                       "committed in term %llu (its log ends at %llu)", U(n->id), U(st->term),
                       U(i), U(by), U(st->last_index));
            return;
        }
        if (t != want) {
            inv_broken(s, "leader completeness: n%llu leads term %llu with term %llu at index "
                       "%llu, where term %llu was committed in term %llu", U(n->id),
                       U(st->term), U(t), U(i), U(want), U(by));
            return;
        }
    }
}

static void isolate(sim_t *s, int x, int cut)
{
    for (int i = 0; i < s->nslots; i++)
        if (i != x) {
            net_cut(s->net, x, i, cut);
            net_cut(s->net, i, x, cut);
        }
}

/* The Figure 8 script (§5.4.2): leader A is isolated and takes proposals it cannot commit,
 * then crashes or just stays cut off; the next leader B appends at the same index in a
 * later term and crashes (isolated) before replicating; A comes back (restarts, or rejoins
 * still holding its clients' pending proposals), wins, and replicates its old entries; the
 * moment its commit index moves, A is cut off and soon crashed; B comes back and, its last
 * term being higher, can win. A correct core never commits A's old entries by counting
 * replicas, so whatever B then overwrites was never committed (nor acknowledged to a
 * client). Other faults pause meanwhile. */
static void fig8_abort(sim_t *s, const char *why)
{
    tr(s, "fig8: script ends (%s)", why);
    s->f8_state = 0;
    net_heal(s->net);
    for (int i = 0; i < s->nslots; i++) {
        node_t *n = &s->node[i];
        if (n->hold_down || (!n->up && !n->retired && !n->restart_at)) {
            n->hold_down = 0;
            n->restart_at = s->now + rng_range(&s->rng, 1, 100);
        }
    }
}

static void fig8_start(sim_t *s, node_t *a)
{
    net_heal(s->net);
    isolate(s, a->slot, 1);
    s->f8_a = a;
    s->f8_b = NULL;
    s->f8_state = 1;
    s->f8_at = s->now + rng_range(&s->rng, 50, 200);
    tr(s, "fig8: isolate leader n%llu; it takes proposals it cannot commit", U(a->id));
}

static void fig8_timer(sim_t *s)
{
    node_t *a = s->f8_a;
    if (s->f8_state == 1) {
        raft_status_t st;
        if (!a->up || a->busy || a->paused) {
            fig8_abort(s, "A is down, busy or paused");
            return;
        }
        raft_status(a->r, &st);
        if (st.role != RAFT_LEADER || st.last_index <= st.commit) {
            fig8_abort(s, "A holds no uncommitted entry");
            return;
        }
        s->f8_a_alive = (int)rng_below(&s->rng, 2);
        net_heal(s->net);
        if (s->f8_a_alive) {
            isolate(s, a->slot, 1);
            tr(s, "fig8: A = n%llu stays cut off, holding uncommitted entries", U(a->id));
        } else {
            node_crash(s, a, "fig8: A, holding uncommitted entries");
            a->hold_down = 1;
            a->restart_at = 0;
        }
        s->f8_state = 2;
        s->f8_at = s->now + 2000;
        return;
    }
    if (s->f8_state == 5) {
        a->hold_down = 0;
        a->restart_at = s->now;
        s->f8_state = 0;
        net_heal(s->net);
        tr(s, "fig8: script done, A restarts");
        return;
    }
    fig8_abort(s, "timed out");
}

static void fig8_on_leader(sim_t *s, node_t *n)
{
    if (s->f8_state == 2 && n != s->f8_a) {
        tr(s, "fig8: new leader B = n%llu is cut off and crashed at once; A %s", U(n->id),
           s->f8_a_alive ? "rejoins" : "restarts");
        isolate(s, n->slot, 1);
        n->kill_at = s->now;
        n->kill_why = "fig8: B, as it wins";
        n->hold_down = 1;
        s->f8_b = n;
        if (s->f8_a_alive) {
            isolate(s, s->f8_a->slot, 0);
            isolate(s, n->slot, 1);
        } else {
            s->f8_a->hold_down = 0;
            s->f8_a->restart_at = s->now + rng_range(&s->rng, 10, 100);
        }
        s->f8_state = 3;
        s->f8_at = s->now + 2000;
    } else if (s->f8_state == 3) {
        if (n != s->f8_a) {
            fig8_abort(s, "someone else than A won");
            return;
        }
        tr(s, "fig8: A = n%llu leads again; it dies when its commit index moves", U(n->id));
        s->f8_state = 4;
        s->f8_at = s->now + 2000;
    }
}

static void fig8_on_commit(sim_t *s, node_t *a)
{
    /* Cut off at once so nothing more replicates, but crashed a little later, so A can
     * still apply what it committed and answer its clients (a loss is then visible). */
    tr(s, "fig8: A's commit index moved: A is cut off (and soon crashed), B restarts");
    isolate(s, a->slot, 1);
    a->kill_at = s->now + rng_range(&s->rng, 20, 80);
    a->kill_why = "fig8: A, after its commit index moved";
    a->hold_down = 1;
    node_t *b = s->f8_b;
    isolate(s, b->slot, 0);
    b->hold_down = 0;
    b->restart_at = s->now + rng_range(&s->rng, 1, 30);
    s->f8_state = 5;
    s->f8_at = s->now + rng_range(&s->rng, 300, 800);
}

/* The lease invariant (thesis §6.4.1): while a leader's lease holds, no leader of a later
 * term can have been elected, since every voter that backed the lease refuses votes for an
 * election timeout. Checked whenever the core says its lease holds and its clock is
 * current (no ticks owed), and at every read it is asked for. Returns 1 if the run fails. */
static int lease_check(sim_t *s, node_t *n, const raft_status_t *st, const char *what)
{
    if (st->role != RAFT_LEADER || !st->lease_valid)
        return 0;
    s->st->lease_checks++;
    uint64_t id = 0, t = inv_leader_above(&s->inv, st->term, &id);
    if (!t)
        return 0;
    return inv_broken(s, "lease: n%llu %s in term %llu at commit %llu, but n%llu was elected "
                      "leader of term %llu", U(n->id), what, U(st->term), U(st->commit), U(id),
                      U(t));
}

/* Whether a majority of c's voters hold (index, term) on disk; the others named in miss. */
static int durable_on(sim_t *s, const raft_conf_t *c, uint64_t index, uint64_t term,
                      int *have, int *voters, char *miss, size_t misslen)
{
    size_t k = 0;
    *have = *voters = 0;
    miss[0] = 0;
    for (uint32_t i = 0; i < c->n; i++) {
        if (c->s[i].role != RAFT_VOTER)
            continue;
        (*voters)++;
        uint64_t id = c->s[i].id;
        if (id >= 1 && id <= (uint64_t)s->nslots &&
            disk_holds(&s->node[id - 1].disk, index, term))
            (*have)++;
        else if (k < misslen)
            k += (size_t)snprintf(miss + k, misslen - k, " n%llu", U(id));
    }
    return 2 * *have > *voters;
}

/* Commits at the source: an entry a leader commits is durable, on the simulated disks (in
 * the log, or under the snapshot), on a majority of the voters of the configuration it was
 * counted in: the leader's latest, or the one before if the step that committed also
 * appended a configuration (a promotion follows a commit at once). Checked on the highest
 * index committed; the prefix follows (log matching). Returns 1 if the run fails. */
static int durable_check(sim_t *s, node_t *l, uint64_t index, uint64_t term)
{
    uint64_t t;
    if (raft_log_term(l->r, index, &t) < 0)
        return 0;
    int have, voters;
    char miss[96];
    s->st->durable_checks++;
    if (durable_on(s, &l->seen_conf, index, t, &have, &voters, miss, sizeof(miss)) ||
        durable_on(s, raft_conf(l->r), index, t, &have, &voters, miss, sizeof(miss)))
        return 0;
    return inv_broken(s, "durability: n%llu committed %llu/t%llu in term %llu, but only %d of "
                      "its %d voters hold it on disk (not on:%s)", U(l->id), U(index), U(t),
                      U(term), have, voters, miss);
}

/* Restarts timed with an election: as n starts campaigning, another member (not a leader)
 * crashes and comes back at once, forgetting the leader it heard (issue 9, finding 1). For
 * the lease script, as many as n needs votes from. */
static void campaign_restart(sim_t *s, node_t *n, int scripted)
{
    int victims = 1;
    if (scripted) {
        const raft_conf_t *c = raft_conf(n->r);
        int voters = 0;
        for (uint32_t i = 0; i < c->n; i++)
            voters += c->s[i].role == RAFT_VOTER;
        victims = voters / 2;
    }
    for (int v = 0; v < victims; v++) {
    int cand[MAX_SLOTS], k = 0;
    for (int i = 0; i < s->nslots; i++) {
        node_t *m = &s->node[i];
        if (m == n || !m->up || !m->member || m->kill_at || m->hold_down)
            continue;
        raft_status_t st;
        raft_status(m->r, &st);
        if (st.role != RAFT_LEADER)
            cand[k++] = i;
    }
    if (!k)
        return;
    node_t *v = &s->node[cand[rng_below(&s->rng, (uint64_t)k)]];
    v->kill_at = s->now;
    v->kill_why = "nemesis, as another node campaigns";
    v->kill_restart = scripted ? rng_range(&s->rng, 1, 3) : rng_range(&s->rng, 1, 25);
    tr(s, "nemesis: n%llu campaigns: n%llu crashes and restarts %llu later", U(n->id),
       U(v->id), U(v->kill_restart));
    }
}

/* The per-step checks that read the core's status. */
static void node_check(sim_t *s, node_t *n)
{
    if (!n->up || !n->r || s->failed)
        return;
    raft_status_t st;
    raft_status(n->r, &st);
    if (st.term < n->last_term &&
        inv_broken(s, "n%llu: term went back from %llu to %llu", U(n->id), U(n->last_term),
                   U(st.term)))
        return;
    if (st.role != n->last_role || st.term != n->last_term)
        tr(s, "n%llu is %s in term %llu (leader %llu)", U(n->id), role_name(st.role),
           U(st.term), U(st.leader));
    if (s->stale_c == n->slot + 1 && st.term > s->stale_term && !s->stale_at && !s->healed) {
        /* at a random point of C's election timeout, not always right after it campaigned */
        s->stale_at = s->now + rng_range(&s->rng, 1, 2 * TICK * s->base.election_tick);
        s->script_until = s->stale_at + 600;
    }
    if ((st.role != n->last_role || st.term != n->last_term) &&
        (st.role == RAFT_PRECANDIDATE || st.role == RAFT_CANDIDATE) && !s->healed &&
        !s->f8_state && (s->camp_armed == n->slot + 1 ||
                         (s->camp_restart_pm && rng_chance(&s->rng, s->camp_restart_pm)))) {
        int scripted = s->camp_armed == n->slot + 1;
        s->camp_armed = 0;
        campaign_restart(s, n, scripted);
    }
    n->last_term = st.term;
    n->last_role = st.role;
    if (st.role == RAFT_LEADER) {
        if (inv_leader(&s->inv, st.term, n->id) < 0 && inv_failed(s))
            return;
        if (st.term > s->st->max_term)
            s->st->max_term = st.term;
        if (n->led_term != st.term) {
            n->led_term = st.term;
            s->st->elections++;
            leader_completeness(s, n, &st);
            if (s->f8_state)
                fig8_on_leader(s, n);
            else if (!s->healed && s->quick_kill_pm && !n->kill_at &&
                     rng_chance(&s->rng, s->quick_kill_pm)) {
                n->kill_at = s->now + rng_range(&s->rng, 1, 60);
                n->kill_why = "nemesis, soon after it won an election";
            }
        }
    }
    if (st.commit < n->last_commit &&
        inv_broken(s, "n%llu: commit index went back from %llu to %llu", U(n->id),
                   U(n->last_commit), U(st.commit)))
        return;
    if (st.applied > st.commit &&
        inv_broken(s, "n%llu: applied %llu is past commit %llu", U(n->id), U(st.applied),
                   U(st.commit)))
        return;
    for (uint64_t i = n->last_commit + 1; i <= st.commit; i++) {
        uint64_t t;
        if (raft_log_term(n->r, i, &t) < 0)
            continue; /* compacted: recorded when its leader committed it */
        if (inv_commit(&s->inv, (int)n->id, i, t, st.role == RAFT_LEADER ? st.term : 0) < 0 &&
            inv_failed(s))
            return;
    }
    if (st.commit > n->last_commit && st.role == RAFT_LEADER &&
        durable_check(s, n, st.commit, st.term))
        return;
    if (st.commit > s->max_commit)
        s->max_commit = st.commit;
    if (n->owed_ticks == 0 && lease_check(s, n, &st, "holds a read lease"))
        return;
    if (st.commit > n->last_commit && s->o->trace)
        tr(s, "n%llu commit %llu -> %llu", U(n->id), U(n->last_commit), U(st.commit));
    n->seen_conf = *raft_conf(n->r);
    if (st.commit > n->last_commit && st.role == RAFT_LEADER && s->f8_state == 4 &&
        n == s->f8_a)
        fig8_on_commit(s, n);
    n->last_commit = st.commit;
}

static void retire_removed(sim_t *s, const raft_conf_t *c, uint64_t index)
{
    if (index <= s->conf_index)
        return;
    s->conf_index = index;
    s->st->conf_changes++;
    for (int i = 0; i < s->nslots; i++) {
        node_t *m = &s->node[i];
        int in = raft_conf_role(c, m->id) != 0;
        /* The operator shuts down a server once its removal is committed (at the next
         * safe point: this may run inside that very server's apply loop). */
        m->retire = m->member && !in;
        m->member = in;
    }
}

/* Whether an applied entry is a liveness marker proposed after healing. */
static int is_marker(sim_t *s, const raft_entry_t *e, const smi_res_t *res)
{
    if (!s->fs)
        return res->client == MARKER_CLIENT && res->seq >= s->marker_first;
    for (int i = 0; i < s->nmarkers; i++)
        if (s->markers[i].index == e->index && s->markers[i].term == e->term)
            return 1;
    return 0;
}

static void apply_entry(sim_t *s, node_t *n, const raft_entry_t *e, uint64_t commit)
{
    uint64_t applied = s->ops->applied(n->sm);
    if (e->index != applied + 1) {
        fail(s, "n%llu: asked to apply index %llu after %llu", U(n->id), U(e->index),
             U(applied));
        return;
    }
    if (e->index > commit) {
        fail(s, "n%llu: asked to apply index %llu beyond its commit index %llu", U(n->id),
             U(e->index), U(commit));
        return;
    }
    smi_res_t res;
    s->ops->apply(n->sm, e->index, e->type == RAFT_ENTRY_NORMAL, e->data, e->len, &res);
    int client = res.client;
    uint32_t seq = res.seq;
    int ok = res.ok;
    if (inv_apply(&s->inv, (int)n->id, e->index, entry_hash(e), s->ops->hash(n->sm)) < 0 &&
        inv_failed(s))
        return;
    if (s->fs && e->index % s->check_every == 0) {
        check_now(s, n, "applied from the log");
        if (s->failed)
            return;
    }
    if (e->index > s->st->applied)
        s->st->applied = e->index;
    if (e->type == RAFT_ENTRY_CONF) {
        raft_conf_t c;
        if (raft_conf_decode(e->data, e->len, &c) < 0) {
            fail(s, "n%llu: configuration entry %llu does not decode", U(n->id), U(e->index));
            return;
        }
        n->applied_conf = c;
        retire_removed(s, &c, e->index);
    }
    if (s->healed && !s->live_ok && is_marker(s, e, &res)) {
        s->live_ok = 1;
        tr(s, "liveness: marker %llu committed and applied by n%llu, %llu after healing",
           U(s->fs ? e->index : seq), U(n->id), U(s->now - s->heal_at));
    }
    for (int i = 0; i < n->nprops; i++) {
        pend_prop_t *p = &n->props[i];
        if (p->index != e->index)
            continue;
        if (s->fs && p->term == e->term) {
            if (s->o->trace) {
                char d[200];
                s->ops->describe(e->data, e->len, d, sizeof(d));
                tr(s, "n%llu applied c%d#%u at %llu: %s -> %d", U(n->id), p->client, p->seq,
                   U(e->index), d, res.code);
            }
            respond(s, n, p->client, p->seq, RS_DONE, (uint64_t)(int64_t)res.code, 0);
        } else if (!s->fs && p->term == e->term && client == p->client && seq == p->seq) {
            tr(s, "n%llu applied c%d#%u at %llu: %s", U(n->id), client, seq, U(e->index),
               ok ? "done" : "cas failed");
            respond(s, n, p->client, p->seq, RS_DONE, (uint64_t)ok, 0);
        } else {
            tr(s, "n%llu: proposal c%d#%u at %llu/t%llu lost (entry there has term %llu)",
               U(n->id), p->client, p->seq, U(p->index), U(p->term), U(e->term));
            respond(s, n, p->client, p->seq, RS_LOST, 0, 0);
        }
        n->props[i] = n->props[--n->nprops];
        i--;
    }
}

/* Persist done: write the batch, send what needed durability, apply, advance. (breach
 * lying-fsync: some persists only pretend; their batches wait for the next honest one.) */
static void node_complete(sim_t *s, node_t *n)
{
    char err[256];
    if (s->lie_pm && n->nlies < MAX_LIES && rng_chance(&s->rng, s->lie_pm)) {
        n->lies[n->nlies++] = n->batch;
        memset(&n->batch, 0, sizeof(n->batch));
        tr(s, "n%llu: the persist reports success but nothing is durable yet (lying fsync)",
           U(n->id));
    } else {
        lies_flush(s, n, n->nlies);
        if (disk_write(&n->disk, &n->batch, SIZE_MAX, err, sizeof(err)) < 0) {
            fail(s, "n%llu disk: %s", U(n->id), err);
            return;
        }
        disk_batch_free(&n->batch);
    }
    n->busy = 0;
    raft_ready_t *rd = &n->rd;
    for (size_t i = 0; i < rd->n_msgs_after_persist; i++)
        send_raft(s, n, &rd->msgs_after_persist[i]);
    if (rd->snapshot) {
        if (sm_restore(s, n, n->disk.snap_data, n->disk.snap_len, rd->snapshot->index,
                       "installed snapshot") < 0)
            return;
        if (inv_restore(&s->inv, (int)n->id, s->ops->applied(n->sm), s->ops->hash(n->sm)) < 0 &&
            inv_failed(s))
            return;
        n->applied_conf = rd->snapshot->conf;
        s->st->snaps_sent++;
        tr(s, "n%llu installed snapshot %llu/t%llu", U(n->id), U(rd->snapshot->index),
           U(rd->snapshot->term));
        for (int i = 0; i < n->nprops; i++)
            if (n->props[i].index <= rd->snapshot->index) {
                respond(s, n, n->props[i].client, n->props[i].seq, RS_UNKNOWN, 0, 0);
                n->props[i--] = n->props[--n->nprops];
            }
    }
    raft_status_t st;
    raft_status(n->r, &st);
    for (size_t i = 0; i < rd->n_committed && !s->failed; i++)
        apply_entry(s, n, &rd->committed[i], st.commit);
    for (size_t i = 0; i < rd->n_reads; i++) {
        const raft_read_state_t *rs = &rd->reads[i];
        for (int j = 0; j < n->nreads; j++) {
            pend_read_t *p = &n->reads[j];
            if (p->id != rs->id || p->ready)
                continue;
            if (rs->err) {
                respond(s, n, p->client, p->seq, RS_NOTLEADER, 0, rd->leader);
                n->reads[j] = n->reads[--n->nreads];
            } else {
                p->ready = 1;
                p->index = rs->index;
                /* A read must see every entry committed before it started. */
                s->st->read_checks++;
                if (rs->index < p->start_commit &&
                    inv_broken(s, "read: n%llu's read for c%d#%u got read index %llu, below "
                               "commit index %llu reached before the read started", U(n->id),
                               p->client, p->seq, U(rs->index), U(p->start_commit)))
                    return;
            }
            break;
        }
    }
    if (s->failed)
        return;
    raft_advance(n->r, rd);
    memset(rd, 0, sizeof(*rd));
}

/* Takes a Ready: checks its entries, sends what may go first, starts the persist. */
static void node_begin_ready(sim_t *s, node_t *n)
{
    raft_ready_t *rd = &n->rd;
    raft_ready(n->r, rd);
    for (size_t i = 0; i < rd->n_entries; i++) {
        const raft_entry_t *e = &rd->entries[i];
        uint64_t prev = INV_UNKNOWN;
        if (i > 0)
            prev = rd->entries[i - 1].term;
        else if (raft_log_term(n->r, e->index - 1, &prev) < 0)
            prev = INV_UNKNOWN;
        if (inv_entry(&s->inv, (int)n->id, e->index, e->term, prev, entry_hash(e)) < 0 &&
            inv_failed(s))
            return;
    }
    for (size_t i = 0; i < rd->n_msgs; i++)
        send_raft(s, n, &rd->msgs[i]);
    if (disk_batch_from_ready(&n->batch, rd) < 0) {
        fail(s, "out of memory");
        return;
    }
    size_t recs = disk_batch_records(&n->batch);
    if (recs && s->o->trace) {
        char what[160] = "";
        size_t k = 0;
        if (rd->snap_chunk)
            k += (size_t)snprintf(what + k, sizeof(what) - k, " snapshot-chunk(%llu@%llu)",
                                  U(rd->snap_chunk->meta.index), U(rd->snap_chunk->offset));
        if (rd->snapshot && k < sizeof(what))
            k += (size_t)snprintf(what + k, sizeof(what) - k, " snapshot-install(%llu)",
                                  U(rd->snapshot->index));
        if (rd->n_entries && k < sizeof(what))
            k += (size_t)snprintf(what + k, sizeof(what) - k, " entries %llu..%llu/t%llu",
                                  U(rd->entries[0].index),
                                  U(rd->entries[rd->n_entries - 1].index),
                                  U(rd->entries[rd->n_entries - 1].term));
        if (rd->hs_changed && k < sizeof(what))
            snprintf(what + k, sizeof(what) - k, " hs(t%llu v%llu c%llu)", U(rd->hs.term),
                     U(rd->hs.vote), U(rd->hs.commit));
        tr(s, "n%llu persists%s; %zu msgs wait for it", U(n->id), what,
           rd->n_msgs_after_persist);
    }
    if (recs == 0) {
        node_complete(s, n);
        return;
    }
    n->busy = 1;
    if (s->w) {
        /* the node writes every group's batch at once (host_window) */
        n->pend_w = 1;
        return;
    }
    if (s->disk_fail_pm && rng_chance(&s->rng, s->disk_fail_pm)) {
        /* The write fails: the node must stop without acknowledging anything. */
        s->st->disk_faults++;
        node_crash(s, n, "disk write failed");
        n->restart_at = s->now + rng_range(&s->rng, 50, 1000);
        return;
    }
    uint64_t lat = rng_below(&s->rng, s->disk_lat_max + 1);
    if (lat == 0) {
        node_complete(s, n);
        return;
    }
    n->busy_until = s->now + lat;
    if (s->disk_crash_pm && rng_chance(&s->rng, s->disk_crash_pm))
        n->crash_at = s->now + rng_below(&s->rng, lat);
}

/* fs: proposes a client's command with this node's clock in its header. */
static void handle_fs_req(sim_t *s, node_t *n, pkt_t *p)
{
    if (s->o->trace) {
        char d[200];
        s->ops->describe(p->cmd, p->cmdlen, d, sizeof(d));
        tr(s, "n%llu <- c%d#%u %s", U(n->id), p->client, p->seq, d);
    }
    if (n->nprops == MAX_PENDING) {
        respond(s, n, p->client, p->seq, RS_RETRY, 0, 0);
        return;
    }
    s->ops->stamp(p->cmd, p->cmdlen, node_ms(s, n));
    raft_prop_info_t info = { 0 };
    int rc = c_propose(s, n, p->cmd, p->cmdlen, &info);
    if (rc == 0) {
        n->props[n->nprops++] = (pend_prop_t){ .client = p->client, .seq = p->seq,
                                               .index = info.index, .term = info.term };
        tr(s, "n%llu proposed c%d#%u at %llu/t%llu", U(n->id), p->client, p->seq,
           U(info.index), U(info.term));
    } else if (rc == -QERR_NOTLEADER)
        respond(s, n, p->client, p->seq, RS_NOTLEADER, 0, info.leader);
    else
        respond(s, n, p->client, p->seq, RS_RETRY, 0, 0);
}

static void handle_req(sim_t *s, node_t *n, pkt_t *p)
{
    if (s->fs) {
        handle_fs_req(s, n, p);
        return;
    }
    tr(s, "n%llu <- c%d#%u %s k%u", U(n->id), p->client, p->seq,
       p->op == OP_GET ? "get" : p->op == OP_PUT ? "put" : "cas", p->key);
    if (p->op == OP_GET) {
        if (n->nreads == MAX_PENDING) {
            respond(s, n, p->client, p->seq, RS_RETRY, 0, 0);
            return;
        }
        uint64_t id = ++n->next_read_id, hint = 0;
        raft_status_t st;
        raft_status(n->r, &st);
        if (lease_check(s, n, &st, "is asked for a read while its lease holds"))
            return;
        int rc = c_read_index(s, n, id, &hint);
        if (rc == -QERR_NOTLEADER)
            respond(s, n, p->client, p->seq, RS_NOTLEADER, 0, hint);
        else if (rc < 0)
            respond(s, n, p->client, p->seq, RS_RETRY, 0, 0);
        else
            n->reads[n->nreads++] = (pend_read_t){ .client = p->client, .seq = p->seq,
                                                   .key = p->key, .id = id,
                                                   .start_commit = s->max_commit };
        return;
    }
    if (n->nprops == MAX_PENDING) {
        respond(s, n, p->client, p->seq, RS_RETRY, 0, 0);
        return;
    }
    kv_cmd_t c = { .op = p->op == OP_PUT ? KV_PUT : KV_CAS, .client = (uint32_t)p->client,
                   .seq = p->seq, .key = p->key, .expect = p->expect, .value = p->value };
    uint8_t buf[KV_CMD_LEN];
    kv_encode(&c, buf);
    raft_prop_info_t info = { 0 };
    int rc = c_propose(s, n, buf, sizeof(buf), &info);
    if (rc == 0) {
        n->props[n->nprops++] = (pend_prop_t){ .client = p->client, .seq = p->seq,
                                               .index = info.index, .term = info.term };
        tr(s, "n%llu proposed c%d#%u at %llu/t%llu", U(n->id), p->client, p->seq,
           U(info.index), U(info.term));
    } else if (rc == -QERR_NOTLEADER)
        respond(s, n, p->client, p->seq, RS_NOTLEADER, 0, info.leader);
    else
        respond(s, n, p->client, p->seq, RS_RETRY, 0, 0);
}

/* Feeds one input to a node that is up and not persisting; consumes p. */
static void node_input(sim_t *s, node_t *n, pkt_t *p)
{
    if (p->kind == PK_RAFT) {
        if (s->o->trace) {
            char d[160];
            msg_desc(&p->m, d, sizeof(d));
            tr(s, "n%llu <- n%llu %s", U(n->id), U(p->m.from), d);
        }
        int rc = c_step(s, n, &p->m);
        if (rc < 0 && rc != -QERR_NOMEM)
            fail(s, "n%llu: raft_step refused a %s from n%llu: %s", U(n->id),
                 msg_name(p->m.type), U(p->m.from), qerr_str(rc));
    } else if (p->kind == PK_REQ)
        handle_req(s, n, p);
    pkt_free(p);
}

/* kv: gets (fs clients do not read). */
static void serve_reads(sim_t *s, node_t *n)
{
    const kv_t *kv = n->sm;
    for (int j = 0; j < n->nreads; j++) {
        pend_read_t *p = &n->reads[j];
        if (!p->ready || kv->applied < p->index)
            continue;
        tr(s, "n%llu serves c%d#%u get k%u = %llu (read index %llu, applied %llu)", U(n->id),
           p->client, p->seq, p->key, U(kv->val[p->key]), U(p->index), U(kv->applied));
        respond(s, n, p->client, p->seq, RS_DONE, kv->val[p->key], 0);
        n->reads[j--] = n->reads[--n->nreads];
    }
}

/* Takes a snapshot every snap_every applied entries: saves it (atomically), tells the core,
 * then drops the log entries it covers. Saving and dropping are separate steps: now and then
 * the node crashes after the save, having dropped only some of the entries (maybe none). */
static void maybe_compact(sim_t *s, node_t *n)
{
    uint64_t applied = s->ops->applied(n->sm);
    if (applied < n->disk.snap.index + s->snap_every)
        return;
    lies_flush(s, n, n->nlies);   /* the snapshot's fsync flushes the log's cache too */
    raft_snap_meta_t meta = { .index = applied, .conf = n->applied_conf };
    if (raft_log_term(n->r, meta.index, &meta.term) < 0)
        return;
    uint8_t *buf;
    size_t len;
    if (s->ops->snapshot(n->sm, &buf, &len) < 0) {
        fail(s, "n%llu: could not snapshot its state at %llu", U(n->id), U(meta.index));
        return;
    }
    if (disk_save_snapshot(&n->disk, &meta, buf, len) < 0) {
        free(buf);
        fail(s, "out of memory");
        return;
    }
    if (s->fs)
        state_check(s, n, meta.index, buf + s->ops->snap_hdr, len - s->ops->snap_hdr,
                    "its snapshot for compaction");
    free(buf);
    if (s->failed)
        return;
    uint64_t first = 0;
    int rc = raft_compact(n->r, meta.index, &first);
    if (rc < 0) {
        fail(s, "n%llu: raft_compact(%llu) after applying it: %s", U(n->id), U(meta.index),
             qerr_str(rc));
        return;
    }
    if (s->compact_crash_pm && rng_chance(&s->rng, s->compact_crash_pm)) {
        uint64_t from = n->disk.n ? n->disk.ents[0].index : first;
        uint64_t upto = from < first ? rng_range(&s->rng, from, first) : from;
        disk_drop_before(&n->disk, upto);
        tr(s, "n%llu snapshot at %llu/t%llu saved; crash while dropping the log before %llu "
           "(dropped before %llu)", U(n->id), U(meta.index), U(meta.term), U(first), U(upto));
        s->st->compact_crashes++;
        node_crash(s, n, "inside a compaction");
        n->restart_at = s->now + rng_range(&s->rng, 20, 400);
        return;
    }
    disk_drop_before(&n->disk, first);
    tr(s, "n%llu snapshot at %llu/t%llu, log now starts at %llu", U(n->id), U(meta.index),
       U(meta.term), U(first));
}

/* Runs a node until it has nothing to do, is persisting or is paused, as a real event loop
 * does: the ticks it owes first (raft_tick's contract: before stepping anything), then up to
 * batch_max queued messages, then one Ready for all of them. */
static void node_drive1(sim_t *s, node_t *n)
{
    int stepped = 0;
    while (!s->failed && n->up && !n->busy && !n->paused) {
        node_check(s, n);
        if (s->failed)
            return;
        if (n->owed_ticks) {
            n->owed_ticks--;
            c_tick(s, n);
            continue;
        }
        if (n->in_len && stepped < s->batch_max) {
            pkt_t *p = n->inbox[n->in_head];
            n->in_head = (n->in_head + 1) % n->in_cap;
            n->in_len--;
            node_input(s, n, p);
            stepped++;
            continue;
        }
        if (raft_has_ready(n->r)) {
            node_begin_ready(s, n);
            stepped = 0;
            continue;
        }
        if (n->in_len) {
            stepped = 0;
            continue;
        }
        serve_reads(s, n);
        maybe_compact(s, n);
        if (!n->up || !raft_has_ready(n->r))
            return;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* The simulated node in a world (--groups > 1): its groups' replicas on one slot share a
 * process, a clock and one write path (see world_t). Invariant: while the node persists
 * (w->busy[slot]) every group's replica on it that is up is busy, with the same busy_until
 * and crash_at; those with a batch in the write have pend_w set. */

static int world_failed(const world_t *w)
{
    for (int g = 0; g < w->G; g++)
        if (w->g[g]->failed)
            return 1;
    return 0;
}

/* Gives the node's other replicas that are up src's clock (tick period, next tick, skew)
 * and pause. */
static void host_sync(world_t *w, const node_t *src)
{
    for (int g = 0; g < w->G; g++) {
        node_t *n = &w->g[g]->node[src->slot];
        if (n == src || !n->up)
            continue;
        n->tick_q = src->tick_q;
        n->next_tick_q = src->next_tick_q;
        n->next_tick = src->next_tick;
        n->skew_ms = src->skew_ms;
        if (src->paused && !n->paused) {
            n->paused = 1;
            n->paused_until = src->paused_until;
        }
    }
}

/* The node dies: of the shared write in progress (every group's pending batch, in group
 * order, as one log) a random prefix reaches the disk, so a tear may keep some groups'
 * records and lose others'; then every group's replica on it crashes. Nothing restarts it
 * (restart_at 0) unless the caller says when. */
static void host_crash(world_t *w, int slot, const char *why)
{
    size_t total = 0;
    for (int g = 0; g < w->G; g++) {
        node_t *n = &w->g[g]->node[slot];
        if (n->up && n->pend_w)
            total += disk_batch_records(&n->batch);
    }
    size_t k = total ? (size_t)rng_below(&w->rng, (uint64_t)total + 1) : 0;
    if (total)
        tr(w->g[0], "n%d CRASH during the node's shared write: %zu of its %zu records "
           "reached the log", slot + 1, k, total);
    for (int g = 0; g < w->G; g++) {
        sim_t *s = w->g[g];
        node_t *n = &s->node[slot];
        if (!n->up)
            continue;
        if (n->pend_w) {
            size_t recs = disk_batch_records(&n->batch), kk = k < recs ? k : recs;
            char err[256];
            k -= kk;
            if (disk_write(&n->disk, &n->batch, kk, err, sizeof(err)) < 0)
                fail(s, "n%llu disk (torn write of the shared log): %s", U(n->id), err);
            if (kk < recs)
                s->st->torn++;
            tr(s, "n%llu: %zu of its %zu records reached the shared log", U(n->id), kk, recs);
            disk_batch_free(&n->batch);
            n->pend_w = 0;
        }
        n->busy = 0;
        node_crash1(s, n, why);
        n->restart_at = 0;
    }
    w->busy[slot] = 0;
}

/* Boots every replica on the node that is down and not retired. Replicas booted next to
 * ones still up (a group adding the node back) take their clock, write and pause. */
static void host_boot(world_t *w, int slot)
{
    node_t *ref = NULL;
    for (int g = 0; g < w->G && !ref; g++)
        if (w->g[g]->node[slot].up)
            ref = &w->g[g]->node[slot];
    for (int g = 0; g < w->G; g++) {
        sim_t *s = w->g[g];
        node_t *n = &s->node[slot];
        if (n->up || n->retired)
            continue;
        node_boot1(s, n);
        if (!n->up)
            continue;
        if (!ref) {
            ref = n;
            continue;
        }
        n->tick_q = ref->tick_q;
        n->next_tick_q = ref->next_tick_q;
        n->next_tick = ref->next_tick;
        n->skew_ms = ref->skew_ms;
        if (ref->paused) {
            n->paused = 1;
            n->paused_until = ref->paused_until;
        }
        if (w->busy[slot]) {
            n->busy = 1;
            n->busy_until = ref->busy_until;
            n->crash_at = ref->crash_at;
        }
    }
}

static void host_drive(world_t *w, int slot);

/* The shared write is done: every group's batch is durable; each group then sends, applies
 * and advances, and the node runs on. */
static void host_complete(world_t *w, int slot)
{
    w->busy[slot] = 0;
    for (int g = 0; g < w->G; g++) {
        sim_t *s = w->g[g];
        node_t *n = &s->node[slot];
        if (!n->up || !n->busy)
            continue;
        if (n->pend_w) {
            n->pend_w = 0;
            node_complete(s, n);
        } else
            n->busy = 0;
    }
    host_drive(w, slot);
}

/* Starts the node's shared write of its groups' pending batches: one latency, one fsync,
 * one chance of failing (the node stops) or of a power loss before it ends. The disk's
 * figures are group 0's. */
static void host_window(world_t *w, int slot)
{
    sim_t *s0 = w->g[0];
    size_t recs = 0;
    int groups = 0;
    for (int g = 0; g < w->G; g++) {
        node_t *n = &w->g[g]->node[slot];
        if (n->up && n->pend_w) {
            recs += disk_batch_records(&n->batch);
            groups++;
        }
        if (n->up) {
            n->busy = 1;
            n->crash_at = 0;
        }
    }
    w->busy[slot] = 1;
    tr(s0, "n%d writes %zu records of %d groups to its log, one fsync", slot + 1, recs, groups);
    if (s0->disk_fail_pm && rng_chance(&w->rng, s0->disk_fail_pm)) {
        s0->st->disk_faults++;
        host_crash(w, slot, "disk write failed");
        uint64_t at = s0->now + rng_range(&w->rng, 50, 1000);
        for (int g = 0; g < w->G; g++)
            if (!w->g[g]->node[slot].retired)
                w->g[g]->node[slot].restart_at = at;
        return;
    }
    uint64_t lat = rng_below(&w->rng, s0->disk_lat_max + 1);
    if (lat == 0) {
        host_complete(w, slot);
        return;
    }
    uint64_t crash_at = 0;
    if (s0->disk_crash_pm && rng_chance(&w->rng, s0->disk_crash_pm))
        crash_at = s0->now + rng_below(&w->rng, lat);
    for (int g = 0; g < w->G; g++) {
        node_t *n = &w->g[g]->node[slot];
        if (n->up) {
            n->busy_until = s0->now + lat;
            n->crash_at = crash_at;
        }
    }
}

/* Runs the node as cluster/mraft.c's loop does: each group's replica steps what it has
 * (node_drive1) up to its Ready, whose writes wait; then one shared write for all of them.
 * Nothing runs while the node persists or is paused. Re-entered (a group's step boots or
 * crashes this very node) it only asks the running call to go round again. */
static void host_drive(world_t *w, int slot)
{
    if (w->driving[slot]) {
        w->again[slot] = 1;
        return;
    }
    w->driving[slot] = 1;
    do {
        w->again[slot] = 0;
        if (world_failed(w) || w->busy[slot])
            break;
        int paused = 0, pending = 0;
        for (int g = 0; g < w->G; g++)
            paused |= w->g[g]->node[slot].up && w->g[g]->node[slot].paused;
        if (paused)
            break;
        for (int g = 0; g < w->G && !world_failed(w); g++) {
            node_t *n = &w->g[g]->node[slot];
            if (n->up && !n->busy)
                node_drive1(w->g[g], n);
        }
        if (world_failed(w))
            break;
        for (int g = 0; g < w->G; g++)
            pending |= w->g[g]->node[slot].up && w->g[g]->node[slot].pend_w;
        if (pending && !w->busy[slot])
            host_window(w, slot);
    } while (w->again[slot]);
    w->driving[slot] = 0;
}

static void node_boot(sim_t *s, node_t *n)
{
    if (s->w)
        host_boot(s->w, n->slot);
    else
        node_boot1(s, n);
}

static void node_crash(sim_t *s, node_t *n, const char *why)
{
    if (!s->w)
        node_crash1(s, n, why);
    else if (n->up)
        host_crash(s->w, n->slot, why);
}

static void node_drive(sim_t *s, node_t *n)
{
    if (s->w)
        host_drive(s->w, n->slot);
    else
        node_drive1(s, n);
}

/* ---------------------------------------------------------------------------------------- */
/* Clients */

static lin_op_t *hist_add(sim_t *s)
{
    if (s->nhist == s->caphist) {
        size_t nc = s->caphist ? s->caphist * 2 : 256;
        lin_op_t *h = realloc(s->hist, nc * sizeof(*h));
        if (!h)
            return NULL;
        s->hist = h;
        s->caphist = nc;
    }
    lin_op_t *op = &s->hist[s->nhist++];
    memset(op, 0, sizeof(*op));
    return op;
}

static void client_send(sim_t *s, int ci)
{
    client_t *c = &s->client[ci];
    pkt_t *p = calloc(1, sizeof(*p));
    if (!p) {
        fail(s, "out of memory");
        return;
    }
    p->kind = PK_REQ;
    p->client = ci;
    p->seq = c->seq;
    p->op = c->op;
    p->key = c->key;
    p->expect = c->expect;
    p->value = c->value;
    if (c->cmd) {
        if (!(p->cmd = malloc(c->cmdlen ? c->cmdlen : 1))) {
            free(p);
            fail(s, "out of memory");
            return;
        }
        memcpy(p->cmd, c->cmd, c->cmdlen);
        p->cmdlen = c->cmdlen;
    }
    c->resend_at = 0;
    c->attempt_until = s->now + s->client_timeout;
    if (xsend(s, CLIENT_EP(ci), c->target, p, s->fs) < 0)
        fail(s, "out of memory");
}

static void client_finish(sim_t *s, int ci, int known, uint64_t result)
{
    client_t *c = &s->client[ci];
    if (s->fs) {
        if (!known)
            s->st->unknown++;
        tr(s, "client c%d#%u: %s %lld", ci, c->seq, known ? "verdict" : "outcome unknown",
           known ? (long long)(int64_t)result : 0LL);
        free(c->cmd);
        c->cmd = NULL;
        c->active = 0;
        c->resend_at = 0;
        c->next_at = s->now + rng_range(&s->rng, 1, 20);
        return;
    }
    lin_op_t *op = &s->hist[c->h];
    op->known = known;
    if (known) {
        op->ret = ++s->stamp;
        op->result = result;
        if (op->kind == LIN_GET)
            c->seen[op->key] = result;
        else if (op->kind == LIN_PUT || result)
            c->seen[op->key] = op->value;
    } else
        s->st->unknown++;
    if (s->o->trace) {
        char b[160];
        lin_format(op, b, sizeof(b));
        tr(s, "client %s", b);
    }
    c->active = 0;
    c->resend_at = 0;
    c->next_at = s->now + rng_range(&s->rng, 1, 20);
}

/* fs: the next command of the run's generator. */
static void client_start_fs(sim_t *s, int ci)
{
    client_t *c = &s->client[ci];
    if (s->ops->next_cmd(s->run, &s->rng, &c->cmd, &c->cmdlen) < 0) {
        fail(s, "out of memory");
        return;
    }
    c->active = 1;
    c->seq++;
    s->st->ops++;
    c->deadline = s->now + s->client_giveup;
    client_send(s, ci);
}

static void client_start(sim_t *s, int ci)
{
    if (s->fs) {
        client_start_fs(s, ci);
        return;
    }
    client_t *c = &s->client[ci];
    lin_op_t *op = hist_add(s);
    if (!op) {
        fail(s, "out of memory");
        return;
    }
    c->active = 1;
    c->h = s->nhist - 1;
    c->seq++;
    c->key = (uint32_t)rng_below(&s->rng, s->nkeys);
    unsigned k = (unsigned)rng_below(&s->rng, 100);
    c->op = k < 40 ? OP_PUT : k < 75 ? OP_GET : OP_CAS;
    if (s->now < s->quiet_until)
        c->op = OP_GET;   /* a quiet period with reads only: the logs stay level */
    c->value = ((uint64_t)(ci + 1) << 32) | c->seq;
    c->expect = 0;
    if (c->op == OP_CAS) {
        if (rng_chance(&s->rng, 700))
            c->expect = c->seen[c->key];
        else if (rng_chance(&s->rng, 500))
            c->expect = s->client[rng_below(&s->rng, (uint64_t)s->nclients)].seen[c->key];
    }
    op->client = (uint32_t)ci;
    op->key = c->key;
    op->kind = c->op == OP_PUT ? LIN_PUT : c->op == OP_GET ? LIN_GET : LIN_CAS;
    op->value = c->value;
    op->expect = c->expect;
    op->call = ++s->stamp;
    s->st->ops++;
    c->deadline = s->now + s->client_giveup;
    client_send(s, ci);
}

/* Whether clients send again a command that may already have taken effect. kv clients do:
 * the store applies each (client, seq) once. The fs state machine does not deduplicate (a
 * command applied twice acts twice), so in half the fs seeds (all with --fs-resend) clients
 * do, and apply must survive the repeats; in the other half they send again only what
 * certainly did not take effect. */
static int resends_unknown(const sim_t *s)
{
    return !s->fs || s->fs_resend;
}

static void client_recv(sim_t *s, int ci, const pkt_t *p)
{
    client_t *c = &s->client[ci];
    if (!c->active || p->seq != c->seq || p->kind != PK_RESP)
        return; /* a late or duplicated answer */
    switch (p->status) {
    case RS_DONE:
        client_finish(s, ci, 1, p->result);
        break;
    case RS_UNKNOWN:
        if (!resends_unknown(s)) {
            tr(s, "client c%d#%u: outcome unknown (covered by a snapshot), gives up", ci,
               c->seq);
            client_finish(s, ci, 0, 0);
            break;
        }
        /* fall through */
    case RS_LOST:
        /* Retrying is safe: the store applies a (client, seq) at most once. */
        c->target = (int)rng_below(&s->rng, (uint64_t)s->nslots);
        c->resend_at = s->now + rng_range(&s->rng, 1, 20);
        break;
    case RS_NOTLEADER:
        if (p->hint >= 1 && p->hint <= (uint64_t)s->nslots && p->hint - 1 != (uint64_t)c->target)
            c->target = (int)p->hint - 1;
        else
            c->target = (int)rng_below(&s->rng, (uint64_t)s->nslots);
        c->resend_at = s->now + rng_range(&s->rng, 1, 20);
        break;
    default:
        c->resend_at = s->now + rng_range(&s->rng, 10, 60);
        break;
    }
}

static void clients_run(sim_t *s)
{
    for (int i = 0; i < s->nclients && !s->failed; i++) {
        client_t *c = &s->client[i];
        if (c->active && c->deadline <= s->now) {
            tr(s, "client c%d#%u gives up", i, c->seq);
            client_finish(s, i, 0, 0);
        } else if (c->active && c->attempt_until <= s->now && !resends_unknown(s)) {
            tr(s, "client c%d#%u: no answer, gives up (outcome unknown)", i, c->seq);
            client_finish(s, i, 0, 0);
        } else if (c->active && c->attempt_until <= s->now) {
            c->target = (int)rng_below(&s->rng, (uint64_t)s->nslots);
            tr(s, "client c%d#%u: no answer, retries at n%d", i, c->seq, c->target + 1);
            client_send(s, i);
        } else if (c->active && c->resend_at && c->resend_at <= s->now)
            client_send(s, i);
        else if (!c->active && !s->stop && c->next_at <= s->now &&
                 (s->now >= s->quiet_until || (s->quiet_reads && !s->fs)))
            client_start(s, i);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Nemesis */

static node_t *find_leader(sim_t *s)
{
    node_t *best = NULL;
    uint64_t best_term = 0;
    for (int i = 0; i < s->nslots; i++) {
        node_t *n = &s->node[i];
        if (!n->up || !n->r)
            continue;
        raft_status_t st;
        raft_status(n->r, &st);
        if (st.role == RAFT_LEADER && st.term >= best_term) {
            best = n;
            best_term = st.term;
        }
    }
    return best;
}

static node_t *random_up(sim_t *s)
{
    int cand[MAX_SLOTS], k = 0;
    for (int i = 0; i < s->nslots; i++)
        if (s->node[i].up && s->node[i].member)
            cand[k++] = i;
    return k ? &s->node[cand[rng_below(&s->rng, (uint64_t)k)]] : NULL;
}

static void nemesis_partition(sim_t *s)
{
    int side[MAX_SLOTS];
    node_t *l = find_leader(s);
    unsigned kind = (unsigned)rng_below(&s->rng, 4);
    for (int i = 0; i < s->nslots; i++)
        side[i] = (int)rng_below(&s->rng, 2);
    if (kind == 0 && l) {
        /* Isolate the leader: it keeps taking proposals it can never commit. */
        for (int i = 0; i < s->nslots; i++)
            side[i] = &s->node[i] == l;
    }
    net_heal(s->net);
    if (kind == 3) {
        /* A bridge: two halves that cannot talk, one node (the bridge) in both. */
        int bridge = (int)rng_below(&s->rng, (uint64_t)s->nslots);
        for (int a = 0; a < s->nslots; a++)
            for (int b = 0; b < s->nslots; b++)
                if (a != bridge && b != bridge && side[a] != side[b])
                    net_cut(s->net, a, b, 1);
        tr(s, "nemesis: bridge partition through n%d", bridge + 1);
        return;
    }
    for (int a = 0; a < s->nslots; a++)
        for (int b = 0; b < s->nslots; b++)
            if (side[a] != side[b])
                net_cut(s->net, a, b, 1);
    if (s->o->trace) {
        char b[64] = "";
        size_t k = 0;
        for (int i = 0; i < s->nslots; i++)
            k += (size_t)snprintf(b + k, sizeof(b) - k, "%s%d", side[i] ? "|" : " ", i + 1);
        tr(s, "nemesis: partition (%s) [|n = other side]:%s",
           kind == 0 && l ? "isolate leader" : "random", b);
    }
}

static void nemesis_asym(sim_t *s)
{
    node_t *l = find_leader(s);
    int x = l && rng_chance(&s->rng, 600) ? l->slot : (int)rng_below(&s->rng, (uint64_t)s->nslots);
    int out = (int)rng_below(&s->rng, 2);
    net_heal(s->net);
    for (int i = 0; i < s->nslots; i++) {
        if (i == x)
            continue;
        if (out)
            net_cut(s->net, x, i, 1);
        else
            net_cut(s->net, i, x, 1);
    }
    tr(s, "nemesis: n%d can %s", x + 1, out ? "hear but not speak" : "speak but not hear");
}

static void nemesis_net_quality(sim_t *s)
{
    net_faults_t *f = &s->net->faults;
    unsigned lvl = (unsigned)rng_below(&s->rng, 4);
    f->drop_permille = lvl == 0 ? 0 : (unsigned)rng_below(&s->rng, 60 * lvl);
    f->dup_permille = (unsigned)rng_below(&s->rng, 40);
    f->delay_min = 1;
    f->delay_max = rng_range(&s->rng, 2, lvl >= 2 ? 40 : 15);
    f->slow_permille = lvl == 3 ? 30 : 5;
    f->slow_max = rng_range(&s->rng, 100, 400);
    tr(s, "nemesis: network drops %u%%o dups %u%%o delay 1..%llu (slow %u%%o up to %llu)",
       f->drop_permille, f->dup_permille, U(f->delay_max), f->slow_permille, U(f->slow_max));
}

static void nemesis_crash(sim_t *s)
{
    node_t *l = find_leader(s);
    node_t *n = l && rng_chance(&s->rng, s->leader_crash_pm) ? l : random_up(s);
    if (!n)
        return;
    node_crash(s, n, n == l ? "nemesis, the leader" : "nemesis");
    /* Some stay down until the faults heal. */
    n->restart_at = rng_chance(&s->rng, 150) ? 0 : s->now + rng_range(&s->rng, 20, 1200);
}

static void nemesis_restart(sim_t *s)
{
    for (int i = 0; i < s->nslots; i++) {
        node_t *n = &s->node[i];
        if (!n->up && !n->retired) {
            node_boot(s, n);
            s->st->restarts++;
            node_drive(s, n);
        }
    }
}

/* A membership change through the leader: adds (or promotes) a server, or removes one.
 * force: slot + 1 of a server to add back now (breach wipe-readd), 0 for a random change. */
static void nemesis_membership(sim_t *s, int force)
{
    node_t *l = find_leader(s);
    if (l && (l->busy || l->paused) && s->w && !force) {
        /* a node of several groups is busy most of the time: try again soon */
        s->retry_at = s->now + rng_range(&s->rng, 1, 20);
        s->retry_kind = 1;
        return;
    }
    if (!l || l->busy || l->paused)
        return;
    const raft_conf_t *c = raft_conf(l->r);
    int voters = 0;
    for (uint32_t i = 0; i < c->n; i++)
        voters += c->s[i].role == RAFT_VOTER;
    int lo = s->nfound - 1 < 2 ? 2 : s->nfound - 1;
    int add = force || voters <= lo || (voters < s->nfound + 1 && rng_chance(&s->rng, 500));
    raft_prop_info_t info;
    int rc;
    if (add) {
        int cand[MAX_SLOTS], k = 0;
        for (int i = 0; i < s->nslots; i++) {
            uint32_t role = raft_conf_role(c, s->node[i].id);
            if (role != RAFT_VOTER && role != RAFT_STAGING && (!force || i == force - 1))
                cand[k++] = i;
        }
        if (!k)
            return;
        node_t *t = &s->node[cand[rng_below(&s->rng, (uint64_t)k)]];
        uint32_t role = raft_conf_role(c, t->id);
        uint32_t op = role == RAFT_LEARNER ? RAFT_CONF_PROMOTE
                      : rng_chance(&s->rng, 250) ? RAFT_CONF_ADD_LEARNER : RAFT_CONF_ADD_VOTER;
        int wiped = 0;
        if (t->retired) {
            t->retired = 0;
            t->retire = 0;
            if (!t->up && (s->o->breach & SIM_BREACH_WIPE_READD)) {
                wiped = 1;
                /* breach wipe-readd: the operator wiped the removed server's disk before
                 * adding it back under the same id */
                raft_conf_t empty = { 0 };
                int lax = t->disk.lax, hs_first = t->disk.hs_first;
                disk_free(&t->disk);
                disk_init(&t->disk, &empty);
                t->disk.lax = lax;
                t->disk.hs_first = hs_first;
                tr(s, "nemesis: n%llu's disk is wiped before it is added back", U(t->id));
            }
            if (!t->up) {
                node_boot(s, t);
                s->st->restarts++;
                node_drive(s, t);
                if (s->failed)
                    return;
            }
        }
        rc = c_propose_conf(s, l, op, t->id, &info);
        tr(s, "nemesis: n%llu proposes %s n%llu: %s", U(l->id),
           op == RAFT_CONF_PROMOTE ? "promote" : op == RAFT_CONF_ADD_LEARNER ? "add learner"
                                                                            : "add voter",
           U(t->id), rc ? qerr_str(rc) : "ok");
        if (wiped) {
            /* answers of its previous life, delayed in the network, arrive now */
            for (int i = 0; i < OLD_ACKS; i++) {
                pkt_t *p = t->old_acks[i];
                t->old_acks[i] = NULL;
                if (!p)
                    continue;
                s->st->late_msgs++;
                if (s->o->trace) {
                    char d[160];
                    msg_desc(&p->m, d, sizeof(d));
                    tr(s, "nemesis: late answer of n%llu's previous life: %s", U(t->id), d);
                }
                if (xsend(s, t->slot, (int)p->m.to - 1, p, 0) < 0)
                    fail(s, "out of memory");
            }
        }
    } else {
        int cand[MAX_SLOTS], k = 0;
        for (uint32_t i = 0; i < c->n; i++)
            cand[k++] = (int)c->s[i].id - 1;
        if (!k)
            return;
        node_t *t = &s->node[cand[rng_below(&s->rng, (uint64_t)k)]];
        rc = c_propose_conf(s, l, RAFT_CONF_REMOVE, t->id, &info);
        tr(s, "nemesis: n%llu proposes remove n%llu: %s", U(l->id), U(t->id),
           rc ? qerr_str(rc) : "ok");
    }
    node_drive(s, l);
}

static void nemesis_transfer(sim_t *s)
{
    node_t *l = find_leader(s);
    if (l && (l->busy || l->paused) && s->w) {
        s->retry_at = s->now + rng_range(&s->rng, 1, 20);
        s->retry_kind = 2;
        return;
    }
    if (!l || l->busy || l->paused)
        return;
    const raft_conf_t *c = raft_conf(l->r);
    uint64_t ids[RAFT_MAX_SERVERS];
    int k = 0;
    for (uint32_t i = 0; i < c->n; i++)
        if (c->s[i].role == RAFT_VOTER && c->s[i].id != l->id)
            ids[k++] = c->s[i].id;
    if (!k)
        return;
    uint64_t t = ids[rng_below(&s->rng, (uint64_t)k)];
    int rc = c_transfer(s, l, t);
    tr(s, "nemesis: n%llu transfers leadership to n%llu: %s", U(l->id), U(t),
       rc ? qerr_str(rc) : "ok");
    node_drive(s, l);
}

/* Cuts one direction of one link, or both, most often one of the leader's; other cuts stay. */
static void nemesis_link(sim_t *s)
{
    node_t *l = find_leader(s);
    int a = l && rng_chance(&s->rng, 500) ? l->slot : (int)rng_below(&s->rng, (uint64_t)s->nslots);
    int b = (a + 1 + (int)rng_below(&s->rng, (uint64_t)s->nslots - 1)) % s->nslots;
    unsigned how = (unsigned)rng_below(&s->rng, 3);
    if (how != 1)
        net_cut(s->net, a, b, 1);
    if (how != 0)
        net_cut(s->net, b, a, 1);
    tr(s, "nemesis: link n%d %s n%d cut", a + 1, how == 0 ? "->" : how == 1 ? "<-" : "<->",
       b + 1);
}

/* A process stops for a while (a stall, SIGSTOP): it takes no input and finishes nothing,
 * while its clock runs on, so it owes ticks when it resumes. Most often the leader. */
static void nemesis_pause(sim_t *s)
{
    node_t *l = find_leader(s);
    node_t *n = l && rng_chance(&s->rng, 500) ? l : random_up(s);
    if (!n || n->paused)
        return;
    n->paused = 1;
    n->paused_until = s->now + rng_range(&s->rng, 20, 600);
    s->st->pauses++;
    if (s->w)
        host_sync(s->w, n);
    tr(s, "nemesis: n%llu pauses until %llu", U(n->id), U(n->paused_until));
}

/* A node's clock changes rate, within the lease's drift bound. */
static void nemesis_drift(sim_t *s)
{
    node_t *n = random_up(s);
    if (!n)
        return;
    n->tick_q = rng_range(&s->rng, (TICK - 1) * TICK_Q, (TICK + 1) * TICK_Q);
    tr(s, "nemesis: n%llu ticks every %llu/%d", U(n->id), U(n->tick_q), TICK_Q);
    if (s->w)
        host_sync(s->w, n);
}

/* A rolling restart: each member in turn crashes and comes back soon after. */
static void nemesis_rolling(sim_t *s)
{
    uint64_t at = s->now + rng_range(&s->rng, 1, 100);
    int off = (int)rng_below(&s->rng, (uint64_t)s->nslots);
    for (int j = 0; j < s->nslots; j++) {
        node_t *n = &s->node[(off + j) % s->nslots];
        if (!n->up || !n->member || n->kill_at || n->hold_down)
            continue;
        n->kill_at = at;
        n->kill_why = "nemesis, a rolling restart";
        n->kill_restart = rng_range(&s->rng, 1, 150);
        at += n->kill_restart + rng_range(&s->rng, 20, 400);
    }
    tr(s, "nemesis: rolling restart until about %llu", U(at));
}

/* Two schedules against read leases, whose parts random faults rarely line up. First the
 * clients only read, so the logs level out. Then (lease_script_cut) the leader L stops
 * reaching an up-to-date follower, and:
 *   1. (issue 9's finding 1) L stops reaching F (one link cut, one way or both); when F's
 *      election timer fires, other followers restart at once, forgetting that they hear L.
 *      A core that lets them vote for F at once deposes L while its lease stands.
 *   2. (tests/sim/FINDINGS.md, finding 5) L and C stop reaching each other, so C campaigns
 *      (in higher terms without pre-vote); then a copy of the last message another follower
 *      F sent C arrives late, and C's answer carries C's term to F (and sometimes F's
 *      answers to L are lost from then on). A core where F forgets that it hears L when it
 *      adopts that term votes for C while L's lease, which F backs, stands.
 * Both end in the lease check failing. Other faults wait meanwhile. */
static void nemesis_lease_script(sim_t *s)
{
    s->quiet_until = s->now + rng_range(&s->rng, 800, 2500);
    s->quiet_reads = 1;
    s->script_kind = (int)rng_range(&s->rng, 1, 2);
    s->script_at = s->now + rng_range(&s->rng, 200, 500);
    s->script_until = s->script_at + 600;
    tr(s, "nemesis: lease script %d: reads only until %llu; a link is cut at %llu",
       s->script_kind, U(s->quiet_until), U(s->script_at));
}

static void lease_script_cut(sim_t *s)
{
    s->script_at = 0;
    node_t *l = find_leader(s);
    if (!l)
        return;
    raft_status_t ls;
    raft_status(l->r, &ls);
    int cand[MAX_SLOTS], k = 0;
    for (int i = 0; i < s->nslots; i++) {
        node_t *f = &s->node[i];
        if (f == l || !f->up || !f->member || f->busy)
            continue;
        raft_status_t fs;
        raft_status(f->r, &fs);
        if (fs.last_index == ls.last_index && fs.term == ls.term)
            cand[k++] = i;
    }
    if (s->script_kind == 2) {
        if (k < 2)
            return;
        int a = (int)rng_below(&s->rng, (uint64_t)k);
        int b = (a + 1 + (int)rng_below(&s->rng, (uint64_t)k - 1)) % k;
        int f = cand[a], c = cand[b];
        net_heal(s->net);
        net_cut(s->net, l->slot, c, 1);
        net_cut(s->net, c, l->slot, 1);
        s->stale_f = f + 1;
        s->stale_c = c + 1;
        s->stale_term = ls.term;
        tr(s, "nemesis: lease script 2: link n%llu <-> n%d cut; once n%d is past term %llu, "
           "n%d's last message to it arrives late", U(l->id), c + 1, c + 1, U(ls.term), f + 1);
        return;
    }
    if (!k)
        return;
    int f = cand[rng_below(&s->rng, (uint64_t)k)];
    int both = (int)rng_below(&s->rng, 2);
    net_heal(s->net);
    net_cut(s->net, l->slot, f, 1);
    if (both)
        net_cut(s->net, f, l->slot, 1);
    s->camp_armed = f + 1;
    tr(s, "nemesis: lease script 1: link n%llu %s n%d cut; n%d's next campaign restarts "
       "others", U(l->id), both ? "<->" : "->", f + 1, f + 1);
}

/* Lease script 2, once C is past L's term: the late copy arrives at C. */
static void stale_term_deliver(sim_t *s)
{
    node_t *f = &s->node[s->stale_f - 1], *c = &s->node[s->stale_c - 1];
    s->stale_f = s->stale_c = 0;
    s->stale_at = 0;
    pkt_t *p = s->last_sent[f->slot][c->slot];
    if (!p || !(p = pkt_clone(p)))
        return;
    s->st->late_msgs++;
    if (s->o->trace) {
        char d[160];
        msg_desc(&p->m, d, sizeof(d));
        tr(s, "nemesis: lease script 2: late delivery n%llu -> n%llu %s", U(f->id), U(c->id), d);
    }
    if (xsend(s, f->slot, c->slot, p, 0) < 0) {
        fail(s, "out of memory");
        return;
    }
    node_t *l = find_leader(s);
    if (l && l != f && rng_chance(&s->rng, 500)) {
        net_cut(s->net, f->slot, l->slot, 1);
        tr(s, "nemesis: lease script 2: n%llu's answers to n%llu are lost from now on",
           U(f->id), U(l->id));
    }
}

/* Clients stop, or only read, for a while; sometimes the members restart meanwhile. */
static void nemesis_quiet(sim_t *s)
{
    s->quiet_until = s->now + rng_range(&s->rng, 300, 3000);
    s->quiet_reads = (int)rng_below(&s->rng, 2);
    tr(s, "nemesis: quiet until %llu (%s)", U(s->quiet_until),
       s->quiet_reads ? "reads only" : "no client load");
    if (rng_chance(&s->rng, 500))
        nemesis_rolling(s);
}

/* Messages kept back when they were sent are delivered now, often many terms late. */
static void nemesis_late(sim_t *s)
{
    int k = (int)rng_range(&s->rng, 1, 6);
    for (int i = 0; i < k && s->nstash; i++) {
        int j = (int)rng_below(&s->rng, (uint64_t)s->nstash);
        pkt_t *p = s->stash[j];
        int from = s->stash_from[j], to = s->stash_to[j];
        s->nstash--;
        s->stash[j] = s->stash[s->nstash];
        s->stash_from[j] = s->stash_from[s->nstash];
        s->stash_to[j] = s->stash_to[s->nstash];
        s->stash[s->nstash] = NULL;
        s->st->late_msgs++;
        if (s->o->trace) {
            char d[160];
            msg_desc(&p->m, d, sizeof(d));
            tr(s, "nemesis: late delivery n%d -> n%d %s", from + 1, to + 1, d);
        }
        if (xsend(s, from, to, p, 0) < 0)
            fail(s, "out of memory");
    }
}

static int script_running(const sim_t *s)
{
    return s->f8_state ||
           ((s->camp_armed || s->script_at || s->stale_c) && s->now < s->script_until);
}

static void nemesis_body(sim_t *s);

/* In a world only group 0 keeps the nemesis' schedule: each time, one group (drawn) runs a
 * fault, unless a script of any group is running. */
static void nemesis(sim_t *s)
{
    s->nemesis_at = s->now + rng_range(&s->rng, s->nem_min, s->nem_max);
    if (s->w) {
        world_t *w = s->w;
        for (int g = 0; g < w->G; g++)
            if (script_running(w->g[g]))
                return;
        s = w->g[rng_below(&w->rng, (uint64_t)w->G)];
    }
    nemesis_body(s);
}

static void nemesis_body(sim_t *s)
{
    if (s->f8_state ||
        ((s->camp_armed || s->script_at || s->stale_c) && s->now < s->script_until))
        return;
    s->camp_armed = 0;
    s->script_at = 0;
    s->stale_f = s->stale_c = 0;
    s->stale_at = 0;
    node_t *l = find_leader(s);
    if (s->fig8 && l && rng_chance(&s->rng, 350)) {
        fig8_start(s, l);
        return;
    }
    unsigned k = (unsigned)rng_below(&s->rng, 124);
    if (k >= 100) {
        if (k < 108)
            nemesis_link(s);
        else if (k < 112)
            nemesis_pause(s);
        else if (k < 115)
            nemesis_quiet(s);
        else if (k < 117)
            nemesis_late(s);
        else if (k < 120)
            nemesis_drift(s);
        else
            nemesis_lease_script(s);
        return;
    }
    if (k < 18)
        nemesis_partition(s);
    else if (k < 26)
        nemesis_asym(s);
    else if (k < 40) {
        net_heal(s->net);
        tr(s, "nemesis: links healed");
    } else if (k < 58)
        nemesis_crash(s);
    else if (k < 66)
        nemesis_restart(s);
    else if (k < 76)
        nemesis_net_quality(s);
    else if (k < 88)
        nemesis_membership(s, 0);
    else
        nemesis_transfer(s);
}

static void heal(sim_t *s)
{
    s->healed = 1;
    s->heal_at = s->now;
    net_heal(s->net);
    s->net->faults = (net_faults_t){ .delay_min = 1, .delay_max = 10 };
    s->disk_fail_pm = s->disk_crash_pm = 0;
    s->compact_crash_pm = s->lie_pm = s->alloc_ppm = 0;
    s->quiet_until = 0;
    s->camp_armed = 0;
    s->script_at = 0;
    s->stale_f = s->stale_c = 0;
    s->stale_at = 0;
    stash_clear(s);
    s->f8_state = 0;
    for (int i = 0; i < s->nslots; i++) {
        s->node[i].kill_at = 0;
        s->node[i].kill_restart = 0;
        s->node[i].hold_down = 0;
        if (s->node[i].paused)
            s->node[i].paused_until = s->now;   /* resumes in this step */
    }
    tr(s, "=== faults healed: links restored, network reliable, crashed nodes restart ===");
    nemesis_restart(s);
}

/* After healing: keep proposing a marker entry through the leader until one is applied. */
static void liveness_probe(sim_t *s)
{
    if (s->live_ok || (s->marker_at && s->now < s->marker_at + 400))
        return;
    node_t *l = find_leader(s);
    if (!l || l->busy || l->paused)
        return;
    if (s->fs) {
        uint8_t *cmd;
        size_t len;
        raft_prop_info_t info = { 0 };
        if (s->nmarkers == (int)(sizeof(s->markers) / sizeof(s->markers[0])) ||
            s->ops->next_cmd(s->run, &s->rng, &cmd, &len) < 0)
            return;
        s->ops->stamp(cmd, len, node_ms(s, l));
        int rc = c_propose(s, l, cmd, len, &info);
        free(cmd);
        if (rc == 0)
            s->markers[s->nmarkers++] = (typeof(s->markers[0])){ info.index, info.term };
        s->marker_at = s->now;
        tr(s, "liveness: marker proposed at n%llu (%llu/t%llu): %s", U(l->id), U(info.index),
           U(info.term), rc ? qerr_str(rc) : "ok");
        node_drive(s, l);
        return;
    }
    kv_cmd_t c = { .op = KV_PUT, .client = MARKER_CLIENT, .seq = (uint32_t)++s->marker_seq,
                   .key = MARKER_KEY, .value = s->marker_seq };
    if (!s->marker_first)
        s->marker_first = s->marker_seq;
    uint8_t buf[KV_CMD_LEN];
    kv_encode(&c, buf);
    int rc = c_propose(s, l, buf, sizeof(buf), NULL);
    s->marker_at = s->now;
    tr(s, "liveness: marker %llu proposed at n%llu: %s", U(s->marker_seq), U(l->id),
       rc ? qerr_str(rc) : "ok");
    node_drive(s, l);
}

/* ---------------------------------------------------------------------------------------- */

/* fs: the leader's sweeper proposes what fs/node.c's would (expiries), from its state. */
struct sweep_ctx {
    sim_t *s;
    node_t *n;
};

static void sweep_emit(void *ctx, const uint8_t *cmd, size_t len)
{
    struct sweep_ctx *x = ctx;
    int rc = c_propose(x->s, x->n, cmd, len, NULL);
    (void)rc;   /* refused (not leader, busy): the next sweep tries again */
}

static void run_sweepers(sim_t *s)
{
    for (int i = 0; i < s->nslots && !s->failed; i++) {
        node_t *n = &s->node[i];
        if (!n->up || n->next_sweep > s->now)
            continue;
        n->next_sweep = s->now + s->sweep_every;
        if (n->busy || n->paused)
            continue;
        raft_status_t st;
        raft_status(n->r, &st);
        if (st.role != RAFT_LEADER)
            continue;
        if (s->o->trace)
            tr(s, "n%llu sweeps", U(n->id));
        struct sweep_ctx x = { s, n };
        s->ops->sweep(n->sm, s->run, &s->rng, node_ms(s, n), sweep_emit, &x);
        node_drive(s, n);
    }
}

/* fs, at the end: whether every member that is up has applied its last committed entry, the
 * same one everywhere. */
static int converged(sim_t *s)
{
    uint64_t maxc = 0;
    for (int i = 0; i < s->nslots; i++) {
        node_t *n = &s->node[i];
        if (!n->up || !n->member)
            continue;
        raft_status_t st;
        raft_status(n->r, &st);
        if (st.commit > maxc)
            maxc = st.commit;
    }
    for (int i = 0; i < s->nslots; i++) {
        node_t *n = &s->node[i];
        if (!n->up || !n->member)
            continue;
        raft_status_t st;
        raft_status(n->r, &st);
        if (n->busy || n->paused || raft_has_ready(n->r) || st.commit != maxc ||
            s->ops->applied(n->sm) != maxc)
            return 0;
    }
    return 1;
}

/* fs, at the end: once the members have converged, their states must be equal. Returns 1
 * when the run is over (checked, or failed to converge in time). */
static int converge_and_compare(sim_t *s)
{
    if (!s->converge_until)
        s->converge_until = s->now + CONVERGE_BOUND;
    if (converged(s)) {
        int k = 0;
        uint64_t at = 0;
        for (int i = 0; i < s->nslots && !s->failed; i++) {
            node_t *n = &s->node[i];
            if (n->up && n->member) {
                check_now(s, n, "at the end");
                at = s->ops->applied(n->sm);
                k++;
            }
        }
        tr(s, "end: %d members converged at index %llu, states compared", k, U(at));
        return 1;
    }
    if (s->now >= s->converge_until) {
        char b[256];
        size_t k = 0;
        b[0] = 0;
        for (int i = 0; i < s->nslots && k < sizeof(b); i++) {
            node_t *n = &s->node[i];
            if (!n->up || !n->member)
                continue;
            raft_status_t st;
            raft_status(n->r, &st);
            k += (size_t)snprintf(b + k, sizeof(b) - k, " n%llu commit %llu applied %llu%s;",
                                  U(n->id), U(st.commit), U(s->ops->applied(n->sm)),
                                  n->busy ? " busy" : "");
        }
        fail(s, "end: the members did not all apply the same last entry within %d time "
             "units:%s", CONVERGE_BOUND, b);
        return 1;
    }
    return 0;
}

static void deliver(sim_t *s, net_msg_t *m)
{
    pkt_t *p = m->payload;
    if (p->kind == PK_BUNDLE) {
        /* each packet to its group, in send order */
        for (int i = 0; i < p->nsub; i++) {
            net_msg_t one = *m;
            one.payload = p->sub[i];
            p->sub[i] = NULL;
            deliver(s->w->g[p->subg[i]], &one);
        }
        pkt_free(p);
        return;
    }
    if (m->to >= MAX_SLOTS) {
        client_recv(s, m->to - MAX_SLOTS, p);
        pkt_free(p);
        return;
    }
    node_t *n = &s->node[m->to];
    if (!n->up) {
        if (s->fs && p->kind == PK_REQ)   /* a mount that is down fails the call at once */
            respond(s, n, p->client, p->seq, RS_NOTLEADER, 0, 0);
        pkt_free(p);
        return;
    }
    if (n->busy || n->paused || s->batch_max > 1) {
        /* queued: a busy or paused node steps it later; a batching one after this step's
         * other deliveries (step_time drives it) */
        if (inbox_push(n, p) < 0) {
            pkt_free(p);
            fail(s, "out of memory");
        }
        n->dirty = !n->busy && !n->paused;
        return;
    }
    node_input(s, n, p);
    node_drive(s, n);
}

static uint64_t next_event(sim_t *s)
{
    uint64_t t = net_next_at(s->net);
#define MIN_AT(x) do { uint64_t x_ = (x); if (x_ < t) t = x_; } while (0)
    for (int i = 0; i < s->nslots; i++) {
        node_t *n = &s->node[i];
        if (n->up) {
            MIN_AT(n->next_tick);
            if (n->paused)
                MIN_AT(n->paused_until);
            else if (n->busy)
                MIN_AT(n->busy_until);
            if (n->busy && n->crash_at)
                MIN_AT(n->crash_at);
            if (n->kill_at)
                MIN_AT(n->kill_at);
            if (s->fs && !s->stop)
                MIN_AT(n->next_sweep);
        } else if (!n->retired && n->restart_at)
            MIN_AT(n->restart_at);
    }
    for (int i = 0; i < s->nclients; i++) {
        client_t *c = &s->client[i];
        if (c->active) {
            MIN_AT(c->deadline);
            MIN_AT(c->attempt_until);
            if (c->resend_at)
                MIN_AT(c->resend_at);
        } else if (!s->stop)
            MIN_AT(s->quiet_reads && !s->fs ? c->next_at
                   : c->next_at > s->quiet_until ? c->next_at : s->quiet_until);
    }
    if (!s->healed) {
        MIN_AT(s->nemesis_at);
        if (s->f8_state)
            MIN_AT(s->f8_at);
        if (s->script_at)
            MIN_AT(s->script_at);
        if (s->stale_at)
            MIN_AT(s->stale_at);
        if (s->readd_at)
            MIN_AT(s->readd_at);
        if (s->retry_at)
            MIN_AT(s->retry_at);
        MIN_AT(s->fault_end);
    } else if (!s->live_ok)
        MIN_AT(s->heal_at + LIVENESS_BOUND);
    else if (s->converge_until)
        MIN_AT(s->converge_until);
#undef MIN_AT
    return t < s->now ? s->now : t;
}

/* Whether the current leader's latest configuration (committed or not) names m. */
static int in_latest_conf(sim_t *s, node_t *m)
{
    node_t *l = find_leader(s);
    return l && raft_conf_role(raft_conf(l->r), m->id) != 0;
}

static void do_retirements(sim_t *s)
{
    for (int i = 0; i < s->nslots; i++) {
        node_t *m = &s->node[i];
        if (!m->retire)
            continue;
        m->retire = 0;
        if (m->member || in_latest_conf(s, m))
            continue; /* added back meanwhile */
        tr(s, "n%llu was removed from the configuration: shut down", U(m->id));
        node_crash1(s, m, "retired");   /* the group's replica only, never the node */
        m->retired = 1;
        if ((s->o->breach & SIM_BREACH_WIPE_READD) && !s->healed) {
            /* added back soon, wiped, while answers of its last life are still around */
            s->readd_slot = m->slot + 1;
            s->readd_at = s->now + rng_range(&s->rng, 5, 300);
        }
    }
}

/* breach merge-ticks: a caller that delivers one tick for all it owes after a pause or a
 * persist, against raft_tick's contract. */
static void merge_owed(sim_t *s, node_t *n)
{
    if ((s->o->breach & SIM_BREACH_MERGE_TICKS) && n->owed_ticks > 1) {
        tr(s, "n%llu: %u owed ticks merged into one (breach)", U(n->id), n->owed_ticks);
        n->owed_ticks = 1;
    }
}

static void step_time(sim_t *s)
{
    do_retirements(s);
    for (int i = 0; i < s->nslots && !s->failed; i++) {
        node_t *n = &s->node[i];
        if (n->up && n->busy && n->crash_at && n->crash_at <= s->now) {
            node_crash(s, n, "power loss during the persist");
            n->restart_at = s->now + rng_range(&s->rng, 20, 800);
        }
        if (n->up && n->kill_at && n->kill_at <= s->now) {
            uint64_t after = n->kill_restart;
            node_crash(s, n, n->kill_why);
            n->restart_at = n->hold_down ? 0
                            : s->now + (after ? after : rng_range(&s->rng, 20, 300));
        }
    }
    for (int i = 0; i < s->nslots && !s->failed; i++) {
        node_t *n = &s->node[i];
        if (n->up && n->paused && n->paused_until <= s->now) {
            n->paused = 0;
            tr(s, "n%llu resumes, owing %u ticks", U(n->id), n->owed_ticks);
            merge_owed(s, n);
            if (!n->busy)
                node_drive(s, n);
        }
    }
    for (int i = 0; i < s->nslots && !s->failed; i++) {
        node_t *n = &s->node[i];
        if (n->up && n->busy && !n->paused && n->busy_until <= s->now && s->w) {
            if (s->w->busy[n->slot])
                host_complete(s->w, n->slot);
        } else if (n->up && n->busy && !n->paused && n->busy_until <= s->now) {
            node_complete(s, n);
            merge_owed(s, n);
            node_drive(s, n);
        }
    }
    for (int i = 0; i < s->nslots && !s->failed; i++) {
        node_t *n = &s->node[i];
        if (!n->up && !n->retired && n->restart_at && n->restart_at <= s->now) {
            node_boot(s, n);
            s->st->restarts++;
            node_drive(s, n);
        }
    }
    net_msg_t m;
    while (!s->failed && net_pop(s->net, s->now, &m))
        deliver(s, &m);
    for (int i = 0; i < s->nslots && !s->failed; i++) {
        node_t *n = &s->node[i];
        if (n->dirty) {
            n->dirty = 0;
            node_drive(s, n);
        }
    }
    for (int i = 0; i < s->nslots && !s->failed; i++) {
        node_t *n = &s->node[i];
        while (n->up && n->next_tick <= s->now && !s->failed) {
            n->next_tick_q += n->tick_q;
            n->next_tick = (n->next_tick_q + TICK_Q - 1) / TICK_Q;
            if (n->busy || n->paused)
                n->owed_ticks++;
            else {
                c_tick(s, n);
                node_drive(s, n);
            }
        }
    }
    if (s->fs && !s->stop && !s->failed)
        run_sweepers(s);
    if (!s->failed)
        clients_run(s);
    if (!s->healed && !s->failed && s->now >= s->fault_end)
        heal(s);
    if (!s->healed && !s->failed && s->f8_state && s->f8_at <= s->now)
        fig8_timer(s);
    if (!s->healed && !s->failed && s->script_at && s->script_at <= s->now)
        lease_script_cut(s);
    if (!s->healed && !s->failed && s->stale_at && s->stale_at <= s->now)
        stale_term_deliver(s);
    if (!s->healed && !s->failed && s->readd_at && s->readd_at <= s->now) {
        s->readd_at = 0;
        nemesis_membership(s, s->readd_slot);
    }
    if (!s->healed && !s->failed && s->retry_at && s->retry_at <= s->now) {
        s->retry_at = 0;
        if (s->retry_kind == 1)
            nemesis_membership(s, 0);
        else
            nemesis_transfer(s);
    }
    if (!s->healed && !s->failed && s->nemesis_at <= s->now)
        nemesis(s);
    if (s->healed && !s->failed)
        liveness_probe(s);
    do_retirements(s);
}

static void choose_params(sim_t *s)
{
    rng_t *r = &s->rng;
    raft_config_t *c = &s->base;
    memset(c, 0, sizeof(*c));
    c->election_tick = 10;
    c->heartbeat_tick = (uint32_t)rng_range(r, 1, 3);
    c->pre_vote = rng_chance(r, 500);
    c->check_quorum = rng_chance(r, 500);
    if (c->check_quorum && rng_chance(r, 300)) {
        c->lease_reads = true;
        c->max_clock_drift_ticks = 3;
    }
    c->max_msg_bytes = rng_chance(r, 500) ? 1 : (uint32_t)rng_range(r, 60, 400);
    c->max_inflight = rng_chance(r, 300) ? 1 : (uint32_t)rng_range(r, 2, 64);
    c->snap_chunk_bytes = (uint32_t)rng_range(r, 16, 200);
    c->snap_trailing = rng_chance(r, 500) ? 0 : rng_range(r, 1, 8);
    c->promote_lag = rng_range(r, 1, 20);
    c->max_uncommitted_bytes = rng_chance(r, 200) ? 300 : 0;
    s->snap_every = rng_range(r, 8, 40);
    s->disk_lat_max = rng_range(r, 0, 12);
    s->disk_fail_pm = (unsigned)rng_range(r, 0, 4);
    s->disk_crash_pm = (unsigned)rng_range(r, 0, 30);
    s->leader_crash_pm = (unsigned)rng_range(r, 300, 800);
    s->client_timeout = rng_range(r, 200, 600);
    s->client_giveup = rng_range(r, 3000, 8000);
    s->quick_kill_pm = rng_chance(r, 400) ? (unsigned)rng_range(r, 100, 500) : 0;
    s->fig8 = rng_chance(r, 400);
    if (s->fig8)
        c->max_msg_bytes = 1;
    s->nem_min = rng_range(r, 40, 200);
    s->nem_max = s->nem_min + rng_range(r, 100, 800);
    s->nclients = (int)rng_range(r, 3, KV_MAX_CLIENTS);
    s->nkeys = (uint32_t)rng_range(r, 1, 4);
    s->fault_end = rng_range(r, 10000, 25000);
    if (s->fs) {
        /* fs snapshots are kilobytes: chunks that ship one in a few round trips, and
         * compaction rare enough that a transfer can finish before the next one. */
        c->snap_chunk_bytes = (uint32_t)rng_range(r, 256, 4096);
        s->snap_every = rng_range(r, 16, 80);
        s->ms_per_unit = rng_range(r, 1, 4);
        s->sweep_every = rng_range(r, 50, 300);
        s->check_every = rng_range(r, 3, 12);
        /* fs clients give up where kv clients would send again (no deduplication): more
         * of them, waiting longer, keep the log as busy. */
        s->nclients = (int)rng_range(r, 4, MAX_CLIENTS);
        s->client_timeout = rng_range(r, 400, 1200);
        s->fs_resend = rng_chance(r, 500) || s->o->fs_resend;
    }
    /* The faults of issue 9's list, each on in part of the seeds. */
    s->batch_max = rng_chance(r, 400) ? 1 : (int)rng_range(r, 2, 16);
    s->mixed = rng_chance(r, 300);
    s->alloc_ppm = rng_chance(r, 500) ? 0 : (unsigned)rng_range(r, 1000, 20000);
    s->stash_pm = rng_chance(r, 400) ? 0 : (unsigned)rng_range(r, 1, 20);
    s->camp_restart_pm = rng_chance(r, 400) ? 0 : (unsigned)rng_range(r, 100, 600);
    s->compact_crash_pm = rng_chance(r, 500) ? 0 : (unsigned)rng_range(r, 10, 80);
    if (s->o->breach & SIM_BREACH_LYING_FSYNC)
        s->lie_pm = (unsigned)rng_range(r, 20, 200);
}

static void report_lin(sim_t *s, const lin_result_t *res)
{
    size_t k = strlen(s->why);
    for (size_t i = 0; i < s->nhist && k + 2 < s->whylen; i++) {
        if (s->hist[i].key != res->bad_key)
            continue;
        char b[160];
        lin_format(&s->hist[i], b, sizeof(b));
        k += (size_t)snprintf(s->why + k, s->whylen - k, "\n    %s", b);
        if (k >= s->whylen)
            break;
    }
}

/* One clause per node: role, term, commit, last index and configuration. */
static void describe_nodes(sim_t *s, char *b, size_t len)
{
    size_t k = 0;
    b[0] = 0;
    for (int i = 0; i < s->nslots && k < len; i++) {
        node_t *n = &s->node[i];
        if (!n->up) {
            k += (size_t)snprintf(b + k, len - k, "n%llu %s; ", U(n->id),
                                  n->retired ? "retired" : "down");
            continue;
        }
        raft_status_t st;
        raft_status(n->r, &st);
        const raft_conf_t *c = raft_conf(n->r);
        k += (size_t)snprintf(b + k, len - k, "n%llu %s t%llu c%llu last %llu%s conf {",
                              U(n->id), role_name(st.role), U(st.term), U(st.commit),
                              U(st.last_index), n->busy ? " busy" : "");
        for (uint32_t j = 0; j < c->n && k < len; j++)
            k += (size_t)snprintf(b + k, len - k, "%s%llu%s", j ? " " : "", U(c->s[j].id),
                                  c->s[j].role == RAFT_VOTER ? "" :
                                  c->s[j].role == RAFT_LEARNER ? "L" : "S");
        if (k < len)
            k += (size_t)snprintf(b + k, len - k, "}; ");
    }
}

/* Sets up one run (alone: w NULL), or group g of world w, up to its first event. Returns
 * 0, or -1 on no memory (nothing to free but s). */
static int sim_init(sim_t *s, const sim_opts_t *o, sim_stats_t *st, char *why, size_t whylen,
                    world_t *w, int g)
{
    memset(st, 0, sizeof(*st));
    why[0] = 0;
    s->o = o;
    s->st = st;
    s->why = why;
    s->whylen = whylen;
    s->w = w;
    s->g = g;
    s->net = w ? &w->net : &s->net_own;
    s->fs = o->sm == SIM_FS;
    s->ops = s->fs ? &smi_fs : &smi_kv;
    /* group 0 (and a run alone) draws from the seed itself; other groups from their own */
    uint64_t seed = g ? o->seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)g) : o->seed;
    if (s->ops->run_new && !(s->run = s->ops->run_new(seed, o->fs_bug, (uint32_t)g)))
        return -1;
    rng_seed(&s->rng, seed);
    if (!w)
        net_init(s->net, &s->rng, pkt_clone, pkt_free);
    inv_init(&s->inv);
    s->nfound = o->nodes;
    s->nslots = o->nodes + (o->nodes >= 5 ? 2 : 1);
    choose_params(s);
    if (w) {
        /* A crash now takes down every group of a node, and each of its groups then holds
         * an election: the faults drawn per election (a campaign restarts another node, a
         * new leader dies soon) are drawn G times as often, so each is G times rarer. */
        s->camp_restart_pm /= (unsigned)w->G;
        s->quick_kill_pm /= (unsigned)w->G;
    }
    if (g == 0)
        nemesis_net_quality(s);
    else
        s->fault_end = w->g[0]->fault_end;   /* faults heal everywhere at once */
    rng_seed(&s->alloc_rng, seed ^ 0xa110ca7e5eedULL);
    s->alloc0 = alloc_failures();
    tr(s, "seed %llu: %d voters + %d spare, pre_vote %d check_quorum %d lease_reads %d%s "
       "max_msg_bytes %u max_inflight %u snap_every %llu disk latency <= %llu, %d clients on "
       "%u keys, faults until %llu", U(o->seed), s->nfound, s->nslots - s->nfound,
       s->base.pre_vote, s->base.check_quorum, s->base.lease_reads,
       s->mixed ? " (each node draws its own)" : "", s->base.max_msg_bytes,
       s->base.max_inflight, U(s->snap_every), U(s->disk_lat_max), s->nclients, s->nkeys,
       U(s->fault_end));
    tr(s, "  %d msgs stepped per Ready at most, allocations fail %u ppm, %u%%o of msgs kept "
       "for late delivery, %u%%o of campaigns restart another node, %u%%o of compactions "
       "crash%s%s", s->batch_max, s->alloc_ppm, s->stash_pm, s->camp_restart_pm,
       s->compact_crash_pm, s->lie_pm ? ", fsync lies" : "",
       o->breach & SIM_BREACH_HS_FIRST ? ", hard state lands first" : "");
    if (s->fs)
        tr(s, "fs: %llu ms per time unit, sweeps every %llu, states compared every %llu "
           "indexes, snapshot chunks of %u bytes, clients %s", U(s->ms_per_unit),
           U(s->sweep_every), U(s->check_every), s->base.snap_chunk_bytes,
           s->fs_resend ? "send again commands of unknown outcome"
                        : "give up on commands of unknown outcome");

    raft_conf_t boot = { 0 };
    for (int i = 0; i < s->nfound; i++)
        boot.s[boot.n++] = (raft_server_t){ .id = (uint64_t)i + 1, .role = RAFT_VOTER };
    raft_conf_t empty = { 0 };
    for (int i = 0; i < s->nslots && !s->failed; i++) {
        node_t *n = &s->node[i];
        n->slot = i;
        n->id = (uint64_t)i + 1;
        n->member = i < s->nfound;
        disk_init(&n->disk, i < s->nfound ? &boot : &empty);
        n->disk.lax = o->lin_only;
        n->disk.hs_first = (o->breach & SIM_BREACH_HS_FIRST) != 0;
        node_boot1(s, n);
    }
    for (int i = 0; i < s->nclients; i++) {
        s->client[i].target = (int)rng_below(&s->rng, (uint64_t)s->nfound);
        s->client[i].next_at = rng_range(&s->rng, 1, 50);
    }
    s->nemesis_at = rng_range(&s->rng, s->nem_min, s->nem_max);
    if (g)
        s->nemesis_at = UINT64_MAX;           /* the world's nemesis runs on group 0's */
    return 0;
}

/* Whether this run's liveness is not Raft's to guarantee (FINDINGS.md 8): with mixed
 * settings, a server removed from the configuration that runs without pre-vote can depose
 * every leader whose voters run without check-quorum (they have no stickiness), for as
 * long as it lives (the disruption of the thesis §4.2.3). The node never runs so (it turns
 * both on in every group); such runs are still checked for safety, not for liveness. */
static int removed_disrupter(const sim_t *s)
{
    int disrupter = 0, unsticky = 0;
    for (int i = 0; i < s->nslots; i++) {
        const node_t *n = &s->node[i];
        if (!n->up)
            continue;
        disrupter |= !n->member && !n->pre_vote;
        unsticky |= n->member && !n->check_quorum;
    }
    return s->mixed && disrupter && unsticky;
}

/* After a step: whether the run is over (passed its end, or failed liveness). */
static int sim_over(sim_t *s)
{
    if (s->live_ok) {
        /* No new ops; let those in flight finish (each is bounded by its deadline). */
        s->stop = 1;
        int busy = 0;
        for (int i = 0; i < s->nclients; i++)
            busy |= s->client[i].active;
        if (!busy && (!s->fs || converge_and_compare(s)))
            return 1;
    } else if (s->healed && s->now >= s->heal_at + LIVENESS_BOUND && removed_disrupter(s)) {
        tr(s, "liveness: not checked: a removed server without pre-vote and voters without "
              "check-quorum (mixed settings; FINDINGS.md 8)");
        s->st->live_excused++;
        s->live_ok = 1;           /* ends the run as above; safety was checked throughout */
    } else if (s->healed && s->now >= s->heal_at + LIVENESS_BOUND) {
        char b[768];
        describe_nodes(s, b, sizeof(b));
        fail(s, "liveness: no leader committed a new entry within %d time units of "
             "healing; nodes: %s", LIVENESS_BOUND, b);
        return 1;
    }
    return 0;
}

/* The end-of-run checks and figures. Returns 0 if every check passed, else 1. */
static int sim_finish(sim_t *s)
{
    sim_stats_t *st = s->st;
    st->vtime = s->now;
    /* Ops still in flight have unknown outcomes. */
    for (int i = 0; i < s->nclients; i++)
        if (s->client[i].active)
            client_finish(s, i, 0, 0);
    if (!s->failed && !s->fs) {
        lin_result_t res;
        int v = lin_check(s->hist, s->nhist, 0, &res);
        st->lin_states = res.states;
        if (v == 0) {
            fail(s, "history not linearizable on key %u (%zu ops; the best search path "
                 "linearized %zu); ops on that key:", res.bad_key, res.key_ops, res.best);
            report_lin(s, &res);
        } else if (v < 0)
            fail(s, "linearizability check ran out of its state budget (%llu states)",
                 U(res.states));
    }
    st->alloc_fails = alloc_failures() - s->alloc0;
    if (s->ops->run_stats)
        s->ops->run_stats(s->run, st->sm_line, sizeof(st->sm_line));
    return s->failed ? 1 : 0;
}

static void sim_destroy(sim_t *s)
{
    for (int i = 0; i < s->nslots; i++) {
        node_t *n = &s->node[i];
        s->ops->free(n->sm);
        raft_free(n->r);
        disk_batch_free(&n->batch);
        for (int j = 0; j < n->nlies; j++)
            disk_batch_free(&n->lies[j]);
        for (int j = 0; j < OLD_ACKS; j++)
            pkt_free(n->old_acks[j]);
        disk_free(&n->disk);
        inbox_clear(n);
        free(n->inbox);
        free(n->boot_tmp);
    }
    for (int i = 0; i < s->nclients; i++)
        free(s->client[i].cmd);
    for (size_t i = 0; i < s->nsc; i++)
        free(s->sc[i].bytes);
    free(s->sc);
    if (s->ops->run_free && s->run)
        s->ops->run_free(s->run);
    stash_clear(s);
    for (int i = 0; i < MAX_SLOTS; i++)
        for (int j = 0; j < MAX_SLOTS; j++)
            pkt_free(s->last_sent[i][j]);
    free(s->wire);
    free(s->wire2);
    if (!s->w)
        net_destroy(s->net);
    inv_free(&s->inv);
    free(s->hist);
    free(s);
}

/* Sends the bundles the step filled, one per node pair (and link kind), in a fixed order. */
static void world_flush(world_t *w)
{
    for (int r = 0; r < 2; r++)
        for (int a = 0; a < NET_MAX_ENDPOINTS; a++)
            for (int b = 0; b < NET_MAX_ENDPOINTS; b++) {
                pkt_t *p = w->out[r][a][b];
                if (!p)
                    continue;
                w->out[r][a][b] = NULL;
                uint64_t now = w->g[0]->now;
                if ((r ? net_send_reliable(&w->net, a, b, p, now)
                       : net_send(&w->net, a, b, p, now)) < 0)
                    fail(w->g[0], "out of memory");
            }
}

static void stats_add(sim_stats_t *d, const sim_stats_t *a)
{
#define ADD(f) d->f += a->f
#define MAX(f) do { if (a->f > d->f) d->f = a->f; } while (0)
    MAX(vtime);
    ADD(ops); ADD(unknown); ADD(msgs); ADD(crashes); ADD(torn); ADD(disk_faults);
    ADD(restarts); ADD(elections); MAX(max_term); ADD(snaps_sent); ADD(conf_changes);
    MAX(applied); ADD(lin_states); ADD(inv_broken); ADD(state_checks); ADD(restore_checks);
    ADD(lease_checks); ADD(read_checks); ADD(durable_checks); ADD(pauses); ADD(late_msgs);
    ADD(compact_crashes);
#undef ADD
#undef MAX
}

/* A group whose run is over steps no more, but its replicas still share their nodes: what
 * the node needs from them is still done. A restart it owes (the crash that set it may have
 * taken down the other groups' replicas of that node, which then wait for it) boots the
 * node; a shared write that only its replicas still wait for completes. Returns the time of
 * the next such event (UINT64_MAX: none) or, with run set, does those due now. */
static uint64_t done_group_events(world_t *w, sim_t *s, int run)
{
    uint64_t t = UINT64_MAX;
    for (int i = 0; i < s->nslots && !world_failed(w); i++) {
        node_t *n = &s->node[i];
        uint64_t at = UINT64_MAX;
        if (!n->up && !n->retired && n->restart_at)
            at = n->restart_at;
        else if (n->up && n->busy && !n->paused && w->busy[i])
            at = n->busy_until;
        if (!run) {
            if (at < t)
                t = at;
        } else if (at <= s->now) {
            if (!n->up) {
                node_boot(s, n);
                s->st->restarts++;
                node_drive(s, n);
            } else
                host_complete(w, i);
        }
    }
    return t;
}

/* --groups G > 1: the groups of one world step together on one clock; the run ends when
 * every group's has, or as soon as one fails (its reason, prefixed by its group, is why). */
static int world_run(const sim_opts_t *o, sim_stats_t *st, char *why, size_t whylen)
{
    world_t *w = calloc(1, sizeof(*w));
    if (!w)
        return -1;
    memset(st, 0, sizeof(*st));
    why[0] = 0;
    w->G = o->groups;
    rng_seed(&w->rng, o->seed ^ 0x5eedf0a11ed5ULL);
    net_init(&w->net, &w->rng, pkt_clone, pkt_free);
    uint64_t alloc0 = alloc_failures();
    int ret = 0, ng = 0;
    for (int g = 0; g < w->G; g++) {
        if (!(w->g[g] = calloc(1, sizeof(sim_t))) || !(w->why[g] = malloc(whylen)) ||
            (ng++, sim_init(w->g[g], o, &w->st[g], w->why[g], whylen, w, g) < 0)) {
            ret = -1;
            break;
        }
    }
    if (ret == 0) {
        /* one process per node: one clock for all its groups */
        for (int i = 0; i < w->g[0]->nslots; i++)
            if (w->g[0]->node[i].up)
                host_sync(w, &w->g[0]->node[i]);
        int done[MAX_GROUPS] = { 0 }, ndone = 0;
        while (!world_failed(w) && ndone < w->G) {
            uint64_t t = UINT64_MAX;
            for (int g = 0; g < w->G; g++) {
                uint64_t x = done[g] ? done_group_events(w, w->g[g], 0)
                                     : next_event(w->g[g]);
                if (x < t)
                    t = x;
            }
            if (t < w->g[0]->now)
                t = w->g[0]->now;
            if (t == UINT64_MAX) {
                fail(w->g[0], "simulation stalled: no event left");
                break;
            }
            for (int g = 0; g < w->G; g++)
                w->g[g]->now = t;
            for (int g = 0; g < w->G && !world_failed(w); g++) {
                if (!done[g])
                    step_time(w->g[g]);
                else
                    done_group_events(w, w->g[g], 1);
            }
            world_flush(w);
            for (int g = 0; g < w->G && !world_failed(w); g++)
                if (!done[g] && sim_over(w->g[g])) {
                    done[g] = 1;
                    ndone++;
                }
        }
        for (int g = 0; g < w->G; g++) {
            if (sim_finish(w->g[g]) && !ret) {
                ret = 1;
                snprintf(why, whylen, "%s", w->why[g]);
            }
            stats_add(st, &w->st[g]);
        }
        st->alloc_fails = alloc_failures() - alloc0;
        snprintf(st->sm_line, sizeof(st->sm_line), "%s", w->st[0].sm_line);
    }
    for (int g = 0; g < w->G; g++) {
        if (g < ng)
            sim_destroy(w->g[g]);
        else
            free(w->g[g]);
        free(w->why[g]);
    }
    for (int r = 0; r < 2; r++)
        for (int a = 0; a < NET_MAX_ENDPOINTS; a++)
            for (int b = 0; b < NET_MAX_ENDPOINTS; b++)
                pkt_free(w->out[r][a][b]);
    net_destroy(&w->net);
    free(w);
    return ret;
}

int sim_run(const sim_opts_t *o, sim_stats_t *st, char *why, size_t whylen)
{
    if (o->groups > 1)
        return world_run(o, st, why, whylen);
    sim_t *s = calloc(1, sizeof(*s));
    if (!s)
        return -1;
    if (sim_init(s, o, st, why, whylen, NULL, 0) < 0) {
        free(s);
        return -1;
    }
    while (!s->failed) {
        uint64_t t = next_event(s);
        if (t == UINT64_MAX) {
            fail(s, "simulation stalled: no event left");
            break;
        }
        s->now = t;
        step_time(s);
        if (sim_over(s))
            break;
    }
    int ret = sim_finish(s);
    sim_destroy(s);
    return ret;
}
