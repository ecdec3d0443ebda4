/* tests/unit/test_membership.c — online membership changes of a Raft group over TCP
 * (docs/MEMBERSHIP.md): group_change_member / mraft_change_member, a joining node
 * (group_node_add_joining), transport peers added and removed while the nodes run
 * (group_node_add_peer / _remove_peer, mraft_tcp_add_peer / _remove_peer), and the leader's
 * per-member progress in mraft_status.
 *
 * test_grow_and_shrink: nodes 1, 2, 3 found group GID (node 1 preferred, so it leads) and
 * serve writes from a thread on node 2 the whole time; the log is compacted; node 4 starts
 * with an empty directory, joins as a learner (its peer added on every node at run time),
 * catches up by InstallSnapshot, is promoted to voter; then node 1, the leader, removes
 * itself; the others drop it from their transports and refuse its dials, and its term never
 * moves again. Then node 1's directory is wiped and it comes back as a new member (the
 * remove-then-add procedure): learner, InstallSnapshot, voter. Every acknowledged write is
 * applied exactly once on nodes 1, 2, 3, 4, which end with equal states.
 * test_peer_add_remove: a transport peer removed while frames are queued for it (its reader
 * stalled), re-added, connected again; the add/remove error codes.
 * Every wait is bounded. */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cluster/err.h"
#include "cluster/group.h"
#include "cluster/mraft.h"
#include "cluster/mraft_tcp.h"
#include "cluster/transport.h"
#include "tests/unit/check.h"

#define NN 4                      /* node ids 1..NN; node NN joins later */
#define GID 3
#define CLUSTER_ID 0x4D454D42ull
#define TIMEOUT_MS 3000
#define TICK_MS 20

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
    nanosleep(&ts, NULL);
}

/* A port nothing listens on right now (the kernel's pick for a socket bound to port 0). */
static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    uint16_t port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static void quiet_log(void *ctx, const char *line)
{
    (void)ctx;
    if (getenv("QFS_TEST_VERBOSE"))
        printf("# %s\n", line);
}

/* ---- the state machine: a set of keys; "KEY" adds it, a key added twice is counted -------- */

#define KEYS_MAX 65536
typedef struct kset {
    pthread_mutex_t mu;
    uint64_t applied;
    size_t n;
    char **key;                   /* sorted */
    uint64_t twice;               /* applies of a key already present */
    uint64_t bad;                 /* out of order, or malformed */
} kset_t;

static void ks_clear(kset_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->key[i]);
    free(s->key);
    s->key = NULL;
    s->n = s->applied = s->twice = s->bad = 0;
}

/* Index of k in s (binary search) or where it goes; *found says which. s->mu held. */
static size_t ks_find(const kset_t *s, const char *k, bool *found)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->key[mid], k);
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

static void ks_add(kset_t *s, const char *k)
{
    bool found;
    size_t at = ks_find(s, k, &found);
    if (found) {
        s->twice++;
        return;
    }
    if (s->n == KEYS_MAX) {
        s->bad++;
        return;
    }
    if (!s->key)
        s->key = calloc(KEYS_MAX, sizeof(char *));
    memmove(s->key + at + 1, s->key + at, (s->n - at) * sizeof(char *));
    s->key[at] = strdup(k);
    s->n++;
}

static void ks_apply(void *ctx, uint64_t index, const void *cmd, size_t len, sm_result_t *res)
{
    kset_t *s = ctx;
    char k[64];
    pthread_mutex_lock(&s->mu);
    if (index <= s->applied)
        s->bad++;
    s->applied = index;
    if (len == 0 || len >= sizeof(k)) {
        s->bad++;
    } else {
        memcpy(k, cmd, len);
        k[len] = 0;
        ks_add(s, k);
    }
    if (res)
        res->code = 0;
    pthread_mutex_unlock(&s->mu);
}

static int ks_snapshot(void *ctx, snap_writer_t *w)
{
    kset_t *s = ctx;
    pthread_mutex_lock(&s->mu);
    uint64_t h[3] = { s->applied, s->n, s->twice };
    int rc = snap_writer_put(w, h, sizeof(h));
    for (size_t i = 0; rc == 0 && i < s->n; i++) {
        uint32_t l = (uint32_t)strlen(s->key[i]);
        if ((rc = snap_writer_put(w, &l, sizeof(l))) == 0)
            rc = snap_writer_put(w, s->key[i], l);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int ks_restore(void *ctx, snap_reader_t *r)
{
    kset_t *s = ctx;
    uint64_t h[3];
    char k[64];
    pthread_mutex_lock(&s->mu);
    ks_clear(s);
    int rc = snap_reader_get(r, h, sizeof(h));
    for (uint64_t i = 0; rc == 0 && i < h[1]; i++) {
        uint32_t l;
        if ((rc = snap_reader_get(r, &l, sizeof(l))) != 0)
            break;
        if (l == 0 || l >= sizeof(k)) {
            rc = -QERR_CORRUPT;
            break;
        }
        if ((rc = snap_reader_get(r, k, l)) == 0) {
            k[l] = 0;
            ks_add(s, k);
        }
    }
    if (rc == 0) {
        s->applied = h[0];
        s->twice = h[2];
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static const sm_ops_t ks_ops = { .apply = ks_apply, .snapshot = ks_snapshot,
                                 .restore = ks_restore };

static bool ks_has(kset_t *s, const char *k)
{
    bool found;
    pthread_mutex_lock(&s->mu);
    ks_find(s, k, &found);
    pthread_mutex_unlock(&s->mu);
    return found;
}

static bool ks_equal(kset_t *a, kset_t *b)
{
    pthread_mutex_lock(&a->mu);
    pthread_mutex_lock(&b->mu);
    bool eq = a->n == b->n;
    for (size_t i = 0; eq && i < a->n; i++)
        eq = strcmp(a->key[i], b->key[i]) == 0;
    pthread_mutex_unlock(&b->mu);
    pthread_mutex_unlock(&a->mu);
    return eq;
}

/* ---- the cluster ------------------------------------------------------------------------- */

typedef struct cl {
    char base[64];
    char dir[NN + 1][96];
    char addr[NN + 1][32];
    group_peer_t peers[NN];       /* nodes 1..NN */
    group_node_t *node[NN + 1];   /* by id */
    group_t *g[NN + 1];
    kset_t ks[NN + 1];
} cl_t;

/* Starts node id: a founding voter of GID (1..NN-1, node 1 first: the preferred leader) or,
 * for NN, a node joining with an empty directory, which knows every node as a peer. The
 * founders know only each other: the joining node is added to them at run time. */
static int start_node(cl_t *c, int id, bool joining)
{
    group_raft_config_t cfg = {
        .id = (uint64_t)id, .listen = c->addr[id], .peers = c->peers,
        .n_peers = joining ? NN : NN - 1, .cluster_id = CLUSTER_ID, .dir = c->dir[id],
        .tick_ms = TICK_MS, .election_tick = 10, .timeout_ms = TIMEOUT_MS,
        .snapshot_bytes = 4096, .snap_chunk_bytes = 256, .segment_bytes = 16 << 10,
        .seed = 900 + (uint64_t)id, .log = quiet_log, .balance_ms = 200 };
    static const uint64_t voters[NN - 1] = { 1, 2, 3 };
    group_members_t m = { .voters = voters, .n_voters = NN - 1 };
    char *msg = NULL;
    int rc = group_node_open(&cfg, &c->node[id], &msg);
    if (rc == 0) {
        rc = joining ? group_node_add_joining(c->node[id], GID, &ks_ops, &c->ks[id],
                                               &c->g[id], &msg)
                      : group_node_add_members(c->node[id], GID, &m, &ks_ops, &c->ks[id],
                                               &c->g[id], &msg);
        if (rc == 0)
            rc = group_node_start(c->node[id], &msg);
        if (rc)
            group_node_close(c->node[id]);
    }
    if (rc) {
        printf("# node %d: %s (%s)\n", id, qerr_str(rc), msg ? msg : "");
        c->node[id] = NULL;
        c->g[id] = NULL;
    }
    free(msg);
    return rc;
}

static void stop_node(cl_t *c, int id)
{
    group_node_close(c->node[id]);
    c->node[id] = NULL;
    c->g[id] = NULL;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void cluster_free(cl_t *c)
{
    if (!c)
        return;
    for (int id = 1; id <= NN; id++) {
        stop_node(c, id);
        ks_clear(&c->ks[id]);
        pthread_mutex_destroy(&c->ks[id].mu);
    }
    nftw(c->base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(c);
}

static cl_t *cluster_new(void)
{
    cl_t *c = calloc(1, sizeof(*c));
    snprintf(c->base, sizeof(c->base), "/tmp/qfs-member-XXXXXX");
    if (!mkdtemp(c->base)) {
        free(c);
        return NULL;
    }
    char base[sizeof(c->base)];
    memcpy(base, c->base, sizeof(base));
    for (int id = 1; id <= NN; id++) {
        snprintf(c->addr[id], sizeof(c->addr[id]), "127.0.0.1:%u", (unsigned)free_port());
        c->peers[id - 1] = (group_peer_t){ .id = (uint64_t)id, .addr = c->addr[id] };
        snprintf(c->dir[id], sizeof(c->dir[id]), "%s/n%d", base, id);
        mkdir(c->dir[id], 0755);
        pthread_mutex_init(&c->ks[id].mu, NULL);
    }
    for (int id = 1; id < NN; id++)
        if (start_node(c, id, false)) {
            cluster_free(c);
            return NULL;
        }
    return c;
}

static mraft_group_status_t status_of(cl_t *c, int id)
{
    mraft_group_status_t st;
    memset(&st, 0, sizeof(st));
    if (c->g[id])
        group_raft_status(c->g[id], &st);
    return st;
}

/* The role of `who` in the configuration node id has applied (0: none, or no node). */
static uint32_t applied_role(cl_t *c, int id, uint64_t who)
{
    mraft_group_status_t st = status_of(c, id);
    return raft_conf_role(&st.applied_conf, who);
}

/* The node leading GID among the members in mask (bit id), once every one of them names it;
 * 0 after ms. */
static int wait_leader(cl_t *c, unsigned mask, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    do {
        int lead = 0;
        bool agree = true;
        for (int id = 1; id <= NN; id++)
            if ((mask >> id & 1) && c->g[id] && status_of(c, id).role == RAFT_LEADER)
                lead = id;
        for (int id = 1; lead && id <= NN; id++)
            if ((mask >> id & 1) && c->g[id])
                agree &= status_of(c, id).leader == (uint64_t)lead;
        if (lead && agree)
            return lead;
        sleep_ms(10);
    } while (now_ms() < end);
    return 0;
}

/* A membership change made at the leader of the members in mask, retried while the answer
 * says it was not proposed (no leader yet, another change or a transfer in flight) or was
 * lost to a leader change, for at most ms. Returns the last answer. */
static int change(cl_t *c, unsigned mask, uint32_t op, uint64_t id, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    bool unknown = false;         /* an earlier attempt timed out: it may have gone through */
    int rc;
    do {
        int lead = wait_leader(c, mask, 2000);
        rc = lead ? group_change_member(c->g[lead], op, id, TIMEOUT_MS, NULL) : -QERR_TIMEOUT;
        if (unknown && ((rc == -QERR_EXISTS && op == GROUP_ADD_LEARNER) ||
                        (rc == -QERR_NOTFOUND && op == GROUP_REMOVE)))
            return 0;
        if (rc != -QERR_NOTLEADER && rc != -QERR_CONFCHANGE && rc != -QERR_TRANSFER &&
            rc != -QERR_DROPPED && rc != -QERR_TIMEOUT)
            return rc;
        unknown |= rc == -QERR_TIMEOUT;
        sleep_ms(20);
    } while (now_ms() < end);
    return rc;
}

/* The writer: proposes "w<k>" on one node without pause, each key once (a key whose call
 * failed is not proposed again: its outcome is unknown, it applies at most once). */
typedef struct writer {
    cl_t *c;
    int id;
    volatile int stop;
    pthread_mutex_t mu;
    int n, failed, first_rc;
    bool *acked;                  /* [k]: acknowledged */
    int cap;
} writer_t;

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    for (int k = 0; !w->stop && k < w->cap; k++) {
        char key[32];
        int len = snprintf(key, sizeof(key), "w%d", k);
        int rc = group_propose(w->c->g[w->id], key, (size_t)len, NULL);
        pthread_mutex_lock(&w->mu);
        w->n = k + 1;
        if (rc == 0) {
            w->acked[k] = true;
        } else if (!w->failed++) {
            w->first_rc = rc;
        }
        pthread_mutex_unlock(&w->mu);
    }
    return NULL;
}

static int acked_count(writer_t *w)
{
    int a = 0;
    pthread_mutex_lock(&w->mu);
    for (int k = 0; k < w->n; k++)
        a += w->acked[k];
    pthread_mutex_unlock(&w->mu);
    return a;
}

/* Waits until the writer has at least `more` more acknowledged writes than now; false after
 * ms. */
static bool writes_go_on(writer_t *w, int more, unsigned ms)
{
    int target = acked_count(w) + more;
    uint64_t end = now_ms() + ms;
    while (acked_count(w) < target && now_ms() < end)
        sleep_ms(10);
    return acked_count(w) >= target;
}

TEST(test_grow_and_shrink)
{
    cl_t *c = cluster_new();
    CHECK(c);
    const unsigned FOUNDERS = 1u << 1 | 1u << 2 | 1u << 3;
    /* node 1 is the preferred leader: it leads once balancing has run */
    uint64_t end = now_ms() + 15000;
    while (wait_leader(c, FOUNDERS, 2000) != 1 && now_ms() < end)
        sleep_ms(20);
    int lead = wait_leader(c, FOUNDERS, 100);
    if (lead != 1)
        cluster_free(c);
    CHECK_EQ(lead, 1);

    writer_t w = { .c = c, .id = 2, .cap = KEYS_MAX / 2 };
    pthread_mutex_init(&w.mu, NULL);
    w.acked = calloc((size_t)w.cap, sizeof(bool));
    pthread_t tw;
    pthread_create(&tw, NULL, writer_main, &w);
    bool ok = true;
    const char *why = "";
    int rc = 0;
#define STEP(cond, what)                                                                  \
    do {                                                                                  \
        if (ok && !(cond)) {                                                              \
            ok = false;                                                                   \
            why = what;                                                                   \
        }                                                                                 \
    } while (0)

    /* enough writes that the leader has compacted its log: node 4 needs a snapshot */
    end = now_ms() + 20000;
    while (ok && status_of(c, 1).snap_index < 20 && now_ms() < end)
        sleep_ms(20);
    STEP(status_of(c, 1).snap_index >= 20, "the leader compacted its log");
    STEP(writes_go_on(&w, 50, 10000), "writes before the join");

    /* node 4 starts empty; every founder learns its address while running */
    STEP(start_node(c, NN, true) == 0, "node 4 starts");
    for (int id = 1; ok && id < NN; id++) {
        STEP((rc = group_node_add_peer(c->node[id], NN, c->addr[NN])) == 0, "add peer 4");
        STEP((rc = group_node_add_peer(c->node[id], NN, c->addr[NN])) == -QERR_EXISTS,
             "adding peer 4 twice is refused");
    }
    STEP(group_node_add_peer(c->node[1], 1, c->addr[1]) == -QERR_INVAL, "self as a peer");
    mraft_group_status_t st4 = status_of(c, NN);
    STEP(ok && st4.member == 0 && st4.conf.n == 0, "a joining node is in no configuration");

    /* learner: it catches up by InstallSnapshot, the leader's status shows its progress */
    STEP((rc = change(c, FOUNDERS, GROUP_ADD_LEARNER, NN, 10000)) == 0, "ADD_LEARNER 4");
    STEP((rc = change(c, FOUNDERS, GROUP_ADD_LEARNER, NN, 10000)) == -QERR_EXISTS,
         "ADD_LEARNER 4 twice");
    mraft_group_status_t sl = status_of(c, 1);
    STEP(raft_conf_role(&sl.conf, NN) == RAFT_LEARNER, "4 is a learner in the leader's conf");
    bool seen_progress = false, seen_snap = false;
    uint64_t snap_sent = 0, snap_total = 0;
    end = now_ms() + 20000;
    while (ok && now_ms() < end) {
        sl = status_of(c, 1);
        for (uint32_t i = 0; i < sl.n_progress; i++)
            if (sl.progress[i].id == NN) {
                seen_progress = true;
                if (sl.progress[i].snap_total > 0) {
                    seen_snap = true;
                    snap_sent = sl.progress[i].snap_sent;
                    snap_total = sl.progress[i].snap_total;
                }
            }
        st4 = status_of(c, NN);
        if (st4.installs >= 1 && st4.member == RAFT_LEARNER && sl.commit > 0 &&
            st4.applied + 64 >= sl.commit)
            break;
        sleep_ms(1);
    }
    st4 = status_of(c, NN);
    printf("# node 4 caught up: %llu snapshot(s) installed, applied %llu (leader commit %llu)"
           "; a snapshot transfer seen in the leader's progress: %s (%llu of %llu bytes)\n",
           (unsigned long long)st4.installs, (unsigned long long)st4.applied,
           (unsigned long long)status_of(c, 1).commit, seen_snap ? "yes" : "no",
           (unsigned long long)snap_sent, (unsigned long long)snap_total);
    STEP(!seen_snap || (snap_sent > 0 && snap_sent <= snap_total), "snapshot progress");
    STEP(seen_progress, "the leader reports node 4's progress");
    STEP(st4.installs >= 1, "node 4 caught up by InstallSnapshot");
    STEP(st4.member == RAFT_LEARNER, "node 4 knows it is a learner");

    /* voter: PROMOTE returns once the leader has promoted it */
    STEP((rc = change(c, FOUNDERS, GROUP_PROMOTE, NN, 15000)) == 0, "PROMOTE 4");
    const unsigned ALL = FOUNDERS | 1u << NN;
    lead = wait_leader(c, ALL, 5000);
    STEP(lead > 0 && applied_role(c, lead, NN) == RAFT_VOTER,
         "4 is a voter");
    /* (at the leader, following it: the balancer may move leadership back to node 1) */
    STEP(change(c, ALL, GROUP_PROMOTE, NN, 10000) == -QERR_EXISTS, "PROMOTE of a voter");
    STEP(change(c, ALL, GROUP_REMOVE, 77, 10000) == -QERR_NOTFOUND, "REMOVE of an unknown id");
    STEP(group_change_member(c->g[2], 9, NN, TIMEOUT_MS, NULL) == -QERR_INVAL, "an unknown op");
    bool named = false;   /* (a harmless op: on a node that just became leader, EXISTS) */
    for (int tries = 0; ok && !named && tries < 20; tries++) {
        lead = wait_leader(c, ALL, 5000);
        int other = lead == 2 ? 3 : 2;
        uint64_t hint = 0;
        named = lead > 0 &&
                group_change_member(c->g[other], GROUP_PROMOTE, NN, TIMEOUT_MS, &hint) ==
                    -QERR_NOTLEADER && hint == (uint64_t)lead && wait_leader(c, ALL, 100) == lead;
    }
    STEP(named, "a follower answers NOTLEADER naming the leader");
    STEP(writes_go_on(&w, 50, 10000), "writes after the promotion");

    /* node 1 removes itself while leading */
    end = now_ms() + 15000;
    while (ok && wait_leader(c, ALL, 2000) != 1 && now_ms() < end)
        sleep_ms(20);
    STEP(wait_leader(c, ALL, 100) == 1, "node 1 leads again (preferred)");
    uint64_t term1 = status_of(c, 1).term;
    end = now_ms() + 15000;
    do {
        rc = ok ? group_change_member(c->g[1], GROUP_REMOVE, 1, TIMEOUT_MS, NULL) : 0;
        if (rc == -QERR_CONFCHANGE || rc == -QERR_TRANSFER)
            sleep_ms(20);
    } while ((rc == -QERR_CONFCHANGE || rc == -QERR_TRANSFER) && now_ms() < end);
    STEP(rc == 0, "node 1 (the leader) removes itself");
    uint64_t term_removed = status_of(c, 1).term;
    const unsigned REST = 1u << 2 | 1u << 3 | 1u << 4;
    lead = wait_leader(c, REST, 10000);
    STEP(lead >= 2, "a new leader among 2, 3, 4");
    mraft_group_status_t s1 = status_of(c, 1);
    STEP(s1.member == 0 && s1.role != RAFT_LEADER, "node 1 is in no configuration");
    /* (the new leader applies the removal once it knows it committed: bounded wait) */
    for (end = now_ms() + 5000; lead >= 2 && applied_role(c, lead, 1) && now_ms() < end;)
        sleep_ms(5);
    STEP(lead >= 2 && applied_role(c, lead, 1) == 0,
         "1 is out of the leader's configuration");
    printf("# node 1 removed in term %llu; new leader %d in term %llu\n",
           (unsigned long long)term1, lead, (unsigned long long)status_of(c, lead).term);

    /* the others drop node 1 from their transports; its dials are refused from then on */
    uint64_t refused0[NN + 1] = { 0 }, q;
    for (int id = 2; id <= NN; id++) {
        group_node_transport_counters(c->node[id], &q, &refused0[id]);
        STEP(group_node_remove_peer(c->node[id], 1) == 0, "remove peer 1");
        STEP(group_node_remove_peer(c->node[id], 1) == -QERR_NOTFOUND, "remove peer 1 twice");
    }
    bool refused = false;
    end = now_ms() + 15000;
    while (ok && !refused && now_ms() < end) {
        refused = true;
        for (int id = 2; id <= NN; id++) {
            uint64_t r;
            group_node_transport_counters(c->node[id], &q, &r);
            refused &= r > refused0[id];
        }
        sleep_ms(20);
    }
    STEP(refused, "nodes 2, 3, 4 refuse node 1's dials");
    STEP(writes_go_on(&w, 100, 15000), "writes after the removal");
    lead = wait_leader(c, REST, 5000);
    STEP(lead >= 2, "a leader among 2, 3, 4 after the removal");
    s1 = status_of(c, 1);
    STEP(s1.role == RAFT_FOLLOWER && s1.term == term_removed,
         "node 1 never campaigned since its removal (its term has not moved)");

    /* node 1's directory is lost: it comes back as a new member (remove, then add: its old
     * membership is gone), learner first, caught up from a snapshot, then a voter */
    stop_node(c, 1);
    ks_clear(&c->ks[1]);
    nftw(c->dir[1], rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    mkdir(c->dir[1], 0755);
    STEP(start_node(c, 1, true) == 0, "node 1 starts again, empty");
    for (int id = 2; ok && id <= NN; id++)
        STEP(group_node_add_peer(c->node[id], 1, c->addr[1]) == 0, "add peer 1 again");
    STEP((rc = change(c, REST, GROUP_ADD_LEARNER, 1, 10000)) == 0, "ADD_LEARNER 1 (wiped)");
    end = now_ms() + 20000;
    while (ok && now_ms() < end && !(status_of(c, 1).installs >= 1 &&
                                     status_of(c, 1).member == RAFT_LEARNER))
        sleep_ms(5);
    STEP(status_of(c, 1).installs >= 1, "the wiped node 1 caught up by InstallSnapshot");
    STEP((rc = change(c, REST, GROUP_PROMOTE, 1, 15000)) == 0, "PROMOTE 1 (wiped)");
    STEP(writes_go_on(&w, 50, 15000), "writes after node 1 rejoined");

    w.stop = 1;
    pthread_join(tw, NULL);
    /* every acknowledged write applied exactly once on every member */
    for (int id = 1; ok && id <= NN; id++)
        STEP(group_read_barrier(c->g[id], 5000) == 0, "read barrier on a member");
    int missing = 0, acked = acked_count(&w);
    for (int id = 1; ok && id <= NN; id++)
        for (int k = 0; k < w.n; k++) {
            char key[32];
            snprintf(key, sizeof(key), "w%d", k);
            missing += w.acked[k] && !ks_has(&c->ks[id], key);
        }
    /* the last write's apply on nodes 3 and 4 may trail node 2's acknowledgement: the
     * barriers above settle it, so the states must be equal now */
    uint64_t twice = 0, bad = 0;
    for (int id = 1; id <= NN; id++) {
        twice += c->ks[id].twice;
        bad += c->ks[id].bad;
    }
    printf("# writer: %d proposed, %d acknowledged, %d failed (first %s)\n", w.n, acked,
           w.failed, w.failed ? qerr_str(w.first_rc) : "-");
    STEP(missing == 0, "every acknowledged write is on nodes 1, 2, 3, 4");
    STEP(twice == 0 && bad == 0, "nothing applied twice or out of order");
    /* (a write that failed may still apply somewhere after the barriers: wait, bounded) */
    bool same = false;
    for (end = now_ms() + 5000; ok && !same; sleep_ms(10)) {
        same = ks_equal(&c->ks[2], &c->ks[1]) && ks_equal(&c->ks[2], &c->ks[3]) &&
               ks_equal(&c->ks[2], &c->ks[4]);
        if (now_ms() > end)
            break;
    }
    STEP(same, "nodes 1, 2, 3, 4 hold the same state");
    if (!ok)
        printf("# failed at: %s (last rc %s)\n", why, qerr_str(rc));
#undef STEP
    free(w.acked);
    pthread_mutex_destroy(&w.mu);
    cluster_free(c);
    CHECK(ok);
}

/* ---- transport peers at run time --------------------------------------------------------- */

static void drop_msg(void *ctx, uint64_t from, uint32_t group, raft_msg_t *m)
{
    (void)ctx;
    (void)from;
    (void)group;
    (void)m;
}

static void quiet_tlog(void *ctx, int level, const char *line)
{
    (void)ctx;
    (void)level;
    quiet_log(NULL, line);
}

/* Polls a (through the mraft_tcp module, no loop running) and b until a sees b connected,
 * for at most ms. */
static bool pump_until_up(mraft_tcp_t *a, transport_t *b, uint64_t bid, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    transport_t *ta = mraft_tcp_transport(a);
    while (now_ms() < end) {
        transport_poll(ta, 5);
        transport_poll(b, 5);
        if (transport_connected(ta, bid))
            return true;
    }
    return false;
}

TEST(test_peer_add_remove)
{
    char aaddr[32], baddr[32];
    snprintf(aaddr, sizeof(aaddr), "127.0.0.1:%u", (unsigned)free_port());
    snprintf(baddr, sizeof(baddr), "127.0.0.1:%u", (unsigned)free_port());
    transport_config_t ca = { .id = 1, .cluster_id = CLUSTER_ID, .listen = aaddr,
                              .max_frame = 128 << 10, .max_queue_bytes = 1 << 20,
                              .log = quiet_tlog };
    transport_config_t cb = { .id = 2, .cluster_id = CLUSTER_ID, .listen = baddr,
                              .deliver = drop_msg, .log = quiet_tlog };
    mraft_tcp_t *a = NULL;
    transport_t *b = NULL;
    CHECK_EQ(mraft_tcp_new(&ca, &a, NULL), 0);
    if (transport_new(&cb, &b, NULL) != 0) {
        mraft_tcp_free(a);
        CHECK(0);
    }
    bool ok = true;
    ok &= mraft_tcp_add_peer(a, 0, baddr) == -QERR_INVAL;
    ok &= mraft_tcp_add_peer(a, 1, baddr) == -QERR_INVAL;
    ok &= mraft_tcp_add_peer(a, 2, "no-port") == -QERR_INVAL;
    ok &= mraft_tcp_add_peer(a, 2, baddr) == 0;
    ok &= mraft_tcp_add_peer(a, 2, baddr) == -QERR_EXISTS;
    ok &= transport_add_peer(b, 1, aaddr) == 0;
    ok &= pump_until_up(a, b, 2, 5000);
    /* b stops reading: a's frames pile up in its queue once the socket buffers are full */
    transport_t *ta = mraft_tcp_transport(a);
    static uint8_t chunk[60000];
    raft_msg_t m = { .type = RAFT_MSG_SNAPSHOT, .from = 1, .to = 2, .term = 1,
                     .snap = { .index = 10, .term = 1, .conf = { .n = 1, .s = { { 1, RAFT_VOTER } } } },
                     .len = sizeof(chunk), .data = chunk };
    transport_peer_stats_t ps = { 0 };
    for (int i = 0; ok && i < 10000; i++) {
        int rc = transport_send(ta, 7, &m);
        transport_flush(ta);
        ok &= transport_peer_stats(ta, 2, &ps) == 0;
        if (rc == -QERR_BUSY || ps.queued_bytes >= 256 << 10)
            break;
    }
    printf("# %zu bytes queued for peer 2 when it is removed\n", ok ? ps.queued_bytes : 0);
    ok &= ps.queued_bytes > 0;
    ok &= ps.queued_bytes <= 1 << 20;    /* the queue's bound */
    ok &= mraft_tcp_remove_peer(a, 2) == 0;
    ok &= mraft_tcp_remove_peer(a, 2) == -QERR_NOTFOUND;
    ok &= transport_peer_stats(ta, 2, &ps) == -QERR_NOTFOUND;
    ok &= mraft_tcp_peer_stats(a, 2, &ps) == -QERR_NOTFOUND;
    ok &= transport_send(ta, 7, &m) == -QERR_NOTFOUND;
    /* added again: a dials b, whose old connection is replaced by the new one */
    ok &= mraft_tcp_add_peer(a, 2, baddr) == 0;
    ok &= pump_until_up(a, b, 2, 5000);
    m.len = 100;
    ok &= transport_send(ta, 7, &m) == 0;
    transport_free(b);
    mraft_tcp_free(a);
    CHECK(ok);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    RUN(test_peer_add_remove);
    RUN(test_grow_and_shrink);
    return CHECK_DONE();
}
