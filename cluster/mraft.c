/* cluster/mraft.c — the node loop of cluster/mraft.h. One thread owns every raft_t of the
 * node and the shared store; other threads only queue work (messages, proposals, reads)
 * under the node lock and sleep until the loop completes it. Each iteration: deliver every
 * owed tick, step the inbox, propose, issue reads; then for every group with a Ready send
 * rd.msgs, persist (b) for ALL groups and fsync once, send rd.msgs_after_persist, restore an
 * installed snapshot, apply, serve reads, advance; then snapshot/compact/collect as needed,
 * and hand results back under the lock. */
#include "cluster/mraft.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cluster/assert.h"
#include "cluster/bytes.h"
#include "cluster/err.h"
#include "cluster/snapshot.h"

#define DEFAULT_TICK_MS 100
#define DEFAULT_ELECTION_TICK 10
#define DEFAULT_SNAPSHOT_BYTES (16ull << 20)
#define DEFAULT_SEGMENT_BYTES (64ull << 20)
#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_MAX_CMD (2u << 20)
#define DEFAULT_INBOX_MAX 65536
#define SNAP_RETRY_TICKS 10      /* a failed snapshot is tried again after this many ticks */
#define GC_FORCE_SNAPSHOTS 2     /* groups snapshotted per gc because they hold the log back */
#define DEFAULT_BALANCE_MS 3000
#define DEFAULT_BALANCE_BACKOFF_MS 30000

/* The metadata header this module writes at the start of every snapshot stream, before the
 * state machine's own bytes (docs/CLUSTER.md "Snapshot files"): u32 magic, u8 version,
 * u64 index, u64 term, u16 conf length, then the configuration (raft_conf_encode); version 2
 * adds one byte after it, cfg.snap_tag (docs/FORMATS.md §7). It makes a snapshot file
 * self-describing, so a restart or a follower installing it knows the configuration at its
 * index (and a state machine wrapper, the layout of what follows). */
#define MSNAP_MAGIC 0x4E534D51u  /* "QMSN" */
#define MSNAP_VERSION 1          /* written when cfg.snap_tag is 0 */
#define MSNAP_VERSION_TAGGED 2   /* version 1 + one byte after the configuration: the tag */
#define MSNAP_HEAD 23

/* The tag of the snapshot whose state machine stream is being restored on this thread
 * (mraft_restoring_snap_tag); set by restore_file around ops->restore only. */
static __thread uint8_t restoring_tag;

/* ---- work items ----------------------------------------------------------------------- */

/* A proposal. Allocated by the proposer; once queued, the loop owns every field except
 * done/abandoned/rc-after-done, which change only under n->mu. Whoever sees the other side
 * finished frees it: the proposer after done, the loop (or close) if abandoned. A P_REMOTE
 * proposal (forwarded here by another node) has no waiter: the loop answers the requester
 * when it finishes and frees it. */
enum { P_LOCAL = 0, P_ANY = 1, P_REMOTE = 2, P_CONF = 3 };
enum { F_ROUTE = 1, F_SENT = 2, F_APPLY = 3 };

typedef struct prop {
    struct prop *next;
    uint32_t group;
    uint64_t index, term;        /* given by raft_propose_batch (or a leader's RESULT) */
    int rc;
    bool done, abandoned;
    uint8_t kind;                /* P_LOCAL (mraft_propose), P_ANY, P_REMOTE, P_CONF
                                    (mraft_change_member: a CONF entry, no command) */
    uint8_t fstate;              /* P_ANY on g->fwds: F_ROUTE (to send at retry_at), F_SENT
                                    (awaiting the RESULT), F_APPLY (applied on the leader at
                                    index; waiting to apply it here) */
    uint64_t req;                /* P_ANY: this node's request id; P_REMOTE: the requester's */
    uint32_t attempt;            /* P_ANY: attempts sent; P_REMOTE: the requester's */
    uint64_t peer;               /* P_ANY: the node sent to, or a hint to try; P_REMOTE: the
                                    requester */
    uint64_t retry_at;           /* P_ANY in F_ROUTE: the tick to (re)send at */
    uint64_t leader;
    uint32_t conf_op;            /* P_CONF: RAFT_CONF_* */
    uint64_t conf_id;            /* P_CONF: the server added, promoted or removed */
    sm_result_t res;
    pthread_cond_t cv;           /* not for P_REMOTE */
    size_t len;
    uint8_t cmd[];
} prop_t;

/* A forwarding message waiting for the loop. */
typedef struct fwdin {
    struct fwdin *next;
    uint64_t from;
    frame_fwd_t f;               /* owns its command */
} fwdin_t;

enum { R_ISSUE = 1, R_SENT = 2, R_WAIT = 3 };

/* A read barrier; same ownership rules as prop_t. */
typedef struct rreq {
    struct rreq *next;
    uint32_t group;
    int state;                   /* R_ISSUE: (re)issue at retry_at; R_SENT: raft read id
                                    pending until retry_at; R_WAIT: apply up to index */
    uint64_t id;                 /* R_SENT: the raft read id, shared by every read of the
                                    group issued in the same iteration (issue_reads) */
    uint64_t index, retry_at;
    uint64_t to;                 /* R_SENT: the leader the core named when it was issued
                                    (this node's id if it led) */
    int rc;
    bool done, abandoned;
    pthread_cond_t cv;
} rreq_t;

typedef struct inmsg {
    uint32_t group;
    raft_msg_t m;                /* owns its memory */
} inmsg_t;

typedef struct mgroup {
    uint32_t id;
    raft_t *r;
    const sm_ops_t *ops;
    void *ctx;
    char *dir;                   /* snap-<id>/ */
    snapshot_info_t snap;        /* the current snapshot file (path NULL: none) */
    snap_recv_t *recv;           /* a snapshot being received */
    raft_conf_t applied_conf;    /* configuration as of `applied` */
    uint64_t applied;            /* last index applied to the state machine */
    uint64_t applied_bytes;      /* applied since the last snapshot */
    uint64_t snap_retry_at;      /* tick before which no snapshot is tried */
    bool gc_due;                 /* the store's collection waits for its snapshot */
    raft_hard_state_t hs_saved;  /* the last hard state written to the store */
    prop_t *pend, *pend_tail;    /* proposed, waiting to apply; sorted by index */
    prop_t *batch, *batch_tail;  /* queued this iteration, to propose */
    size_t batch_n;
    rreq_t *reads;
    prop_t *fwds;                /* P_ANY proposals being forwarded (unordered) */
    raft_ready_t rd;
    bool has_rd;
    uint64_t snapshots, installs;
    /* leader balancing (mraft_members_t.preferred); loop-owned, but preferred, which
     * mraft_set_preferred changes from any thread, is read and written atomically */
    uint64_t preferred;          /* 0: none */
    uint64_t bal_next;           /* tick before which no transfer is started */
    uint64_t bal_term;           /* the term this node last led the group in (balancer) */
    uint64_t bal_target;         /* the target of the transfer this loop started, 0 if none */
    uint64_t bad_target, bad_until; /* a target whose transfer failed, and until which tick
                                    it is not tried again */
    uint64_t transfers, transfers_failed;
    /* snapshot transfers to peers as this node last sent them (leader; loop-owned): the
     * byte after the last chunk sent and the file's size, for mraft_status' progress */
    struct snap_out {
        uint64_t id, index, sent, total;
    } snap_out[RAFT_MAX_SERVERS];
    mraft_group_status_t pub;    /* under n->mu */
    /* The leader fast path of read barriers (mraft_read_barrier, "Leader reads without the
     * loop" in docs/CLUSTER.md): until lease_until_ns, a CLOCK_BOOTTIME instant (0: no
     * lease), a barrier may be answered at lease_commit by the calling thread. Written by
     * the loop only (publish_lease: the commit before the instant, with release order),
     * read by any thread with acquire loads; applied_pub is `applied`, published the same
     * way after each apply. */
    uint64_t lease_until_ns, lease_commit, applied_pub;
} mgroup_t;

struct mraft_node {
    mraft_config_t cfg;          /* defaults filled in; dir points to `dir` */
    char *dir;
    mraft_transport_t tr;
    rstore_t *store;
    mgroup_t **groups;           /* sorted by id; fixed once started */
    size_t n_groups;
    pthread_t thread;

    pthread_mutex_t mu;          /* guards what follows, up to "loop-owned" */
    pthread_cond_t cv;           /* wakes the loop */
    pthread_cond_t idle_cv;      /* close waits here for waiters to leave */
    uint64_t lease_reads;        /* mraft_stats_t.lease_reads */
    pthread_cond_t pub_cv;       /* broadcast by publish_locked while pub_waiters > 0 */
    int pub_waiters;             /* mraft_change_member calls waiting for a configuration */
    bool started, closing, kick;
    int failed;
    inmsg_t *inbox;
    size_t inbox_n, inbox_cap;
    prop_t *sub_props, *sub_props_tail;
    rreq_t *sub_reads, *sub_reads_tail;
    fwdin_t *fwd_in, *fwd_in_tail;   /* forwarding messages received */
    size_t fwd_in_n;
    uint64_t n_abandoned;
    int waiters;
    uint64_t recv_count, recv_dropped;
    mraft_stats_t pub;

    /* loop-owned (and close's, after the loop has stopped) */
    inmsg_t *work;
    size_t work_cap;
    uint64_t tick_ns, next_tick_ns, ticks;
    uint64_t read_seq;
    prop_t *fin_props;
    rreq_t *fin_reads;
    raft_iov_t *iov;
    size_t iov_cap;
    mraft_stats_t st;
    uint64_t gc_mark;
    uint64_t fwd_seq;            /* last request id given to a forwarded proposal */
    bool fwd_flush;              /* forwarding messages were sent since the last flush */
    bool busy, dirty;
    int fail_rc;
    uint64_t balance_ticks, backoff_ticks; /* cfg.balance_ms, cfg.balance_backoff_ms */
    struct snap_job *snap_job;   /* the snapshot being made durable off the loop, or NULL */
    size_t snap_next;            /* where maintenance looks for the next snapshot first */
    /* where the current iteration's time went (ns), for the slow-iteration log line */
    uint64_t t_sync, t_chunks, t_installs, t_snaps, t_apply, t_write, t_gc;
    uint64_t slow_logged_ns;     /* when the last slow iteration was logged */
};

/* ---- small helpers -------------------------------------------------------------------- */

/* Evaluates call (an int expression), adding the nanoseconds it took to acc (the slow
 * iteration's accounting, log_if_slow). */
#define TIMED(acc, call) ({ uint64_t t0_ = now_ns(); int r_ = (call); (acc) += now_ns() - t0_; r_; })

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The clock ticks come from: CLOCK_BOOTTIME, which, unlike CLOCK_MONOTONIC, goes on while
 * the machine is suspended, so a leader that wakes from a suspend delivers the ticks it owes
 * (and its lease runs out) before it answers anything. Condition variables cannot wait on
 * it: waits use now_ns() deadlines, converted with tick_to_mono. */
static uint64_t tick_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The lease's margin for clock drift, in ticks: 30% of the election timeout (3 of 10 by
 * default: what the simulator runs lease reads under, docs/RAFT.md "Clocks"), at least 1.
 * raft_new refuses a margin that is not below election_tick. */
static uint32_t lease_drift_ticks(uint32_t election_tick)
{
    uint32_t d = election_tick * 3 / 10;
    return d ? d : 1;
}

/* The CLOCK_MONOTONIC time at which the tick clock reads t (now or later). */
static uint64_t tick_to_mono(uint64_t t)
{
    uint64_t tn = tick_now_ns(), mn = now_ns();
    return mn + (t > tn ? t - tn : 0);
}

static struct timespec ns_ts(uint64_t ns)
{
    return (struct timespec){ .tv_sec = (time_t)(ns / 1000000000ull),
                              .tv_nsec = (long)(ns % 1000000000ull) };
}

static void cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(cv, &a);
    ASSERT(rc == 0);
    pthread_condattr_destroy(&a);
}

static void nlog(const mraft_node_t *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void nlog(const mraft_node_t *n, const char *fmt, ...)
{
    va_list ap;
    char line[512];
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "quorumfs: node %" PRIu64 ": %s\n", n->cfg.id, line);
}

static mgroup_t *find_group(const mraft_node_t *n, uint32_t id)
{
    size_t lo = 0, hi = n->n_groups;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (n->groups[mid]->id == id)
            return n->groups[mid];
        if (n->groups[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static bool same_order(const raft_conf_t *a, const raft_conf_t *b)
{
    if (a->n != b->n)
        return false;
    for (uint32_t i = 0; i < a->n; i++)
        if (a->s[i].id != b->s[i].id || a->s[i].role != b->s[i].role)
            return false;
    return true;
}

/* Whether a and b hold the same servers in the same roles, in any order. (publish_locked
 * asks it of every group at every iteration: the common case, the same list in the same
 * order, is answered without normalizing copies.) */
static bool conf_equal(const raft_conf_t *a, const raft_conf_t *b)
{
    if (same_order(a, b))
        return true;
    raft_conf_t x = *a, y = *b;
    return raft_conf_normalize(&x) == 0 && raft_conf_normalize(&y) == 0 && same_order(&x, &y);
}

/* Creates path if missing and fsyncs parent, so files inside cannot vanish with it. */
static int make_dir(const char *parent, const char *path, char **errmsg)
{
    if (mkdir(path, 0755) < 0) {
        if (errno == EEXIST)
            return 0;
        qerr_set_msg(errmsg, "cannot create %s: %s", path, strerror(errno));
        return qerr_from_errno(errno);
    }
    int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
    if (fd < 0 || fsync(fd) < 0) {
        qerr_set_msg(errmsg, "cannot fsync %s: %s", parent, strerror(errno));
        rc = -QERR_IO;
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

/* ---- snapshot files ------------------------------------------------------------------- */

/* Writes the metadata header: version 1, or version 2 with the tag when tag is nonzero. */
static int put_meta(snap_writer_t *w, const raft_snap_meta_t *m, uint8_t tag)
{
    uint8_t b[MSNAP_HEAD + RAFT_CONF_MAX_BYTES + 1];
    size_t cl = raft_conf_encode(&m->conf, b + MSNAP_HEAD);
    ASSERT(cl <= RAFT_CONF_MAX_BYTES);
    le_put32(b, MSNAP_MAGIC);
    b[4] = tag ? MSNAP_VERSION_TAGGED : MSNAP_VERSION;
    le_put64(b + 5, m->index);
    le_put64(b + 13, m->term);
    b[21] = (uint8_t)cl;
    b[22] = (uint8_t)(cl >> 8);
    if (tag)
        b[MSNAP_HEAD + cl] = tag;
    return snap_writer_put(w, b, MSNAP_HEAD + cl + (tag ? 1 : 0));
}

/* Reads the metadata header; *tag gets the version-2 tag, 0 for version 1. */
static int get_meta(snap_reader_t *r, raft_snap_meta_t *m, uint8_t *tag)
{
    uint8_t b[MSNAP_HEAD + RAFT_CONF_MAX_BYTES + 1];
    int rc = snap_reader_get(r, b, MSNAP_HEAD);
    if (rc)
        return rc;
    if (le_get32(b) != MSNAP_MAGIC)
        return -QERR_CORRUPT;
    if (b[4] != MSNAP_VERSION && b[4] != MSNAP_VERSION_TAGGED)
        return -QERR_FORMAT;
    size_t cl = (size_t)b[21] | (size_t)b[22] << 8;
    if (cl > RAFT_CONF_MAX_BYTES)
        return -QERR_CORRUPT;
    size_t more = cl + (b[4] == MSNAP_VERSION_TAGGED ? 1 : 0);
    if ((rc = snap_reader_get(r, b + MSNAP_HEAD, more)))
        return rc;
    *tag = b[4] == MSNAP_VERSION_TAGGED ? b[MSNAP_HEAD + cl] : 0;
    if (b[4] == MSNAP_VERSION_TAGGED && *tag == 0)
        return -QERR_CORRUPT;    /* a tagged header always carries a nonzero tag */
    memset(m, 0, sizeof(*m));
    m->index = le_get64(b + 5);
    m->term = le_get64(b + 13);
    return raft_conf_decode(b + MSNAP_HEAD, cl, &m->conf) < 0 ? -QERR_CORRUPT : 0;
}

/* Replaces g's state machine with the snapshot file info (checking its CRCs and metadata
 * header); *meta gets the header. On error the state machine may hold a partial state. */
static int restore_file(mgroup_t *g, const snapshot_info_t *info, raft_snap_meta_t *meta,
                        char **errmsg)
{
    snap_reader_t *r = NULL;
    char *why = NULL;
    uint8_t tag = 0;
    int rc = snapshot_reader_open(info, &r, errmsg);
    if (rc)
        return rc;
    rc = get_meta(r, meta, &tag);
    if (rc == 0 && (meta->index != info->index || meta->term != info->term))
        rc = -QERR_CORRUPT;
    if (rc)
        qerr_set_msg(errmsg, "%s: bad metadata header (%s)", info->path, qerr_str(rc));
    if (rc == 0) {
        restoring_tag = tag;
        rc = g->ops->restore(g->ctx, r);
        restoring_tag = 0;
        if (rc)
            qerr_set_msg(errmsg, "%s: the state machine refused it: %s", info->path,
                         qerr_str(rc));
    }
    int vrc = snapshot_reader_close(r, &why);
    if (rc == 0 && vrc) {
        rc = vrc;
        qerr_set_msg(errmsg, "%s", why ? why : "snapshot: stream check failed");
    }
    free(why);
    return rc;
}

/* raft's snap_read: reads the group's current snapshot file (loop thread only). */
static int snap_read_cb(void *ctx, uint64_t index, uint64_t off, void *buf, size_t cap,
                        size_t *got)
{
    mgroup_t *g = ctx;
    size_t total = 0;
    *got = 0;
    if (!g->snap.path || g->snap.index != index)
        return -QERR_NOTFOUND;
    while (total < cap) {
        size_t k = 0;
        int rc = snapshot_read_chunk(&g->snap, off + total, (uint8_t *)buf + total,
                                     cap - total, &k);
        if (rc)
            return rc;
        if (k == 0)
            break;
        total += k;
    }
    *got = total;
    return 0;
}

/* ---- completing work ------------------------------------------------------------------- */

static void prop_free(prop_t *p)
{
    if (p->kind != P_REMOTE)
        pthread_cond_destroy(&p->cv);
    free(p);
}

/* Sends a forwarding message; loop thread. Returns the transport's verdict. */
static int send_fwd(mraft_node_t *n, uint64_t to, const frame_fwd_t *f)
{
    if (!n->tr.send_fwd)
        return -QERR_CLOSED;
    int rc = n->tr.send_fwd(n->tr.ctx, to, f);
    if (rc == 0) {
        n->st.fwd_out++;
        n->fwd_flush = true;
    }
    return rc;
}

/* Answers the node that forwarded p how it ended (a lost answer leaves the requester
 * waiting until its own timeout: the outcome is unknown to it). */
static void answer_remote(mraft_node_t *n, const prop_t *p, int rc)
{
    frame_fwd_t r = { .kind = FWD_RESULT, .group = p->group, .req = p->req,
                      .attempt = p->attempt, .rc = rc, .leader = p->leader };
    if (rc == 0) {
        r.index = p->index;
        r.term = p->term;
        r.res = p->res;
    }
    (void)send_fwd(n, p->peer, &r);
}

/* Answers that say a forwarded or local P_ANY command was certainly not appended (or was
 * dropped from the log): it is tried again, following the leader. */
static bool fwd_retryable(int rc)
{
    return rc == -QERR_NOTLEADER || rc == -QERR_DROPPED || rc == -QERR_BUSY ||
           rc == -QERR_TRANSFER || rc == -QERR_CLOSED;
}

/* Puts P_ANY proposal p on its group's forwarding list, to be routed at tick n->ticks +
 * delay, first to `hint` if nonzero. */
static void reroute(mraft_node_t *n, prop_t *p, uint64_t hint, uint64_t delay)
{
    mgroup_t *g = find_group(n, p->group);
    ASSERT(g && p->kind == P_ANY);
    p->fstate = F_ROUTE;
    p->peer = hint == n->cfg.id ? 0 : hint;
    p->retry_at = n->ticks + delay;
    p->next = g->fwds;
    g->fwds = p;
}

static void finish_prop(mraft_node_t *n, prop_t *p, int rc)
{
    if (p->kind == P_REMOTE) {
        answer_remote(n, p, rc);
        prop_free(p);
        return;
    }
    if (p->kind == P_ANY && fwd_retryable(rc)) {
        reroute(n, p, rc == -QERR_NOTLEADER ? p->leader : 0,
                rc == -QERR_BUSY || rc == -QERR_TRANSFER ? 1 : 0);
        return;
    }
    p->rc = rc;
    p->next = n->fin_props;
    n->fin_props = p;
}

static void finish_read(mraft_node_t *n, rreq_t *q, int rc)
{
    q->rc = rc;
    q->next = n->fin_reads;
    n->fin_reads = q;
}

/* Hands a finished item to its waiter, or frees it if the waiter gave up. n->mu held. */
static void prop_done_locked(prop_t *p)
{
    if (p->abandoned || p->kind == P_REMOTE) {
        prop_free(p);
        return;
    }
    p->done = true;
    pthread_cond_signal(&p->cv);
}

static void read_done_locked(rreq_t *q)
{
    if (q->abandoned) {
        pthread_cond_destroy(&q->cv);
        free(q);
        return;
    }
    q->done = true;
    pthread_cond_signal(&q->cv);
}

static void props_done_locked(prop_t *p, int rc)
{
    while (p) {
        prop_t *next = p->next;
        if (rc)
            p->rc = rc;
        prop_done_locked(p);
        p = next;
    }
}

static void reads_done_locked(rreq_t *q, int rc)
{
    while (q) {
        rreq_t *next = q->next;
        if (rc)
            q->rc = rc;
        read_done_locked(q);
        q = next;
    }
}

/* Completes every queued, pending and finished item (those not finished yet with rc).
 * n->mu held; the loop is not running an iteration. */
static void complete_all_locked(mraft_node_t *n, int rc)
{
    props_done_locked(n->sub_props, rc);
    n->sub_props = n->sub_props_tail = NULL;
    reads_done_locked(n->sub_reads, rc);
    n->sub_reads = n->sub_reads_tail = NULL;
    for (size_t i = 0; i < n->n_groups; i++) {
        mgroup_t *g = n->groups[i];
        props_done_locked(g->pend, rc);
        g->pend = g->pend_tail = NULL;
        props_done_locked(g->batch, rc);
        g->batch = g->batch_tail = NULL;
        g->batch_n = 0;
        reads_done_locked(g->reads, rc);
        g->reads = NULL;
        props_done_locked(g->fwds, rc);
        g->fwds = NULL;
    }
    props_done_locked(n->fin_props, 0);
    n->fin_props = NULL;
    reads_done_locked(n->fin_reads, 0);
    n->fin_reads = NULL;
}

/* ---- proposals ------------------------------------------------------------------------- */

/* Inserts p into g's pending list, kept sorted by index (a new leadership can reuse lower
 * indexes than an older pending proposal's; those are dropped when they apply). */
static void pend_insert(mgroup_t *g, prop_t *p)
{
    p->next = NULL;
    if (!g->pend_tail || g->pend_tail->index <= p->index) {
        if (g->pend_tail)
            g->pend_tail->next = p;
        else
            g->pend = p;
        g->pend_tail = p;
        return;
    }
    prop_t **pp = &g->pend;
    while ((*pp)->index <= p->index)
        pp = &(*pp)->next;
    p->next = *pp;
    *pp = p;
}

/* Proposes membership change p (P_CONF) on its group: pending until its CONF entry applies
 * here, or finished at once with the core's refusal. A PROMOTE or ADD_VOTER of a server
 * already STAGING is not proposed again: it finishes with 0 at once, and the caller waits for
 * the leader's promotion as after its own change (mraft_change_member). */
static void submit_conf(mraft_node_t *n, prop_t *p)
{
    mgroup_t *g = find_group(n, p->group);
    ASSERT(g);   /* checked by mraft_change_member */
    raft_prop_info_t info = { 0 };
    int rc = raft_propose_conf(g->r, p->conf_op, p->conf_id, &info);
    if (rc == 0) {
        p->index = info.index;
        p->term = info.term;
        pend_insert(g, p);
        return;
    }
    if (rc == -QERR_EXISTS &&
        (p->conf_op == RAFT_CONF_PROMOTE || p->conf_op == RAFT_CONF_ADD_VOTER) &&
        raft_conf_role(raft_conf(g->r), p->conf_id) == RAFT_STAGING)
        rc = 0;
    p->leader = info.leader;
    finish_prop(n, p, rc);
}

static void submit_props(mraft_node_t *n, prop_t *list)
{
    prop_t *confs = NULL, **ct = &confs;
    while (list) {
        prop_t *p = list;
        list = p->next;
        mgroup_t *g = find_group(n, p->group);
        ASSERT(g);   /* checked by mraft_propose */
        p->next = NULL;
        if (p->kind == P_CONF) {     /* proposed after the commands, one by one */
            *ct = p;
            ct = &p->next;
            continue;
        }
        if (g->batch_tail)
            g->batch_tail->next = p;
        else
            g->batch = p;
        g->batch_tail = p;
        g->batch_n++;
    }
    for (size_t i = 0; i < n->n_groups; i++) {
        mgroup_t *g = n->groups[i];
        if (!g->batch_n)
            continue;
        if (g->batch_n > n->iov_cap) {
            n->iov_cap = g->batch_n * 2;
            n->iov = xrealloc(n->iov, n->iov_cap * sizeof(*n->iov));
        }
        /* the leader stamps what it is about to append (sm_ops_t.stamp), its own proposals
         * and forwarded ones alike; a follower's batch is refused below, unstamped */
        bool stamp = false;
        if (g->ops->stamp) {
            raft_status_t st;
            raft_status(g->r, &st);
            stamp = st.role == RAFT_LEADER;
        }
        size_t k = 0;
        for (prop_t *p = g->batch; p; p = p->next) {
            if (stamp)
                g->ops->stamp(g->ctx, p->cmd, p->len);
            n->iov[k++] = (raft_iov_t){ .data = p->cmd, .len = p->len };
        }
        ASSERT(k == g->batch_n);
        raft_prop_info_t info = { 0 };
        int rc = raft_propose_batch(g->r, n->iov, k, &info);
        prop_t *p = g->batch;
        g->batch = g->batch_tail = NULL;
        g->batch_n = 0;
        for (uint64_t j = 0; p; j++) {
            prop_t *next = p->next;
            if (rc == 0) {
                p->index = info.index + j;
                p->term = info.term;
                pend_insert(g, p);
            } else {
                p->leader = info.leader;
                finish_prop(n, p, rc);
            }
            p = next;
        }
    }
    while (confs) {
        prop_t *p = confs;
        confs = p->next;
        p->next = NULL;
        submit_conf(n, p);
    }
}

/* A node that does not lead g can learn that a pending proposal's entry was overwritten
 * (another term at its index, or the log cut below it): it will never apply. A leader never
 * truncates its own log, so while leading nothing is dropped. */
static void drop_lost(mraft_node_t *n, mgroup_t *g)
{
    raft_status_t st;
    if (!g->pend)
        return;
    raft_status(g->r, &st);
    if (st.role == RAFT_LEADER)
        return;
    prop_t **pp = &g->pend, *last = NULL;
    while (*pp) {
        prop_t *p = *pp;
        uint64_t t = 0;
        int rc = raft_log_term(g->r, p->index, &t);
        if ((rc == 0 && t != p->term) || rc == -QERR_UNAVAILABLE) {
            *pp = p->next;
            finish_prop(n, p, -QERR_DROPPED);
            continue;
        }
        last = p;
        pp = &p->next;
    }
    g->pend_tail = last;
}

/* ---- forwarding ------------------------------------------------------------------------ */

/* Takes one received forwarding message. A PROPOSE becomes a P_REMOTE proposal appended to
 * *remote (proposed with this iteration's batch: a node that does not lead answers
 * NOTLEADER from there); a RESULT settles the P_ANY proposal it names, if still here. */
static void take_fwd(mraft_node_t *n, fwdin_t *x, prop_t ***remote)
{
    const frame_fwd_t *f = &x->f;
    mgroup_t *g = find_group(n, f->group);
    if (f->kind == FWD_PROPOSE) {
        n->st.fwd_served++;
        prop_t q = { .kind = P_REMOTE, .group = f->group, .req = f->req,
                     .attempt = f->attempt, .peer = x->from };
        int rc = !g ? -QERR_NOTFOUND : f->len > n->cfg.max_cmd ? -QERR_TOOBIG : 0;
        if (rc) {
            answer_remote(n, &q, rc);
            return;
        }
        prop_t *p = xcalloc(1, sizeof(*p) + f->len);
        *p = q;
        p->len = f->len;
        if (f->len)
            memcpy(p->cmd, f->cmd, f->len);
        **remote = p;
        *remote = &p->next;
        return;
    }
    ASSERT(f->kind == FWD_RESULT);   /* frame_fwd_decode admits no other kind */
    if (!g)
        return;
    prop_t **pp = &g->fwds;
    while (*pp && (*pp)->req != f->req)
        pp = &(*pp)->next;
    prop_t *p = *pp;
    if (!p || p->fstate == F_APPLY)
        return;                      /* a late or repeated answer */
    if (f->rc == 0) {
        /* applied on the leader (even if from an earlier attempt): wait to apply it here */
        p->fstate = F_APPLY;
        p->index = f->index;
        p->term = f->term;
        p->res = f->res;
        return;
    }
    if (p->fstate != F_SENT || f->attempt != p->attempt)
        return;                      /* an error about an attempt already given up */
    if (fwd_retryable(f->rc)) {
        uint64_t hint = f->leader != x->from ? f->leader : 0;
        p->fstate = F_ROUTE;
        p->peer = hint == n->cfg.id ? 0 : hint;
        p->retry_at = n->ticks + (p->peer ? 0 : 1);
        return;
    }
    *pp = p->next;
    p->rc = f->rc;
    p->next = n->fin_props;
    n->fin_props = p;
}

/* Sends g's P_ANY proposals that are due to the leader (a hint first, else the leader the
 * core knows); those this node now leads itself are appended to *local to propose here. */
static void route_fwds(mraft_node_t *n, mgroup_t *g, prop_t ***local)
{
    if (!g->fwds)
        return;
    raft_status_t st;
    raft_status(g->r, &st);
    prop_t **pp = &g->fwds;
    while (*pp) {
        prop_t *p = *pp;
        if (p->fstate != F_ROUTE || n->ticks < p->retry_at) {
            pp = &p->next;
            continue;
        }
        if (st.role == RAFT_LEADER) {
            *pp = p->next;
            p->next = NULL;
            **local = p;
            *local = &p->next;
            continue;
        }
        uint64_t to = p->peer ? p->peer : st.leader;
        if (!n->tr.send_fwd && to) {
            *pp = p->next;
            p->leader = to;
            p->rc = -QERR_NOTLEADER;
            p->next = n->fin_props;
            n->fin_props = p;
            continue;
        }
        if (!p->req)
            p->req = ++n->fwd_seq;
        frame_fwd_t m = { .kind = FWD_PROPOSE, .group = g->id, .req = p->req,
                          .attempt = p->attempt + 1, .cmd = p->cmd, .len = p->len };
        if (!to || to == n->cfg.id || send_fwd(n, to, &m) < 0) {
            p->peer = 0;                 /* no leader known, or not reachable: next tick */
            p->retry_at = n->ticks + 1;
        } else {
            p->attempt++;
            p->fstate = F_SENT;
            p->peer = to;
        }
        pp = &p->next;
    }
}

/* Finishes g's forwarded proposals whose entry this node has now applied. */
static void complete_fwds(mraft_node_t *n, mgroup_t *g)
{
    prop_t **pp = &g->fwds;
    while (*pp) {
        prop_t *p = *pp;
        if (p->fstate == F_APPLY && p->index <= g->applied) {
            *pp = p->next;
            p->rc = 0;
            p->next = n->fin_props;
            n->fin_props = p;
            continue;
        }
        pp = &p->next;
    }
}

/* ---- reads ----------------------------------------------------------------------------- */

/* (Re)issues g's reads that are due, ALL UNDER ONE NEW READ ID: one raft_read_index per
 * group per iteration, however many reads are due, so N reads waiting on a follower cost
 * one READ_INDEX round trip to the leader instead of N (and one pending read on a leader).
 *
 * Why sharing is linearizable: only reads already registered in g->reads take the new id,
 * and the id is fresh (never one issued before any of them was registered). The leader
 * answers with its commit index as of when it handled the request, which was sent after
 * every read of the batch began, so that index is >= the commit index at each read's start
 * (thesis §6.4). take_read_states completes every read carrying the id with it, or puts
 * them all back to be issued again on an error.
 *
 * A read is due when it is new (R_ISSUE, retry_at 0), when it waits to be retried (R_ISSUE,
 * no leader was known), or when it was sent and got no answer: a read sent to a leader
 * that gets no answer (lost, or the leader died) is asked again under a new id after two
 * election timeouts; but once the core names another leader than the one it went to (a new
 * term's leader, or none while this node campaigns), it is asked again at once: a follower
 * keeps the dead leader as its leader until its own election timer fires, and a read sent
 * there meanwhile is never answered, so waiting out the two election timeouts would stall
 * the read (a lookup on a follower's mount) well after a new leader serves (up to 4 s with
 * the defaults, near the 5 s timeout). A read asked again takes the new id: a late answer
 * to its old one is ignored. (Reads that shared an id share retry_at and the leader asked,
 * so they fall due together and stay one batch.) */
static void issue_reads(mraft_node_t *n, mgroup_t *g)
{
    if (!g->reads)
        return;
    raft_status_t st;
    raft_status(g->r, &st);
    uint64_t id = 0, to = 0;
    int rc = 0;
    for (rreq_t *q = g->reads; q; q = q->next) {
        if (q->state == R_WAIT)
            continue;
        if (n->ticks < q->retry_at && !(q->state == R_SENT && st.leader != q->to))
            continue;
        if (id == 0) {            /* the first read due: ask once for the whole batch */
            id = ++n->read_seq;
            rc = raft_read_index(g->r, id, &to);
        }
        q->id = id;
        if (rc == 0) {
            q->state = R_SENT;
            q->to = to;
            q->retry_at = n->ticks + 2ull * n->cfg.election_tick;
        } else {
            q->state = R_ISSUE;   /* no leader known yet */
            q->retry_at = n->ticks + 1;
        }
    }
}

/* Hands the Ready's read states to g's reads: every read sent under a state's id (a batch,
 * issue_reads) waits to apply its index, or is issued again next tick on an error. */
static void take_read_states(mraft_node_t *n, mgroup_t *g, const raft_read_state_t *rs,
                             size_t k)
{
    for (size_t i = 0; i < k; i++)
        for (rreq_t *q = g->reads; q; q = q->next) {
            if (q->state != R_SENT || q->id != rs[i].id)
                continue;
            if (rs[i].err) {
                q->state = R_ISSUE;
                q->retry_at = n->ticks + 1;
            } else {
                q->state = R_WAIT;
                q->index = rs[i].index;
            }
        }
}

static void complete_reads(mraft_node_t *n, mgroup_t *g)
{
    rreq_t **pp = &g->reads;
    while (*pp) {
        rreq_t *q = *pp;
        if (q->state == R_WAIT && q->index <= g->applied) {
            *pp = q->next;
            finish_read(n, q, 0);
            continue;
        }
        pp = &q->next;
    }
}

/* ---- apply, install, snapshot ---------------------------------------------------------- */

static void apply_entries(mraft_node_t *n, mgroup_t *g, const raft_entry_t *e, size_t k)
{
    for (size_t i = 0; i < k; i++, e++) {
        ASSERT_MSG(e->index == g->applied + 1, "group %u applies %" PRIu64 " after %" PRIu64,
                   g->id, e->index, g->applied);
        prop_t *target = NULL;
        while (g->pend && g->pend->index <= e->index) {
            prop_t *p = g->pend;
            g->pend = p->next;
            if (!g->pend)
                g->pend_tail = NULL;
            /* installs settle the proposals they cover, so none is left behind */
            ASSERT(p->index == e->index);
            /* (index, term) names one entry: its type matches what was proposed */
            if (!target && p->term == e->term &&
                e->type == (p->kind == P_CONF ? RAFT_ENTRY_CONF : RAFT_ENTRY_NORMAL))
                target = p;
            else
                finish_prop(n, p, -QERR_DROPPED);
        }
        if (e->type == RAFT_ENTRY_NORMAL) {
            ASSERT(!target || target->kind != P_CONF);
            if (target)
                memset(&target->res, 0, sizeof(target->res));
            g->ops->apply(g->ctx, e->index, e->data, e->len, target ? &target->res : NULL);
        } else if (e->type == RAFT_ENTRY_CONF) {
            int rc = raft_conf_decode(e->data, e->len, &g->applied_conf);
            ASSERT_MSG(rc == 0, "group %u: configuration entry %" PRIu64 " does not decode",
                       g->id, e->index);
        }
        if (target)
            finish_prop(n, target, 0);
        g->applied = e->index;
        g->applied_bytes += e->len + RAFT_ENTRY_OVERHEAD;
        n->st.applied++;
    }
    __atomic_store_n(&g->applied_pub, g->applied, __ATOMIC_RELEASE);
}

/* Part (b) for a received chunk: into the receive file; the last one commits the file
 * (checked, fsynced, renamed), which becomes the group's current snapshot. Chunks before
 * the last are not fsynced: after a crash the core starts the transfer over at offset 0. */
static int persist_chunk(mraft_node_t *n, mgroup_t *g, const raft_snap_chunk_t *c)
{
    char *msg = NULL;
    int rc;
    if (c->offset == 0) {
        snapshot_recv_abort(g->recv);
        g->recv = NULL;
        if ((rc = snapshot_recv_begin(g->dir, &g->recv)))
            goto fail;
    }
    ASSERT_MSG(g->recv, "group %u: snapshot chunk at offset %" PRIu64 " with none begun",
               g->id, c->offset);
    if ((rc = snapshot_recv_write(g->recv, c->offset, c->data, c->len)))
        goto fail;
    if (c->last) {
        snapshot_info_t info;
        rc = snapshot_recv_commit(g->recv, &info, &msg);
        g->recv = NULL;
        if (rc)
            goto fail;
        if (info.index != c->meta.index || info.term != c->meta.term) {
            qerr_set_msg(&msg, "received snapshot file is for index %" PRIu64 " term %"
                         PRIu64 ", not %" PRIu64 "/%" PRIu64, info.index, info.term,
                         c->meta.index, c->meta.term);
            snapshot_info_free(&info);
            rc = -QERR_CORRUPT;
            goto fail;
        }
        snapshot_info_free(&g->snap);
        g->snap = info;
    }
    return 0;
fail:
    nlog(n, "group %u: storing a received snapshot failed: %s%s%s", g->id, qerr_str(rc),
         msg ? ": " : "", msg ? msg : "");
    free(msg);
    return rc;
}

/* Part (d) for rd.snapshot: the state machine takes the received file's state. Proposals
 * waiting at indexes it covers have an unknown outcome. */
static int install(mraft_node_t *n, mgroup_t *g, const raft_snap_meta_t *m)
{
    raft_snap_meta_t fm;
    char *msg = NULL;
    ASSERT(g->snap.path && g->snap.index == m->index);
    int rc = restore_file(g, &g->snap, &fm, &msg);
    if (rc == 0 && !conf_equal(&fm.conf, &m->conf)) {
        qerr_set_msg(&msg, "configuration in the file differs from the leader's");
        rc = -QERR_CORRUPT;
    }
    if (rc) {
        nlog(n, "group %u: installing snapshot %" PRIu64 " failed: %s%s%s", g->id, m->index,
             qerr_str(rc), msg ? ": " : "", msg ? msg : "");
        free(msg);
        return rc;
    }
    while (g->pend && g->pend->index <= m->index) {
        prop_t *p = g->pend;
        g->pend = p->next;
        finish_prop(n, p, -QERR_TIMEOUT);
    }
    if (!g->pend)
        g->pend_tail = NULL;
    g->applied = m->index;
    __atomic_store_n(&g->applied_pub, g->applied, __ATOMIC_RELEASE);
    g->applied_conf = m->conf;
    g->applied_bytes = 0;
    g->installs++;
    n->st.installs++;
    return 0;
}

/* A snapshot file being made durable off the loop thread: the loop writes the state into
 * the temp file (snapshot_finish), a thread of its own fsyncs and renames it
 * (snapshot_commit, seconds for a large state on a busy disk), and the loop, seeing it done,
 * compacts the log (settle_snapshot). One at a time per node. Until it is settled nothing
 * depends on the new file: the log still holds every entry, and a crash in between is
 * repaired at open (mraft_add_group: a file newer than the store's record). */
struct snap_job {
    pthread_t th;
    mraft_node_t *n;
    snap_writer_t *w;
    uint32_t group;
    raft_snap_meta_t m;
    uint64_t applied_bytes;      /* the group's applied_bytes it took over; back if it fails */
    int rc;                      /* snapshot_commit's, once done */
    bool threaded;               /* th runs it (else it was committed on the loop) */
    bool done;                   /* under n->mu */
};

static void kick_locked(mraft_node_t *n);

static void *snap_commit_main(void *arg)
{
    struct snap_job *j = arg;
    int rc = snapshot_commit(j->w);
    pthread_mutex_lock(&j->n->mu);
    j->rc = rc;
    j->done = true;
    kick_locked(j->n);
    pthread_mutex_unlock(&j->n->mu);
    return NULL;
}

/* Writes a snapshot of g's state machine at its applied index into a temp file and hands it
 * to a snap_job (see there); settle_snapshot compacts once it is durable. Does nothing while
 * another job runs (maintenance asks again). A failure to write the file is logged and
 * retried later (the log still holds everything). */
static int take_snapshot(mraft_node_t *n, mgroup_t *g)
{
    if (n->snap_job)
        return 0;
    uint64_t t0 = now_ns();
    raft_snap_meta_t m = { .index = g->applied, .conf = g->applied_conf };
    snap_writer_t *w = NULL;
    raft_status_t st;
    raft_status(g->r, &st);
    ASSERT(st.applied == g->applied);
    if (g->applied <= st.snap_index)
        return 0;
    int rc = raft_log_term(g->r, m.index, &m.term);
    ASSERT(rc == 0);
    if ((rc = snapshot_begin(g->dir, m.index, m.term, &w)) == 0) {
        if ((rc = put_meta(w, &m, n->cfg.snap_tag)) == 0)
            rc = g->ops->snapshot(g->ctx, w);
        if (rc == 0)
            rc = snapshot_finish(w);
        if (rc)
            snapshot_abort(w);
    }
    struct snap_job *j = rc ? NULL : calloc(1, sizeof(*j));
    if (!rc && !j) {
        snapshot_abort(w);
        rc = -QERR_NOMEM;
    }
    if (rc) {
        nlog(n, "group %u: snapshot at %" PRIu64 " failed (%s); will retry, the log keeps "
             "everything", g->id, m.index, qerr_str(rc));
        g->snap_retry_at = n->ticks + SNAP_RETRY_TICKS;
        n->t_snaps += now_ns() - t0;
        return 0;
    }
    *j = (struct snap_job){ .n = n, .w = w, .group = g->id, .m = m,
                            .applied_bytes = g->applied_bytes };
    g->applied_bytes = 0;
    n->snap_job = j;
    j->threaded = pthread_create(&j->th, NULL, snap_commit_main, j) == 0;
    if (!j->threaded) {
        j->rc = snapshot_commit(w);        /* no thread: durable here, settled at once */
        j->done = true;
    }
    n->t_snaps += now_ns() - t0;
    return 0;
}

/* Once the job's file is durable: compacts the core's log and the store up to it (the
 * store's record rides on the next batch's fsync) and makes it the group's snapshot. A
 * failed job is logged and retried later; one overtaken by a received snapshot (installed
 * meanwhile, at or past its index) is dropped with its file. Returns 0, or the store's
 * -QERR_* that fails the node. */
static int settle_snapshot(mraft_node_t *n)
{
    struct snap_job *j = n->snap_job;
    if (!j)
        return 0;
    pthread_mutex_lock(&n->mu);
    bool done = j->done;
    pthread_mutex_unlock(&n->mu);
    if (!done)
        return 0;
    if (j->threaded)
        pthread_join(j->th, NULL);
    n->snap_job = NULL;
    mgroup_t *g = find_group(n, j->group);
    raft_snap_meta_t m = j->m, rm;
    int rc = j->rc;
    uint64_t bytes = j->applied_bytes;
    free(j);
    ASSERT(g);
    if (rc) {
        nlog(n, "group %u: snapshot at %" PRIu64 " failed (%s); will retry, the log keeps "
             "everything", g->id, m.index, qerr_str(rc));
        g->snap_retry_at = n->ticks + SNAP_RETRY_TICKS;
        g->applied_bytes += bytes;
        return 0;
    }
    raft_status_t st;
    raft_status(g->r, &st);
    if (m.index <= st.snap_index) {
        snapshot_prune(g->dir, st.snap_index);
        return 0;
    }
    rc = raft_compact(g->r, m.index, NULL);
    ASSERT(rc == 0);
    raft_snapshot_meta(g->r, &rm);
    ASSERT_MSG(rm.index == m.index && rm.term == m.term && conf_equal(&rm.conf, &m.conf),
               "group %u: the applied configuration differs from the core's at %" PRIu64,
               g->id, m.index);
    if ((rc = rstore_compact(n->store, g->id, &rm)))
        return rc;
    n->dirty = true;
    char *msg = NULL;
    snapshot_info_free(&g->snap);
    if ((rc = snapshot_open_read(g->dir, &g->snap, &msg)) || g->snap.index != m.index) {
        nlog(n, "group %u: cannot read back snapshot %" PRIu64 ": %s", g->id, m.index,
             msg ? msg : qerr_str(rc));
        free(msg);
        return rc ? rc : -QERR_CORRUPT;
    }
    g->snapshots++;
    n->st.snapshots++;
    return 0;
}

/* ---- the loop --------------------------------------------------------------------------- */

/* Notes a snapshot chunk sent to m->to (the progress mraft_status shows). */
static void note_snap_chunk(mgroup_t *g, const raft_msg_t *m)
{
    struct snap_out *o = NULL;
    for (size_t i = 0; i < RAFT_MAX_SERVERS && !o; i++)
        if (g->snap_out[i].id == m->to)
            o = &g->snap_out[i];
    /* else a free slot, or one of a server no longer in the configuration */
    for (size_t i = 0; i < RAFT_MAX_SERVERS && !o; i++)
        if (g->snap_out[i].id == 0 || raft_conf_role(raft_conf(g->r), g->snap_out[i].id) == 0)
            o = &g->snap_out[i];
    if (!o)
        return;   /* RAFT_MAX_SERVERS slots hold every member: cannot happen */
    o->id = m->to;
    o->index = m->snap.index;
    o->sent = m->offset + m->len;
    o->total = g->snap.path && g->snap.index == m->snap.index ? g->snap.file_size : 0;
}

static void send_all(mraft_node_t *n, mgroup_t *g, const raft_msg_t *m, size_t k)
{
    for (size_t i = 0; i < k; i++) {
        if (m[i].type == RAFT_MSG_SNAPSHOT)
            note_snap_chunk(g, &m[i]);
        n->tr.send(n->tr.ctx, m[i].to, g->id, &m[i]);
    }
    n->st.msgs_sent += k;
}

/* Publishes g's lease for the leader fast path of read barriers. The core answers a read
 * at once, at its commit index, while its lease holds and an entry of its term is
 * committed, for lease_read_ticks more ticks of its clock; the k-th tick from now is due at
 * next_tick_ns + (k - 1) * tick_ns on the tick clock, so before that instant the core
 * (however late its ticks) would still answer so. Called with g's state as it is before
 * anything g sends next goes out: right after raft_ready (before (a)), and at the end of
 * each iteration. So a TimeoutNow, which voids the lease, never leaves before the lease is
 * withdrawn here; and every index acknowledged anywhere (a local apply, a RESULT, or a
 * follower's apply of a commit index this leader sent) is <= the published commit.
 * A lease that merely ends needs no call: the instant passes. */
static void publish_lease(mraft_node_t *n, mgroup_t *g, const raft_status_t *s)
{
    if (!s->lease_read_ticks) {
        __atomic_store_n(&g->lease_until_ns, 0, __ATOMIC_RELEASE);
        return;
    }
    __atomic_store_n(&g->lease_commit, s->commit, __ATOMIC_RELEASE);
    __atomic_store_n(&g->lease_until_ns, n->next_tick_ns + (s->lease_read_ticks - 1) * n->tick_ns,
                     __ATOMIC_RELEASE);
}

/* mraft_config_t.test_hold_after_timeout_now_ms (tests only). */
static void test_hold_after_timeout_now(mraft_node_t *n, const raft_ready_t *rd)
{
    for (size_t i = 0; i < rd->n_msgs; i++)
        if (rd->msgs[i].type == RAFT_MSG_TIMEOUT_NOW) {
            uint64_t ms = n->cfg.test_hold_after_timeout_now_ms;
            struct timespec z = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
            nanosleep(&z, NULL);
            return;
        }
}

/* The Ready phase over every group: (a) and (b) for all, ONE rstore_sync, then (c), (d) and
 * advance for all. Returns 0 or the -QERR_* that fails the node. */
static int process_readies(mraft_node_t *n)
{
    bool need_sync = false, any = false;
    int rc;
    for (size_t i = 0; i < n->n_groups; i++) {
        mgroup_t *g = n->groups[i];
        if (!raft_has_ready(g->r))
            continue;
        raft_ready(g->r, &g->rd);
        g->has_rd = any = true;
        raft_status_t st;
        raft_status(g->r, &st);
        publish_lease(n, g, &st);
        const raft_ready_t *rd = &g->rd;
        send_all(n, g, rd->msgs, rd->n_msgs);                                   /* (a) */
        if (n->cfg.test_hold_after_timeout_now_ms)
            test_hold_after_timeout_now(n, rd);
        if (rd->snap_chunk &&                                                  /* (b) */
            (rc = TIMED(n->t_chunks, persist_chunk(n, g, rd->snap_chunk))))
            return rc;
        if (rd->snapshot || rd->n_entries || rd->hs_changed) {
            if ((rc = TIMED(n->t_write, rstore_save(n->store, g->id, rd))))
                return rc;
            n->dirty = true;
            n->st.persists++;
            n->st.entries += rd->n_entries;
        }
        /* Entries, an installed snapshot, and a new term or vote must be durable before
         * anything is sent that promises them. A hard state whose commit alone moved is a
         * hint (raft.h: "may lag; never ahead") and rides on the next fsync. */
        if (rd->snapshot || rd->n_entries ||
            (rd->hs_changed && (rd->hs.term != g->hs_saved.term ||
                                rd->hs.vote != g->hs_saved.vote)) ||
            (rd->n_msgs_after_persist && n->dirty))
            need_sync = true;
        if (rd->hs_changed)
            g->hs_saved = rd->hs;
    }
    if (!any)
        return 0;
    if (need_sync) {
        if ((rc = TIMED(n->t_sync, rstore_sync(n->store))))
            return rc;
        n->st.syncs++;
        n->dirty = false;
    }
    for (size_t i = 0; i < n->n_groups; i++) {
        mgroup_t *g = n->groups[i];
        if (!g->has_rd)
            continue;
        const raft_ready_t *rd = &g->rd;
        send_all(n, g, rd->msgs_after_persist, rd->n_msgs_after_persist);      /* (c) */
        if (rd->snapshot && (rc = TIMED(n->t_installs, install(n, g, rd->snapshot)))) /* (d) */
            return rc;
        uint64_t ta = now_ns();
        apply_entries(n, g, rd->committed, rd->n_committed);
        n->t_apply += now_ns() - ta;
        take_read_states(n, g, rd->reads, rd->n_reads);
        raft_advance(g->r, &g->rd);
        g->has_rd = false;
        raft_status_t st;
        raft_status(g->r, &st);
        ASSERT_MSG(st.applied == g->applied && g->applied <= st.commit &&
                   st.snap_index <= g->applied,
                   "group %u: applied %" PRIu64 ", core says applied %" PRIu64 " commit %"
                   PRIu64 " snapshot %" PRIu64, g->id, g->applied, st.applied, st.commit,
                   st.snap_index);
        ASSERT(!g->pend || g->pend->index > g->applied);   /* everything applied settled */
        complete_reads(n, g);
    }
    if (n->tr.flush)
        n->tr.flush(n->tr.ctx);
    n->fwd_flush = false;
    return 0;
}

/* Snapshots groups past snapshot_bytes; collects the store's old segments once it has grown
 * by gc_bytes, snapshotting the groups that hold them back. */
static int maintenance(mraft_node_t *n)
{
    int rc;
    if ((rc = TIMED(n->t_gc, settle_snapshot(n))))
        return rc;
    rstore_stats_t ss;
    rstore_get_stats(n->store, &ss);
    if (ss.wal.bytes >= n->gc_mark + n->cfg.gc_bytes) {
        uint32_t blocking[GC_FORCE_SNAPSHOTS];
        size_t nb = 0;
        /* rstore_gc deletes the segments that compaction records made unneeded, judging
         * from the store's memory: those records must be durable first, or a crash would
         * leave a log with entries missing after a snapshot it never recorded (refused at
         * open). A snapshot being made durable has no record yet: nothing of it counts. */
        if (n->dirty) {
            if ((rc = rstore_sync(n->store)))
                return rc;
            n->dirty = false;
        }
        if ((rc = TIMED(n->t_gc, rstore_gc(n->store, blocking, GC_FORCE_SNAPSHOTS, &nb))))
            return rc;
        n->st.gcs++;
        rstore_get_stats(n->store, &ss);
        n->gc_mark = ss.wal.bytes;
        /* the groups holding old segments back get the next snapshot jobs, first */
        for (size_t i = 0; i < nb && i < GC_FORCE_SNAPSHOTS; i++) {
            mgroup_t *g = find_group(n, blocking[i]);
            if (g)
                g->gc_due = true;
        }
    }
    if (n->snap_job)
        return 0;                  /* one job at a time (take_snapshot) */
    /* the next job: a group the collection waits for, else the next group past
     * snapshot_bytes after the last one snapshotted (round robin: none starves) */
    for (size_t k = 0; k < n->n_groups; k++) {
        mgroup_t *g = n->groups[(n->snap_next + k) % n->n_groups];
        if (g->gc_due && n->ticks >= g->snap_retry_at) {
            g->gc_due = false;
            n->snap_next = (n->snap_next + k + 1) % n->n_groups;
            return take_snapshot(n, g);
        }
    }
    for (size_t k = 0; k < n->n_groups; k++) {
        mgroup_t *g = n->groups[(n->snap_next + k) % n->n_groups];
        if (g->applied_bytes >= n->cfg.snapshot_bytes && n->ticks >= g->snap_retry_at) {
            n->snap_next = (n->snap_next + k + 1) % n->n_groups;
            return take_snapshot(n, g);
        }
    }
    return 0;
}

/* Leader balancing (mraft_members_t.preferred), once per tick per group: first settles the
 * transfer this loop started (the core clears its target when the transfer ends: this node
 * no longer leading means it went through; still leading means the core aborted it after an
 * election timeout, and the target is left alone for backoff_ticks), then starts one if this
 * node leads and the preferred leader is a voter that is up, active and within BALANCE_LAG
 * entries of the leader's log, and this node runs fewer than BALANCE_CONCURRENT transfers (and the leader's commit as near its last entry). Not "fully
 * caught up": under a steady load the log always has entries in flight, and a transfer
 * that waited for a quiet tick never started. The core refuses proposals while a transfer
 * runs (callers retry them) and brings the target up to date before TimeoutNow, so the
 * lag is made up at once (thesis §3.10). */
#define BALANCE_LAG 16
#define BALANCE_CONCURRENT 1
static void balance(mraft_node_t *n, mgroup_t *g, int *running)
{
    raft_status_t st;
    raft_status(g->r, &st);
    if (g->bal_target) {
        if (st.role == RAFT_LEADER && st.transfer_target == g->bal_target)
            return;                                   /* still running */
        if (st.role == RAFT_LEADER) {
            g->bad_target = g->bal_target;
            g->bad_until = n->ticks + n->backoff_ticks;
            g->transfers_failed++;
            nlog(n, "group %u: leadership transfer to %" PRIu64 " failed; not retried for "
                 "%u ms", g->id, g->bal_target, n->cfg.balance_backoff_ms);
        }
        g->bal_target = 0;
        --*running;
    }
    if (st.role == RAFT_LEADER && st.term != g->bal_term) {
        /* newly leader: wait one balancing period before handing leadership on, so that
         * two nodes whose views of the preferred leader differ for a moment (one applied a
         * drain, the other not yet) do not pass it back and forth */
        g->bal_term = st.term;
        g->bal_next = n->ticks + n->balance_ticks;
    }
    uint64_t to = __atomic_load_n(&g->preferred, __ATOMIC_RELAXED);
    if (!to || to == n->cfg.id || st.role != RAFT_LEADER || st.transfer_target ||
        *running >= BALANCE_CONCURRENT ||
        n->ticks < g->bal_next || (to == g->bad_target && n->ticks < g->bad_until) ||
        st.commit + BALANCE_LAG < st.last_index ||
        raft_conf_role(raft_conf(g->r), to) != RAFT_VOTER)
        return;
    raft_progress_t p;
    if (raft_progress(g->r, to, &p) || p.match + BALANCE_LAG < st.last_index ||
        !p.recent_active)
        return;
    if (n->tr.peer_up && !n->tr.peer_up(n->tr.ctx, to))
        return;
    g->bal_next = n->ticks + n->balance_ticks;
    if (raft_transfer(g->r, to) == 0) {
        g->bal_target = to;
        g->transfers++;
        ++*running;
    }
}

static int iterate(mraft_node_t *n, size_t n_in, prop_t *props, rreq_t *reads,
                   fwdin_t *fwds)
{
    n->st.loops++;
    /* every owed tick, one by one, before any message is stepped (raft.h, raft_tick) */
    bool ticked = false;
    for (uint64_t t = tick_now_ns(); t >= n->next_tick_ns; n->next_tick_ns += n->tick_ns) {
        for (size_t i = 0; i < n->n_groups; i++)
            raft_tick(n->groups[i]->r);
        n->ticks++;
        n->st.ticks++;
        ticked = true;
    }
    for (size_t i = 0; i < n_in; i++) {
        inmsg_t *x = &n->work[i];
        mgroup_t *g = find_group(n, x->group);
        if (!g || raft_step(g->r, &x->m) < 0)
            n->st.msgs_dropped++;
        raft_msg_free(&x->m);
    }
    n->st.msgs_recv += n_in;
    /* forwarded proposals join this iteration's batch, after the local ones */
    prop_t **tail = &props;
    while (*tail)
        tail = &(*tail)->next;
    while (fwds) {
        fwdin_t *x = fwds;
        fwds = x->next;
        n->st.fwd_in++;
        take_fwd(n, x, &tail);
        frame_fwd_free(&x->f);
        free(x);
    }
    submit_props(n, props);
    /* P_ANY proposals refused here (not the leader) or due again go to the leader */
    prop_t *local = NULL, **lt = &local;
    for (size_t i = 0; i < n->n_groups; i++)
        route_fwds(n, n->groups[i], &lt);
    if (local)
        submit_props(n, local);
    while (reads) {
        rreq_t *q = reads;
        reads = q->next;
        mgroup_t *g = find_group(n, q->group);
        ASSERT(g);
        if (q->state == R_WAIT && q->index <= g->applied) {   /* a leader read, applied */
            finish_read(n, q, 0);
            continue;
        }
        if (q->state != R_WAIT) {     /* R_WAIT: a leader read's index is known already */
            q->state = R_ISSUE;
            q->retry_at = 0;
        }
        q->next = g->reads;
        g->reads = q;
    }
    /* transfers this node's balancer has running: at most BALANCE_CONCURRENT at once (a
     * group refuses proposals while its transfer runs, so many at once stall clients) */
    int running = 0;
    for (size_t i = 0; ticked && i < n->n_groups; i++)
        running += n->groups[i]->bal_target != 0;
    for (size_t i = 0; i < n->n_groups; i++) {
        issue_reads(n, n->groups[i]);
        drop_lost(n, n->groups[i]);
        if (ticked && __atomic_load_n(&n->groups[i]->preferred, __ATOMIC_RELAXED))
            balance(n, n->groups[i], &running);
    }
    int rc = process_readies(n);
    if (rc == 0)
        rc = maintenance(n);
    for (size_t i = 0; i < n->n_groups; i++)
        complete_fwds(n, n->groups[i]);
    if (n->fwd_flush && n->tr.flush) {
        n->tr.flush(n->tr.ctx);
        n->fwd_flush = false;
    }
    n->busy = false;
    for (size_t i = 0; rc == 0 && i < n->n_groups && !n->busy; i++)
        n->busy = raft_has_ready(n->groups[i]->r);
    return rc;
}

/* Frees abandoned items still held in the loop's lists. n->mu held. */
static void purge_abandoned_locked(mraft_node_t *n)
{
    for (size_t i = 0; i < n->n_groups; i++) {
        mgroup_t *g = n->groups[i];
        prop_t **pp = &g->pend, *last = NULL;
        while (*pp) {
            prop_t *p = *pp;
            if (p->abandoned) {
                *pp = p->next;
                prop_done_locked(p);
                continue;
            }
            last = p;
            pp = &p->next;
        }
        g->pend_tail = last;
        pp = &g->fwds;
        while (*pp) {
            prop_t *p = *pp;
            if (p->abandoned) {
                *pp = p->next;
                prop_done_locked(p);
                continue;
            }
            pp = &p->next;
        }
        rreq_t **qq = &g->reads;
        while (*qq) {
            rreq_t *q = *qq;
            if (q->abandoned) {
                *qq = q->next;
                read_done_locked(q);
                continue;
            }
            qq = &q->next;
        }
    }
}

static void publish_locked(mraft_node_t *n)
{
    for (size_t i = 0; i < n->n_groups; i++) {
        mgroup_t *g = n->groups[i];
        raft_status_t s;
        raft_status(g->r, &s);
        publish_lease(n, g, &s);
        g->pub = (mraft_group_status_t){
            .group = g->id, .role = s.role, .leader = s.leader, .term = s.term,
            .commit = s.commit, .applied = g->applied, .last_index = s.last_index,
            .snap_index = s.snap_index, .snapshots = g->snapshots, .installs = g->installs,
            .member = raft_conf_role(raft_conf(g->r), n->cfg.id),
            .preferred = __atomic_load_n(&g->preferred, __ATOMIC_RELAXED),
            .transfers = g->transfers, .transfers_failed = g->transfers_failed,
            .conf = *raft_conf(g->r), .applied_conf = g->applied_conf };
        mraft_group_status_t *p = &g->pub;
        p->conf_pending = !conf_equal(&p->conf, &p->applied_conf);
        if (s.role != RAFT_LEADER)
            continue;
        for (uint32_t j = 0; j < p->conf.n; j++) {
            raft_progress_t pr;
            const raft_server_t *sv = &p->conf.s[j];
            if (sv->id == n->cfg.id || raft_progress(g->r, sv->id, &pr) < 0)
                continue;
            mraft_member_progress_t *mp = &p->progress[p->n_progress++];
            *mp = (mraft_member_progress_t){ .id = sv->id, .role = sv->role,
                                             .state = pr.state, .match = pr.match,
                                             .next = pr.next, .active = pr.recent_active };
            for (size_t k = 0; pr.state == RAFT_PR_SNAPSHOT && k < RAFT_MAX_SERVERS; k++)
                if (g->snap_out[k].id == sv->id) {
                    mp->snap_index = g->snap_out[k].index;
                    mp->snap_sent = g->snap_out[k].sent;
                    mp->snap_total = g->snap_out[k].total;
                }
        }
    }
    if (n->pub_waiters)
        pthread_cond_broadcast(&n->pub_cv);
    rstore_get_stats(n->store, &n->st.store);
    n->pub = n->st;
    n->pub.msgs_recv = n->recv_count;
    n->pub.msgs_dropped = n->st.msgs_dropped + n->recv_dropped;
    n->pub.failed = n->failed;
    n->pub.lease_reads = n->lease_reads;
}

/* An iteration that held the loop for SLOW_ITERATION_MS or more stalled every group of the
 * node (proposals, reads, heartbeats): logged with where its time went, at most once per
 * SLOW_LOG_EVERY_MS. */
#define SLOW_ITERATION_MS 300
#define SLOW_LOG_EVERY_MS 10000
static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void log_if_slow(mraft_node_t *n, uint64_t took_ns, uint64_t cpu_ns)
{
    if (took_ns < SLOW_ITERATION_MS * 1000000ull)
        return;
    uint64_t now = now_ns();
    if (n->slow_logged_ns && now - n->slow_logged_ns < SLOW_LOG_EVERY_MS * 1000000ull)
        return;
    n->slow_logged_ns = now;
    nlog(n, "the node loop was held %" PRIu64 " ms, %" PRIu64 " ms of it on the CPU (log writes %"
         PRIu64 " ms, log fsync %" PRIu64 " ms, received snapshot chunks %" PRIu64
         " ms, snapshot installs %" PRIu64 " ms, snapshots taken %" PRIu64 " ms, log "
         "collection and compaction %" PRIu64 " ms, applying %" PRIu64 " ms): every shard of "
         "this node waited", took_ns / 1000000, cpu_ns / 1000000, n->t_write / 1000000,
         n->t_sync / 1000000, n->t_chunks / 1000000, n->t_installs / 1000000,
         n->t_snaps / 1000000, n->t_gc / 1000000, n->t_apply / 1000000);
}

static void *loop_main(void *arg)
{
    mraft_node_t *n = arg;
    pthread_mutex_lock(&n->mu);
    for (;;) {
        uint64_t now = 0;
        while (!n->closing && (n->failed || (!n->kick && !n->busy &&
                                             (now = tick_now_ns()) < n->next_tick_ns))) {
            if (n->failed) {
                pthread_cond_wait(&n->cv, &n->mu);
            } else if (n->tr.poll) {
                int ms = (int)((n->next_tick_ns - now + 999999) / 1000000);
                pthread_mutex_unlock(&n->mu);
                n->tr.poll(n->tr.ctx, ms);
                pthread_mutex_lock(&n->mu);
            } else {
                struct timespec ts = ns_ts(tick_to_mono(n->next_tick_ns));
                pthread_cond_timedwait(&n->cv, &n->mu, &ts);
            }
        }
        if (n->closing)
            break;
        n->kick = false;
        inmsg_t *t = n->work;
        size_t tcap = n->work_cap, n_in = n->inbox_n;
        n->work = n->inbox;
        n->work_cap = n->inbox_cap;
        n->inbox = t;
        n->inbox_cap = tcap;
        n->inbox_n = 0;
        prop_t *props = NULL, **pt = &props;   /* abandoned before proposing: never sent */
        for (prop_t *p = n->sub_props, *next; p; p = next) {
            next = p->next;
            if (p->abandoned) {
                prop_done_locked(p);
                continue;
            }
            *pt = p;
            pt = &p->next;
        }
        *pt = NULL;
        n->sub_props = n->sub_props_tail = NULL;
        rreq_t *reads = n->sub_reads;
        n->sub_reads = n->sub_reads_tail = NULL;
        fwdin_t *fwds = n->fwd_in;
        n->fwd_in = n->fwd_in_tail = NULL;
        n->fwd_in_n = 0;
        pthread_mutex_unlock(&n->mu);

        uint64_t t0 = now_ns();
        uint64_t c0 = thread_cpu_ns();
        n->t_sync = n->t_chunks = n->t_installs = n->t_snaps = n->t_apply = 0;
        n->t_write = n->t_gc = 0;
        int rc = iterate(n, n_in, props, reads, fwds);
        log_if_slow(n, now_ns() - t0, thread_cpu_ns() - c0);

        pthread_mutex_lock(&n->mu);
        props_done_locked(n->fin_props, 0);
        n->fin_props = NULL;
        reads_done_locked(n->fin_reads, 0);
        n->fin_reads = NULL;
        if (n->n_abandoned) {
            purge_abandoned_locked(n);
            n->n_abandoned = 0;
        }
        if (rc) {
            nlog(n, "the node failed (%s): every call now fails until it is reopened",
                 qerr_str(rc));
            n->failed = rc;
            complete_all_locked(n, -QERR_FAILED);
        }
        publish_locked(n);
    }
    pthread_mutex_unlock(&n->mu);
    return NULL;
}

/* ---- API -------------------------------------------------------------------------------- */

int mraft_open(const mraft_config_t *cfg, const mraft_transport_t *tr, mraft_node_t **out,
               char **errmsg)
{
    *out = NULL;
    if (errmsg)
        *errmsg = NULL;
    if (!cfg->id || !cfg->dir || !tr || !tr->send) {
        qerr_set_msg(errmsg, "mraft: a node needs an id, a data directory and a transport");
        return -QERR_INVAL;
    }
    mraft_node_t *n = xcalloc(1, sizeof(*n));
    char *rdir = NULL;
    int rc;
    n->cfg = *cfg;
    /* forwarded request ids continue from the wall clock, so a restarted node does not reuse
     * those of its previous run (a late answer must not match a new request) */
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    n->fwd_seq = (uint64_t)rt.tv_sec * 1000000000ull + (uint64_t)rt.tv_nsec;
    n->dir = xstrdup(cfg->dir);
    n->cfg.dir = n->dir;
    n->tr = *tr;
    mraft_config_t *c = &n->cfg;
    if (!c->tick_ms)
        c->tick_ms = DEFAULT_TICK_MS;
    if (!c->election_tick)
        c->election_tick = DEFAULT_ELECTION_TICK;
    if (!c->heartbeat_tick)
        c->heartbeat_tick = 1;
    if (!c->snapshot_bytes)
        c->snapshot_bytes = DEFAULT_SNAPSHOT_BYTES;
    if (!c->segment_bytes)
        c->segment_bytes = DEFAULT_SEGMENT_BYTES;
    if (!c->gc_bytes)
        c->gc_bytes = 2 * c->segment_bytes;
    if (!c->timeout_ms)
        c->timeout_ms = DEFAULT_TIMEOUT_MS;
    if (!c->max_cmd)
        c->max_cmd = DEFAULT_MAX_CMD;
    if (!c->inbox_max)
        c->inbox_max = DEFAULT_INBOX_MAX;
    if (!c->seed)
        c->seed = now_ns() ^ ((uint64_t)getpid() << 32);
    if (!c->balance_ms)
        c->balance_ms = DEFAULT_BALANCE_MS;
    if (!c->balance_backoff_ms)
        c->balance_backoff_ms = DEFAULT_BALANCE_BACKOFF_MS;
    n->tick_ns = (uint64_t)c->tick_ms * 1000000ull;
    n->balance_ticks = (c->balance_ms + c->tick_ms - 1) / c->tick_ms;
    n->backoff_ticks = (c->balance_backoff_ms + c->tick_ms - 1) / c->tick_ms;
    pthread_mutex_init(&n->mu, NULL);
    cond_init(&n->cv);
    cond_init(&n->idle_cv);
    cond_init(&n->pub_cv);
    if (asprintf(&rdir, "%s/raft", n->dir) < 0) {
        rdir = NULL;
        rc = -QERR_NOMEM;
        goto fail;
    }
    wal_options_t wo = { .segment_bytes = c->segment_bytes };
    char *msg = NULL;
    rc = rstore_open(rdir, &wo, &n->store, &msg);
    if (rc && errmsg && msg) {
        *errmsg = msg;
        msg = NULL;
    }
    free(msg);
    if (rc)
        goto fail;
    free(rdir);
    *out = n;
    return 0;
fail:
    qerr_set_msg(errmsg, "mraft: cannot open the Raft store in %s: %s", cfg->dir, qerr_str(rc));
    free(rdir);
    pthread_mutex_destroy(&n->mu);
    pthread_cond_destroy(&n->cv);
    pthread_cond_destroy(&n->idle_cv);
    pthread_cond_destroy(&n->pub_cv);
    free(n->dir);
    free(n);
    return rc;
}

static void group_free(mgroup_t *g)
{
    if (!g)
        return;
    raft_free(g->r);
    snapshot_recv_abort(g->recv);
    snapshot_info_free(&g->snap);
    free(g->dir);
    free(g);
}

/* Re-applies what the core hands out right after raft_new (committed entries after the
 * snapshot; a repaired hard state), before any message or tick. */
static int drain_boot(mraft_node_t *n, mgroup_t *g)
{
    while (raft_has_ready(g->r)) {
        raft_ready_t rd;
        int rc;
        raft_ready(g->r, &rd);
        ASSERT(!rd.snap_chunk && !rd.snapshot && !rd.n_entries && !rd.n_reads);
        if (rd.hs_changed) {
            if ((rc = rstore_save(n->store, g->id, &rd)) || (rc = rstore_sync(n->store)))
                return rc;
            g->hs_saved = rd.hs;
        }
        apply_entries(n, g, rd.committed, rd.n_committed);
        raft_advance(g->r, &rd);
    }
    ASSERT(n->fin_props == NULL);   /* nothing was pending */
    return 0;
}

int mraft_add_group(mraft_node_t *n, uint32_t group, const uint64_t *voters, size_t n_voters,
                    const sm_ops_t *ops, void *ctx, char **errmsg)
{
    mraft_members_t m = { .voters = voters, .n_voters = n_voters };
    return mraft_add_group_members(n, group, &m, ops, ctx, errmsg);
}

int mraft_add_group_members(mraft_node_t *n, uint32_t group, const mraft_members_t *mem,
                            const sm_ops_t *ops, void *ctx, char **errmsg)
{
    ASSERT(!n->started);
    if (errmsg)
        *errmsg = NULL;
    if (find_group(n, group)) {
        qerr_set_msg(errmsg, "mraft: group %u added twice", group);
        return -QERR_EXISTS;
    }
    if (!mem || mem->n_voters > RAFT_MAX_SERVERS ||
        mem->n_learners > RAFT_MAX_SERVERS - mem->n_voters ||
        (mem->n_voters && !mem->voters) || (mem->n_learners && !mem->learners) ||
        (mem->n_learners && !mem->n_voters) || !ops || !ops->apply || !ops->snapshot ||
        !ops->restore) {
        qerr_set_msg(errmsg, "mraft: group %u: bad arguments (at most %d voters and learners, "
                     "learners only with voters)", group, RAFT_MAX_SERVERS);
        return -QERR_INVAL;
    }
    mgroup_t *g = xcalloc(1, sizeof(*g));
    raft_boot_t b;
    raft_snap_meta_t fm = { 0 };
    char *msg = NULL;
    int rc;
    g->id = group;
    g->preferred = mem->preferred;
    g->ops = ops;
    g->ctx = ctx;
    if (asprintf(&g->dir, "%s/snap-%u", n->dir, group) < 0) {
        g->dir = NULL;
        rc = -QERR_NOMEM;
        goto fail;
    }
    if ((rc = make_dir(n->dir, g->dir, &msg)))
        goto fail;
    if ((rc = snapshot_remove_temps(g->dir)) > 0)
        nlog(n, "group %u: deleted %d unfinished snapshot file(s)", group, rc);
    rstore_boot(n->store, group, &b);
    rc = snapshot_open_read(g->dir, &g->snap, &msg);
    if (rc == -QERR_NOTFOUND)
        rc = 0;
    else if (rc == 0)
        rc = restore_file(g, &g->snap, &fm, &msg);
    if (rc)
        goto fail;
    if (b.snap.index > fm.index) {
        qerr_set_msg(&msg, "the Raft store has a snapshot at %" PRIu64 " but %s holds %s",
                     b.snap.index, g->dir, g->snap.path ? "an older one" : "none");
        rc = -QERR_CORRUPT;
        goto fail;
    }
    if (fm.index > b.snap.index) {
        /* The file was made durable, the store's record of it was not (a crash in
         * between). A local snapshot's index is in the log; a received one may not be. */
        bool in_log = false;
        for (size_t i = 0; i < b.n_entries; i++)
            if (b.entries[i].index == fm.index && b.entries[i].term == fm.term)
                in_log = true;
        if (in_log) {
            rc = rstore_compact(n->store, group, &fm);
        } else {
            raft_ready_t rd;
            memset(&rd, 0, sizeof(rd));
            rd.snapshot = &fm;
            rc = rstore_save(n->store, group, &rd);
        }
        if (rc || (rc = rstore_sync(n->store)))
            goto fail;
        nlog(n, "group %u: recorded snapshot %" PRIu64 " found without its store record (%s)",
             group, fm.index, in_log ? "local" : "received");
        rstore_boot(n->store, group, &b);
        ASSERT(b.snap.index == fm.index);
    }
    if (b.snap.index == 0 && b.snap.conf.n == 0) {
        /* a founding member: the initial voters and learners, the same on every one */
        raft_conf_t *fc = &b.snap.conf;
        for (size_t i = 0; i < mem->n_voters; i++)
            fc->s[fc->n++] = (raft_server_t){ .id = mem->voters[i], .role = RAFT_VOTER };
        for (size_t i = 0; i < mem->n_learners; i++)
            fc->s[fc->n++] = (raft_server_t){ .id = mem->learners[i], .role = RAFT_LEARNER };
        if (raft_conf_normalize(fc) < 0) {
            qerr_set_msg(&msg, "bad member list (a zero id, or an id listed twice)");
            rc = -QERR_INVAL;
            goto fail;
        }
    }
    b.applied = fm.index;
    raft_config_t rcfg = {
        .id = n->cfg.id, .election_tick = n->cfg.election_tick,
        .heartbeat_tick = n->cfg.heartbeat_tick,
        .seed = n->cfg.seed ^ ((uint64_t)group + 1) * 0x9E3779B97F4A7C15ull,
        .max_msg_bytes = n->cfg.max_msg_bytes, .max_inflight = n->cfg.max_inflight,
        .snap_chunk_bytes = n->cfg.snap_chunk_bytes, .snap_trailing = n->cfg.snap_trailing,
        .pre_vote = true, .check_quorum = true,
        .lease_reads = !n->cfg.no_lease_reads,
        .max_clock_drift_ticks = n->cfg.no_lease_reads ? 0 : lease_drift_ticks(n->cfg.election_tick),
        .snap_read = snap_read_cb, .snap_ctx = g };
    rc = raft_new(&rcfg, &b, &g->r);
    rstore_boot_done(n->store, group);
    if (rc) {
        qerr_set_msg(&msg, "the stored Raft state does not boot (%s)", qerr_str(rc));
        rc = rc == -QERR_INVAL ? -QERR_CORRUPT : rc;
        goto fail;
    }
    g->applied = b.snap.index;
    g->applied_conf = b.snap.conf;
    g->hs_saved = b.hs;
    if ((rc = drain_boot(n, g)))
        goto fail;
    __atomic_store_n(&g->applied_pub, g->applied, __ATOMIC_RELEASE);
    /* insert, keeping the array sorted by id */
    n->groups = xrealloc(n->groups, (n->n_groups + 1) * sizeof(*n->groups));
    size_t at = n->n_groups;
    while (at > 0 && n->groups[at - 1]->id > group) {
        n->groups[at] = n->groups[at - 1];
        at--;
    }
    n->groups[at] = g;
    n->n_groups++;
    pthread_mutex_lock(&n->mu);
    publish_locked(n);
    pthread_mutex_unlock(&n->mu);
    return 0;
fail:
    qerr_set_msg(errmsg, "mraft: group %u in %s: %s", group, n->dir, msg ? msg : qerr_str(rc));
    free(msg);
    group_free(g);
    return rc;
}

int mraft_start(mraft_node_t *n)
{
    ASSERT(!n->started);
    n->next_tick_ns = tick_now_ns() + n->tick_ns;
    rstore_stats_t ss;
    rstore_get_stats(n->store, &ss);
    n->gc_mark = ss.wal.bytes;
    pthread_mutex_lock(&n->mu);
    n->started = true;
    pthread_mutex_unlock(&n->mu);
    if (pthread_create(&n->thread, NULL, loop_main, n)) {
        pthread_mutex_lock(&n->mu);
        n->started = false;
        pthread_mutex_unlock(&n->mu);
        return -QERR_NOMEM;
    }
    pthread_setname_np(n->thread, "qfs-raft");
    return 0;
}

void mraft_close(mraft_node_t *n)
{
    if (!n)
        return;
    pthread_mutex_lock(&n->mu);
    bool started = n->started;
    n->closing = true;
    pthread_cond_signal(&n->cv);
    pthread_cond_broadcast(&n->pub_cv);
    if (n->tr.wake)
        n->tr.wake(n->tr.ctx);
    pthread_mutex_unlock(&n->mu);
    if (started)
        pthread_join(n->thread, NULL);
    if (n->snap_job) {
        /* its file becomes durable or not; the store keeps the log either way (a durable
         * file newer than the store's record is taken up at the next open) */
        if (n->snap_job->threaded)
            pthread_join(n->snap_job->th, NULL);
        free(n->snap_job);
        n->snap_job = NULL;
    }
    pthread_mutex_lock(&n->mu);
    complete_all_locked(n, -QERR_CLOSED);
    while (n->waiters)
        pthread_cond_wait(&n->idle_cv, &n->mu);
    pthread_mutex_unlock(&n->mu);
    for (size_t i = 0; i < n->n_groups; i++)
        group_free(n->groups[i]);
    free(n->groups);
    for (size_t i = 0; i < n->inbox_n; i++)
        raft_msg_free(&n->inbox[i].m);
    free(n->inbox);
    while (n->fwd_in) {
        fwdin_t *x = n->fwd_in;
        n->fwd_in = x->next;
        frame_fwd_free(&x->f);
        free(x);
    }
    free(n->work);
    free(n->iov);
    rstore_close(n->store);
    pthread_mutex_destroy(&n->mu);
    pthread_cond_destroy(&n->cv);
    pthread_cond_destroy(&n->idle_cv);
    pthread_cond_destroy(&n->pub_cv);
    free(n->dir);
    free(n);
}

/* Wakes the loop for new work; n->mu held. */
static void kick_locked(mraft_node_t *n)
{
    if (n->kick)
        return;
    n->kick = true;
    pthread_cond_signal(&n->cv);
    if (n->tr.wake)
        n->tr.wake(n->tr.ctx);
}

int mraft_recv(mraft_node_t *n, uint32_t group, raft_msg_t *m)
{
    raft_msg_t own;
    int rc = 0;
    if (m->mem) {
        own = *m;
        memset(m, 0, sizeof(*m));
    } else if (raft_msg_clone(&own, m) < 0) {
        return -QERR_NOMEM;
    }
    pthread_mutex_lock(&n->mu);
    if (n->closing || !n->started)
        rc = -QERR_CLOSED;
    else if (!find_group(n, group) || n->inbox_n >= n->cfg.inbox_max)
        rc = -QERR_BUSY;
    if (rc) {
        n->recv_dropped++;
        pthread_mutex_unlock(&n->mu);
        raft_msg_free(&own);
        return rc;
    }
    if (n->inbox_n == n->inbox_cap) {
        n->inbox_cap = n->inbox_cap ? 2 * n->inbox_cap : 64;
        n->inbox = xrealloc(n->inbox, n->inbox_cap * sizeof(*n->inbox));
    }
    n->inbox[n->inbox_n++] = (inmsg_t){ .group = group, .m = own };
    n->recv_count++;
    kick_locked(n);
    pthread_mutex_unlock(&n->mu);
    return 0;
}

/* Checks that a call may queue work for group; n->mu held. */
static int admit_locked(mraft_node_t *n, uint32_t group)
{
    if (n->closing || !n->started)
        return -QERR_CLOSED;
    if (n->failed)
        return -QERR_FAILED;
    return find_group(n, group) ? 0 : -QERR_NOTFOUND;
}

static void leave_locked(mraft_node_t *n)
{
    ASSERT(n->waiters > 0);
    if (--n->waiters == 0 && n->closing)
        pthread_cond_broadcast(&n->idle_cv);
}

int mraft_recv_fwd(mraft_node_t *n, uint64_t from, frame_fwd_t *f)
{
    fwdin_t *x = xcalloc(1, sizeof(*x));
    x->from = from;
    x->f = *f;
    memset(f, 0, sizeof(*f));
    pthread_mutex_lock(&n->mu);
    int rc = 0;
    if (n->closing || !n->started)
        rc = -QERR_CLOSED;
    else if (n->fwd_in_n >= n->cfg.inbox_max)
        rc = -QERR_BUSY;
    if (rc) {
        n->recv_dropped++;
        pthread_mutex_unlock(&n->mu);
        frame_fwd_free(&x->f);
        free(x);
        return rc;
    }
    if (n->fwd_in_tail)
        n->fwd_in_tail->next = x;
    else
        n->fwd_in = x;
    n->fwd_in_tail = x;
    n->fwd_in_n++;
    kick_locked(n);
    pthread_mutex_unlock(&n->mu);
    return 0;
}

/* Queues proposal p (admitted: admit_locked passed, n->mu held) for the loop and waits
 * until the loop has finished it or the deadline ts passes. Counts the caller among the
 * waiters: the caller calls leave_locked before unlocking. Returns true if p is done: the
 * caller reads its result fields and, after unlocking, destroys p->cv and frees p. Returns
 * false on timeout: p is then abandoned (the loop, or close, frees it) and the caller must
 * not touch it again; the outcome is unknown (-QERR_TIMEOUT). */
static bool submit_wait_locked(mraft_node_t *n, prop_t *p, const struct timespec *ts)
{
    n->waiters++;
    if (n->sub_props_tail)
        n->sub_props_tail->next = p;
    else
        n->sub_props = p;
    n->sub_props_tail = p;
    kick_locked(n);
    while (!p->done)
        if (pthread_cond_timedwait(&p->cv, &n->mu, ts) == ETIMEDOUT && !p->done)
            break;
    if (p->done)
        return true;
    p->abandoned = true;   /* the loop frees it */
    n->n_abandoned++;
    return false;
}

/* mraft_propose and mraft_propose_any: queue, wait, collect. */
static int propose_wait(mraft_node_t *n, uint8_t kind, uint32_t group, const void *cmd,
                        size_t len, sm_result_t *res, uint32_t timeout_ms, uint64_t *leader,
                        uint64_t *index)
{
    if (leader)
        *leader = 0;
    if (index)
        *index = 0;
    if (len > n->cfg.max_cmd)
        return -QERR_TOOBIG;
    if (len && !cmd)
        return -QERR_INVAL;
    prop_t *p = xcalloc(1, sizeof(*p) + len);
    p->group = group;
    p->kind = kind;
    p->len = len;
    if (len)
        memcpy(p->cmd, cmd, len);
    cond_init(&p->cv);
    uint64_t deadline = now_ns() + (uint64_t)(timeout_ms ? timeout_ms : n->cfg.timeout_ms) *
                                   1000000ull;
    struct timespec ts = ns_ts(deadline);
    pthread_mutex_lock(&n->mu);
    int rc = admit_locked(n, group);
    if (rc) {
        pthread_mutex_unlock(&n->mu);
        pthread_cond_destroy(&p->cv);
        free(p);
        return rc;
    }
    bool done = submit_wait_locked(n, p, &ts);
    rc = done ? p->rc : -QERR_TIMEOUT;
    if (done) {
        if (rc == 0 && res)
            *res = p->res;
        if (rc == 0 && index)
            *index = p->index;
        if (rc == -QERR_NOTLEADER && leader)
            *leader = p->leader;
    }
    leave_locked(n);
    pthread_mutex_unlock(&n->mu);
    if (done) {
        pthread_cond_destroy(&p->cv);
        free(p);
    }
    return rc;
}

int mraft_propose(mraft_node_t *n, uint32_t group, const void *cmd, size_t len,
                  sm_result_t *res, uint32_t timeout_ms, uint64_t *leader)
{
    return propose_wait(n, P_LOCAL, group, cmd, len, res, timeout_ms, leader, NULL);
}

int mraft_propose_any(mraft_node_t *n, uint32_t group, const void *cmd, size_t len,
                      sm_result_t *res, uint32_t timeout_ms, uint64_t *index)
{
    return propose_wait(n, P_ANY, group, cmd, len, res, timeout_ms, NULL, index);
}

/* The role of id in group's configuration as of the loop's last iteration: the one this
 * node has applied (applied true) or the one in force (its latest in the log). n->mu held. */
static uint32_t pub_role_locked(mraft_node_t *n, uint32_t group, uint64_t id, bool applied)
{
    mgroup_t *g = find_group(n, group);
    return g ? raft_conf_role(applied ? &g->pub.applied_conf : &g->pub.conf, id) : 0;
}

int mraft_change_member(mraft_node_t *n, uint32_t group, uint32_t op, uint64_t id,
                        uint32_t timeout_ms, uint64_t *leader)
{
    if (leader)
        *leader = 0;
    if (id == 0 || op < RAFT_CONF_ADD_LEARNER || op > RAFT_CONF_REMOVE)
        return -QERR_INVAL;
    prop_t *p = xcalloc(1, sizeof(*p));
    p->group = group;
    p->kind = P_CONF;
    p->conf_op = op;
    p->conf_id = id;
    cond_init(&p->cv);
    uint64_t deadline = now_ns() + (uint64_t)(timeout_ms ? timeout_ms : n->cfg.timeout_ms) *
                                   1000000ull;
    struct timespec ts = ns_ts(deadline);
    pthread_mutex_lock(&n->mu);
    int rc = admit_locked(n, group);
    if (rc) {
        pthread_mutex_unlock(&n->mu);
        pthread_cond_destroy(&p->cv);
        free(p);
        return rc == -QERR_NOTFOUND ? -QERR_INVAL : rc;   /* NOTFOUND names the member */
    }
    bool done = submit_wait_locked(n, p, &ts);
    rc = done ? p->rc : -QERR_TIMEOUT;
    if (done && rc == -QERR_NOTLEADER && leader)
        *leader = p->leader;
    /* A new voter is STAGING once its entry applied: wait for the leader to promote it (it
     * does so once the server is within promote_lag entries of its log). The status is
     * published at the end of every iteration, after this node applied what it could. */
    if (rc == 0 && (op == RAFT_CONF_ADD_VOTER || op == RAFT_CONF_PROMOTE)) {
        n->pub_waiters++;
        for (;;) {
            if (pub_role_locked(n, group, id, true) == RAFT_VOTER)
                break;
            if (n->closing || n->failed) {
                rc = n->closing ? -QERR_CLOSED : -QERR_FAILED;
                break;
            }
            /* (a STAGING entry committed but not yet applied here is in force already) */
            uint32_t role = pub_role_locked(n, group, id, false);
            if (role != RAFT_STAGING && role != RAFT_VOTER) {
                rc = -QERR_DROPPED;   /* removed or demoted meanwhile by another change */
                break;
            }
            if (pthread_cond_timedwait(&n->pub_cv, &n->mu, &ts) == ETIMEDOUT &&
                pub_role_locked(n, group, id, true) != RAFT_VOTER) {
                rc = -QERR_TIMEOUT;
                break;
            }
        }
        n->pub_waiters--;
    }
    leave_locked(n);
    pthread_mutex_unlock(&n->mu);
    if (done) {
        pthread_cond_destroy(&p->cv);
        free(p);
    }
    return rc;
}

/* The leader fast path: while the lease the loop published for g holds (publish_lease), a
 * barrier needs no round and no loop iteration: its index is the published commit, which
 * is >= every index acknowledged before the barrier began, and no leader of a later term
 * can exist before the lease ends. Returns 1 and sets *index when the lease holds (0
 * otherwise); *applied says whether g has applied up to it already. n->mu held (the group
 * list; the lease itself is read with acquire loads: the deadline first, then the commit,
 * which the loop wrote before the deadline). */
static int lease_index_locked(mraft_node_t *n, uint32_t group, uint64_t *index, bool *applied)
{
    mgroup_t *g = find_group(n, group);
    uint64_t until = __atomic_load_n(&g->lease_until_ns, __ATOMIC_ACQUIRE);
    if (!until || tick_now_ns() >= until)
        return 0;
    *index = __atomic_load_n(&g->lease_commit, __ATOMIC_ACQUIRE);
    *applied = __atomic_load_n(&g->applied_pub, __ATOMIC_ACQUIRE) >= *index;
    return 1;
}

int mraft_read_barrier(mraft_node_t *n, uint32_t group, uint32_t timeout_ms, uint64_t *index)
{
    uint64_t deadline = now_ns() + (uint64_t)(timeout_ms ? timeout_ms : n->cfg.timeout_ms) *
                                   1000000ull;
    struct timespec ts = ns_ts(deadline);
    pthread_mutex_lock(&n->mu);
    int rc = admit_locked(n, group);
    if (rc) {
        pthread_mutex_unlock(&n->mu);
        return rc;
    }
    uint64_t lease_index = 0;
    bool applied = false;
    bool lease = lease_index_locked(n, group, &lease_index, &applied);
    if (lease && applied) {
        n->lease_reads++;
        pthread_mutex_unlock(&n->mu);
        if (index)
            *index = lease_index;
        return 0;
    }
    rreq_t *q = xcalloc(1, sizeof(*q));
    q->group = group;
    cond_init(&q->cv);
    if (lease) {               /* the loop only waits for the apply (iterate, complete_reads) */
        q->state = R_WAIT;
        q->index = lease_index;
    }
    n->waiters++;
    if (n->sub_reads_tail)
        n->sub_reads_tail->next = q;
    else
        n->sub_reads = q;
    n->sub_reads_tail = q;
    kick_locked(n);
    while (!q->done)
        if (pthread_cond_timedwait(&q->cv, &n->mu, &ts) == ETIMEDOUT && !q->done)
            break;
    bool done = q->done;
    if (done) {
        rc = q->rc;
        if (rc == 0 && index)
            *index = q->index;
    } else {
        q->abandoned = true;
        n->n_abandoned++;
        rc = -QERR_TIMEOUT;
    }
    leave_locked(n);
    pthread_mutex_unlock(&n->mu);
    if (done) {
        pthread_cond_destroy(&q->cv);
        free(q);
    }
    return rc;
}

int mraft_set_preferred(mraft_node_t *n, uint32_t group, uint64_t preferred)
{
    pthread_mutex_lock(&n->mu);
    mgroup_t *g = find_group(n, group);
    if (g)
        __atomic_store_n(&g->preferred, preferred, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&n->mu);
    return g ? 0 : -QERR_NOTFOUND;
}

int mraft_status(mraft_node_t *n, uint32_t group, mraft_group_status_t *st)
{
    pthread_mutex_lock(&n->mu);
    mgroup_t *g = find_group(n, group);
    if (g)
        *st = g->pub;
    pthread_mutex_unlock(&n->mu);
    return g ? 0 : -QERR_NOTFOUND;
}

void mraft_get_stats(mraft_node_t *n, mraft_stats_t *st)
{
    pthread_mutex_lock(&n->mu);
    *st = n->pub;
    pthread_mutex_unlock(&n->mu);
}

uint8_t mraft_restoring_snap_tag(void)
{
    return restoring_tag;
}
