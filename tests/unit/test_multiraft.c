/* tests/unit/test_multiraft.c — the node loop (cluster/mraft.h): 3 nodes × 4 Raft groups in
 * one process over an in-process network with cuttable links and an APPEND filter, each
 * node with its own data directory and real files. Elections and commits, NOTLEADER hints,
 * one fdatasync per loop iteration whatever the number of groups, a node killed and
 * reopened losing nothing acknowledged, catch-up by chunked InstallSnapshot after
 * compaction (and a restart from the received snapshot), read barriers on a lagging
 * follower, concurrent read barriers on a follower sharing READ_INDEX round trips and
 * staying linearizable, a cut-off minority whose proposals time out, and leader balancing
 * (preferred leaders spread over the nodes; a failed transfer not retried within the
 * backoff). Every wait is bounded. */
#include <ftw.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cluster/err.h"
#include "cluster/mraft.h"
#include "cluster/mraft_tcp.h"
#include "cluster/snapshot.h"
#include "tests/unit/check.h"

#define NN 3                       /* nodes 1..NN */
#define NG 4                       /* groups per node */
#define ALL ((1u << 1) | (1u << 2) | (1u << 3))
static const uint32_t GID[NG] = { 7, 8, 9, 12 };

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

/* ---- the test state machine: the list of applied commands ------------------------------ */

typedef struct tsm {
    pthread_mutex_t mu;
    uint64_t applied;              /* index of the last applied command */
    size_t n, cap;
    char **cmd;                    /* NUL-terminated copies */
    int bad;                       /* apply out of order */
} tsm_t;

static void tsm_clear(tsm_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->cmd[i]);
    s->n = 0;
    s->applied = 0;
}

static void tsm_push(tsm_t *s, const char *c, size_t len)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->cmd = realloc(s->cmd, s->cap * sizeof(*s->cmd));
    }
    s->cmd[s->n++] = strndup(c, len);
}

static void tsm_apply(void *ctx, uint64_t index, const void *cmd, size_t len, sm_result_t *res)
{
    tsm_t *s = ctx;
    pthread_mutex_lock(&s->mu);
    if (index <= s->applied)
        s->bad++;
    s->applied = index;
    tsm_push(s, cmd, len);
    if (res) {
        res->code = 0;
        res->len = 8;
        memcpy(res->data, &index, 8);
    }
    pthread_mutex_unlock(&s->mu);
}

static int tsm_snapshot(void *ctx, snap_writer_t *w)
{
    tsm_t *s = ctx;
    pthread_mutex_lock(&s->mu);
    uint64_t h[2] = { s->applied, s->n };
    int rc = snap_writer_put(w, h, sizeof(h));
    for (size_t i = 0; rc == 0 && i < s->n; i++) {
        uint32_t len = (uint32_t)strlen(s->cmd[i]);
        rc = snap_writer_put(w, &len, 4);
        if (rc == 0)
            rc = snap_writer_put(w, s->cmd[i], len);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int tsm_restore(void *ctx, snap_reader_t *r)
{
    tsm_t *s = ctx;
    uint64_t h[2];
    char buf[256];
    pthread_mutex_lock(&s->mu);
    tsm_clear(s);
    int rc = snap_reader_get(r, h, sizeof(h));
    for (uint64_t i = 0; rc == 0 && i < h[1]; i++) {
        uint32_t len;
        rc = snap_reader_get(r, &len, 4);
        if (rc == 0 && len >= sizeof(buf))
            rc = -QERR_CORRUPT;
        if (rc == 0)
            rc = snap_reader_get(r, buf, len);
        if (rc == 0)
            tsm_push(s, buf, len);
    }
    if (rc == 0)
        s->applied = h[0];
    else
        tsm_clear(s);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static const sm_ops_t tsm_ops = { .apply = tsm_apply, .snapshot = tsm_snapshot,
                                  .restore = tsm_restore };

static bool tsm_has(tsm_t *s, const char *c)
{
    bool found = false;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->n && !found; i++)
        found = strcmp(s->cmd[i], c) == 0;
    pthread_mutex_unlock(&s->mu);
    return found;
}

/* 1 if a's list is a prefix of b's (or equal), 0 otherwise. */
static bool tsm_prefix(tsm_t *a, tsm_t *b)
{
    bool ok = true;
    pthread_mutex_lock(&a->mu);
    pthread_mutex_lock(&b->mu);
    if (a->n > b->n)
        ok = false;
    for (size_t i = 0; ok && i < a->n; i++)
        ok = strcmp(a->cmd[i], b->cmd[i]) == 0;
    pthread_mutex_unlock(&b->mu);
    pthread_mutex_unlock(&a->mu);
    return ok;
}

/* ---- the cluster: nodes, an in-process network ----------------------------------------- */

typedef struct tcl tcl_t;

/* A message held back by the network, to deliver at `due` (ms, now_ms). */
typedef struct delayed {
    struct delayed *next;
    uint64_t due, to;
    uint32_t group;
    raft_msg_t m;                  /* owns its memory */
} delayed_t;

typedef struct ep {
    tcl_t *c;
    uint64_t id;
} ep_t;

typedef struct tnode {
    mraft_node_t *n;
    tsm_t sm[NG];
    char dir[128];
} tnode_t;

struct tcl {
    char base[64];
    mraft_config_t cfg;            /* template; id and dir set per node */
    tnode_t nd[NN + 1];
    ep_t ep[NN + 1];
    pthread_mutex_t net_mu;
    mraft_node_t *live[NN + 1];    /* delivery targets, under net_mu */
    bool cut[NN + 1][NN + 1];      /* cut[a][b]: a's messages to b are lost */
    bool block_append[NN + 1][NG]; /* APPEND/SNAPSHOT to that node of that group are lost */
    mraft_tcp_t *tcp[NN + 1];      /* set: the nodes talk TCP on 127.0.0.1 instead */
    char acked[NG][512][48];       /* acknowledged commands per group */
    int n_acked[NG];
    bool drop_timeout_now;         /* TIMEOUT_NOW messages are lost (transfers fail) */
    bool drop_read_index;          /* READ_INDEX messages are lost */
    unsigned delay_resp_ms;        /* READ_INDEX_RESP messages are held this long
                                      (delayed_main delivers them) */
    struct delayed *delayed, *delayed_tail; /* held messages, oldest first */
    uint64_t read_index_msgs[NN + 1][NG]; /* READ_INDEX sent (lost or not), by sender and
                                             group */
};

/* Leader balancing cases: each group's preferred leader (0: none, mraft_add_group), and a
 * node cut off from the start (0: none). Set before cluster_new, cleared after. */
static uint64_t t_preferred[NG];
static int t_start_cut;

static int gidx(uint32_t gid)
{
    for (int i = 0; i < NG; i++)
        if (GID[i] == gid)
            return i;
    return -1;
}

static void net_send(void *ctx, uint64_t to, uint32_t group, const raft_msg_t *m)
{
    ep_t *ep = ctx;
    tcl_t *c = ep->c;
    pthread_mutex_lock(&c->net_mu);
    int gi = gidx(group);
    if (gi >= 0 && m->type == RAFT_MSG_READ_INDEX)
        c->read_index_msgs[ep->id][gi]++;
    bool lost = to < 1 || to > NN || !c->live[to] || c->cut[ep->id][to] || gi < 0 ||
                (c->block_append[to][gi] &&
                 (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_SNAPSHOT)) ||
                (c->drop_timeout_now && m->type == RAFT_MSG_TIMEOUT_NOW) ||
                (c->drop_read_index && m->type == RAFT_MSG_READ_INDEX);
    if (!lost && c->delay_resp_ms && m->type == RAFT_MSG_READ_INDEX_RESP) {
        delayed_t *d = calloc(1, sizeof(*d));
        if (d && raft_msg_clone(&d->m, m) == 0) {
            d->due = now_ms() + c->delay_resp_ms;
            d->to = to;
            d->group = group;
            if (c->delayed_tail)
                c->delayed_tail->next = d;
            else
                c->delayed = d;
            c->delayed_tail = d;
        } else {
            free(d);
        }
    } else if (!lost) {
        raft_msg_t copy;
        if (raft_msg_clone(&copy, m) == 0)
            mraft_recv(c->live[to], group, &copy);   /* moves copy; frees it if refused */
    }
    pthread_mutex_unlock(&c->net_mu);
}

/* Delivers (or, all true, drops) the held messages that are due. c->net_mu held. */
static void deliver_delayed_locked(tcl_t *c, bool all)
{
    uint64_t now = now_ms();
    while (c->delayed && (all || c->delayed->due <= now)) {
        delayed_t *d = c->delayed;
        c->delayed = d->next;
        if (!c->delayed)
            c->delayed_tail = NULL;
        if (!all && c->live[d->to])
            mraft_recv(c->live[d->to], d->group, &d->m);
        else
            raft_msg_free(&d->m);
        free(d);
    }
}

static void cut_node(tcl_t *c, int i, bool cut)
{
    pthread_mutex_lock(&c->net_mu);
    for (int j = 1; j <= NN; j++)
        if (j != i)
            c->cut[i][j] = c->cut[j][i] = cut;
    pthread_mutex_unlock(&c->net_mu);
}

static void node_connect(tcl_t *c, int i)
{
    pthread_mutex_lock(&c->net_mu);
    c->live[i] = c->nd[i].n;
    pthread_mutex_unlock(&c->net_mu);
}

/* Opens node i from its data directory and starts it; nothing is delivered to it until
 * node_connect (what it sends goes out). */
static int node_open(tcl_t *c, int i)
{
    tnode_t *nd = &c->nd[i];
    mraft_config_t cfg = c->cfg;
    mraft_transport_t tr = { .send = net_send, .ctx = &c->ep[i] };
    if (c->tcp[i])
        mraft_tcp_ops(c->tcp[i], &tr);
    uint64_t voters[NN];
    char *msg = NULL;
    char base[sizeof(c->base)];
    memcpy(base, c->base, sizeof(base));   /* (same struct: keep -Wrestrict quiet) */
    snprintf(nd->dir, sizeof(nd->dir), "%s/n%d", base, i);
    mkdir(nd->dir, 0755);
    cfg.id = (uint64_t)i;
    cfg.dir = nd->dir;
    cfg.seed = 1000 + (uint64_t)i;
    for (int k = 0; k < NN; k++)
        voters[k] = (uint64_t)(k + 1);
    int rc = mraft_open(&cfg, &tr, &nd->n, &msg);
    for (int g = 0; rc == 0 && g < NG; g++) {
        pthread_mutex_init(&nd->sm[g].mu, NULL);
        mraft_members_t mm = { .voters = voters, .n_voters = NN, .preferred = t_preferred[g] };
        rc = mraft_add_group_members(nd->n, GID[g], &mm, &tsm_ops, &nd->sm[g], &msg);
    }
    if (rc == 0 && c->tcp[i])
        mraft_tcp_attach(c->tcp[i], nd->n);
    if (rc == 0)
        rc = mraft_start(nd->n);
    if (rc) {
        printf("# node %d up: %s (%s)\n", i, qerr_str(rc), msg ? msg : "");
        free(msg);
        return rc;
    }
    return 0;
}

static int node_up(tcl_t *c, int i)
{
    int rc = node_open(c, i);
    if (rc == 0)
        node_connect(c, i);
    return rc;
}

/* Stops node i as a crash would (nothing more is synced) and forgets its state machines. */
static void node_kill(tcl_t *c, int i)
{
    tnode_t *nd = &c->nd[i];
    if (!nd->n)
        return;
    pthread_mutex_lock(&c->net_mu);
    c->live[i] = NULL;
    pthread_mutex_unlock(&c->net_mu);
    mraft_close(nd->n);
    nd->n = NULL;
    for (int g = 0; g < NG; g++) {
        tsm_clear(&nd->sm[g]);
        free(nd->sm[g].cmd);
        pthread_mutex_destroy(&nd->sm[g].mu);
        memset(&nd->sm[g], 0, sizeof(nd->sm[g]));
    }
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

static void tcp_log(void *ctx, int level, const char *line)
{
    (void)ctx;
    if (level == TRANSPORT_LOG_WARN)
        printf("# transport: %s\n", line);
}

/* Gives every node a TCP transport on 127.0.0.1 (ephemeral ports), each knowing the others. */
static int tcp_setup(tcl_t *c)
{
    char *msg = NULL;
    for (int i = 1; i <= NN; i++) {
        transport_config_t tc = { .id = (uint64_t)i, .cluster_id = 77,
                                  .listen = "127.0.0.1:0", .backoff_min_ms = 10,
                                  .log = tcp_log };
        int rc = mraft_tcp_new(&tc, &c->tcp[i], &msg);
        if (rc) {
            printf("# mraft_tcp_new: %s (%s)\n", qerr_str(rc), msg ? msg : "");
            free(msg);
            return rc;
        }
    }
    for (int i = 1; i <= NN; i++)
        for (int j = 1; j <= NN; j++) {
            char addr[32];
            snprintf(addr, sizeof(addr), "127.0.0.1:%u",
                     (unsigned)transport_port(mraft_tcp_transport(c->tcp[j])));
            if (i != j && transport_add_peer(mraft_tcp_transport(c->tcp[i]), (uint64_t)j,
                                             addr))
                return -QERR_INVAL;
        }
    return 0;
}

static void cluster_free(tcl_t *c);

static tcl_t *cluster_new2(void (*tweak)(mraft_config_t *), bool tcp)
{
    tcl_t *c = calloc(1, sizeof(*c));
    snprintf(c->base, sizeof(c->base), "/tmp/test_multiraft.XXXXXX");
    if (!mkdtemp(c->base)) {
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->net_mu, NULL);
    c->cfg.tick_ms = 10;
    c->cfg.election_tick = 10;
    c->cfg.heartbeat_tick = 1;
    c->cfg.timeout_ms = 2000;
    if (tweak)
        tweak(&c->cfg);
    if (tcp && tcp_setup(c)) {
        cluster_free(c);
        return NULL;
    }
    if (t_start_cut)
        cut_node(c, t_start_cut, true);
    for (int i = 1; i <= NN; i++) {
        c->ep[i] = (ep_t){ c, (uint64_t)i };
        if (node_up(c, i)) {
            cluster_free(c);
            return NULL;
        }
    }
    return c;
}

static tcl_t *cluster_new(void (*tweak)(mraft_config_t *))
{
    return cluster_new2(tweak, false);
}

static void cluster_free(tcl_t *c)
{
    if (!c)
        return;
    for (int i = 1; i <= NN; i++) {
        node_kill(c, i);
        mraft_tcp_free(c->tcp[i]);
    }
    deliver_delayed_locked(c, true);   /* (every node is gone: nothing else runs) */
    nftw(c->base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    pthread_mutex_destroy(&c->net_mu);
    free(c);
}

static mraft_group_status_t st_of(tcl_t *c, int i, int g)
{
    mraft_group_status_t st;
    memset(&st, 0, sizeof(st));
    if (c->nd[i].n)
        mraft_status(c->nd[i].n, GID[g], &st);
    return st;
}

/* The leader of group g all live nodes in mask agree on, or 0. */
static int agreed_leader(tcl_t *c, int g, unsigned mask)
{
    uint64_t l = 0;
    for (int i = 1; i <= NN; i++) {
        if (!(mask & (1u << i)) || !c->nd[i].n)
            continue;
        mraft_group_status_t st = st_of(c, i, g);
        if (!st.leader || (l && st.leader != l))
            return 0;
        l = st.leader;
    }
    if (!l || !(mask & (1u << l)) || st_of(c, (int)l, g).role != RAFT_LEADER)
        return 0;
    return (int)l;
}

static bool wait_leaders(tcl_t *c, unsigned mask, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    for (;;) {
        int ok = 0;
        for (int g = 0; g < NG; g++)
            ok += agreed_leader(c, g, mask) != 0;
        if (ok == NG)
            return true;
        if (now_ms() > end)
            return false;
        sleep_ms(5);
    }
}

/* Proposes cmd to group g through the nodes of mask, following leader hints and retrying
 * refusals until ms passes (a retry after a timeout may apply a command twice). */
static int propose_any(tcl_t *c, int g, const char *cmd, unsigned mask, unsigned ms)
{
    uint64_t end = now_ms() + ms, hint = 0;
    int i = 1, rc = -QERR_TIMEOUT;
    while (now_ms() < end) {
        if (hint && (mask & (1u << hint)) && c->nd[hint].n)
            i = (int)hint;
        else
            do
                i = i % NN + 1;
            while (!(mask & (1u << i)) || !c->nd[i].n);
        sm_result_t res;
        rc = mraft_propose(c->nd[i].n, GID[g], cmd, strlen(cmd), &res, 500, &hint);
        if (rc == 0)
            return 0;
        if (rc != -QERR_NOTLEADER || !hint)
            sleep_ms(10);
    }
    return rc;
}

static int propose_acked(tcl_t *c, int g, const char *cmd, unsigned mask)
{
    int rc = propose_any(c, g, cmd, mask, 5000);
    if (rc == 0 && c->n_acked[g] < 512)
        snprintf(c->acked[g][c->n_acked[g]++], 48, "%s", cmd);
    return rc;
}

/* Waits until every live node of mask has applied the same index of every group. */
static bool wait_converged(tcl_t *c, unsigned mask, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    for (;;) {
        int ok = 0;
        for (int g = 0; g < NG; g++) {
            uint64_t a = UINT64_MAX;
            bool same = true;
            for (int i = 1; i <= NN; i++) {
                if (!(mask & (1u << i)) || !c->nd[i].n)
                    continue;
                mraft_group_status_t st = st_of(c, i, g);
                if (a != UINT64_MAX && st.applied != a)
                    same = false;
                if (st.applied != st.commit)
                    same = false;
                a = st.applied;
            }
            ok += same;
        }
        if (ok == NG)
            return true;
        if (now_ms() > end)
            return false;
        sleep_ms(5);
    }
}

/* Every node of mask holds every acknowledged command, all apply in order, and their state
 * machines are equal. */
static bool check_state(tcl_t *c, unsigned mask)
{
    int first = 0;
    for (int i = 1; i <= NN; i++) {
        if (!(mask & (1u << i)) || !c->nd[i].n)
            continue;
        for (int g = 0; g < NG; g++) {
            tsm_t *s = &c->nd[i].sm[g];
            if (s->bad) {
                printf("# node %d group %u applied out of order\n", i, GID[g]);
                return false;
            }
            for (int k = 0; k < c->n_acked[g]; k++)
                if (!tsm_has(s, c->acked[g][k])) {
                    printf("# node %d group %u lost acknowledged %s\n", i, GID[g],
                           c->acked[g][k]);
                    return false;
                }
            if (first && (!tsm_prefix(s, &c->nd[first].sm[g]) ||
                          !tsm_prefix(&c->nd[first].sm[g], s))) {
                printf("# nodes %d and %d differ in group %u\n", first, i, GID[g]);
                return false;
            }
        }
        if (!first)
            first = i;
    }
    return true;
}

/* ---- cases ------------------------------------------------------------------------------ */

static void elect_and_commit(tcl_t *c)
{
    char cmd[48];
    CHECK(wait_leaders(c, ALL, 3000));
    /* a follower refuses with the leader's id; the leader takes it */
    for (int g = 0; g < NG; g++) {
        int l = agreed_leader(c, g, ALL), f = l % NN + 1;
        uint64_t hint = 0;
        sm_result_t res;
        snprintf(cmd, sizeof(cmd), "first-%d", g);
        int rc = mraft_propose(c->nd[f].n, GID[g], cmd, strlen(cmd), &res, 1000, &hint);
        CHECK_EQ(rc, -QERR_NOTLEADER);
        CHECK_EQ(hint, l);
        memset(&res, 0, sizeof(res));
        rc = mraft_propose(c->nd[l].n, GID[g], cmd, strlen(cmd), &res, 2000, &hint);
        CHECK_EQ(rc, 0);
        CHECK_EQ(res.len, 8);   /* apply's result came back: the index it applied at */
        uint64_t at;
        memcpy(&at, res.data, 8);
        CHECK(at >= 2 && at <= st_of(c, l, g).applied);
        snprintf(c->acked[g][c->n_acked[g]++], 48, "%s", cmd);
    }
    /* then 20 commands per group from wherever the helper starts */
    for (int k = 0; k < 20; k++)
        for (int g = 0; g < NG; g++) {
            snprintf(cmd, sizeof(cmd), "c-%d-%d", g, k);
            CHECK_EQ(propose_acked(c, g, cmd, ALL), 0);
        }
    CHECK(wait_converged(c, ALL, 3000));
    CHECK(check_state(c, ALL));
    /* unknown group, too big */
    CHECK_EQ(mraft_propose(c->nd[1].n, 99, "x", 1, NULL, 100, NULL), -QERR_NOTFOUND);
    CHECK_EQ(mraft_read_barrier(c->nd[1].n, 99, 100, NULL), -QERR_NOTFOUND);
}

TEST(test_elect_and_commit)
{
    tcl_t *c = cluster_new(NULL);
    CHECK(c);
    elect_and_commit(c);
    cluster_free(c);
}

typedef struct loader {
    tcl_t *c;
    int g, n, fails;
} loader_t;

static void *load_main(void *arg)
{
    loader_t *L = arg;
    char cmd[48];
    for (int k = 0; k < L->n; k++) {
        snprintf(cmd, sizeof(cmd), "load-%d-%d", L->g, k);
        if (propose_any(L->c, L->g, cmd, ALL, 5000))
            L->fails++;
    }
    return NULL;
}

static void one_sync_per_iteration(tcl_t *c)
{
    mraft_stats_t a[NN + 1], b[NN + 1];
    pthread_t th[NG * 4];
    loader_t L[NG * 4];
    CHECK(wait_leaders(c, ALL, 3000));
    for (int i = 1; i <= NN; i++)
        mraft_get_stats(c->nd[i].n, &a[i]);
    for (int t = 0; t < NG * 4; t++) {
        L[t] = (loader_t){ c, t % NG, 60, 0 };
        pthread_create(&th[t], NULL, load_main, &L[t]);
    }
    for (int t = 0; t < NG * 4; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < NG * 4; t++)
        CHECK_EQ(L[t].fails, 0);
    CHECK(wait_converged(c, ALL, 3000));
    for (int i = 1; i <= NN; i++) {
        mraft_get_stats(c->nd[i].n, &b[i]);
        uint64_t loops = b[i].loops - a[i].loops, syncs = b[i].syncs - a[i].syncs,
                 fsyncs = b[i].store.wal.syncs - a[i].store.wal.syncs,
                 persists = b[i].persists - a[i].persists,
                 entries = b[i].entries - a[i].entries;
        printf("# node %d: %llu iterations, %llu fdatasyncs, %llu group Readies persisted, "
               "%llu entries\n", i, (unsigned long long)loops, (unsigned long long)fsyncs,
               (unsigned long long)persists, (unsigned long long)entries);
        CHECK_EQ(b[i].failed, 0);
        /* every fdatasync of the store is the loop's one per iteration (no roll, no gc) */
        CHECK_EQ(fsyncs, syncs);
        CHECK(syncs > 0 && syncs <= loops);
        /* and the batches are shared: Readies of several groups (and entries of several
         * proposals) per fdatasync */
        CHECK(persists > syncs);
        CHECK(entries > syncs);
    }
}

TEST(test_one_fsync_per_iteration)
{
    tcl_t *c = cluster_new(NULL);
    CHECK(c);
    one_sync_per_iteration(c);
    cluster_free(c);
}

static void kill_and_reopen(tcl_t *c)
{
    char cmd[48];
    CHECK(wait_leaders(c, ALL, 3000));
    int k = agreed_leader(c, 0, ALL);   /* kill the leader of the first group */
    unsigned rest = ALL & ~(1u << k);
    for (int j = 0; j < 15; j++)
        for (int g = 0; g < NG; g++) {
            snprintf(cmd, sizeof(cmd), "before-%d-%d", g, j);
            CHECK_EQ(propose_acked(c, g, cmd, ALL), 0);
        }
    node_kill(c, k);
    for (int j = 0; j < 15; j++)
        for (int g = 0; g < NG; g++) {
            snprintf(cmd, sizeof(cmd), "during-%d-%d", g, j);
            CHECK_EQ(propose_acked(c, g, cmd, rest), 0);
        }
    CHECK(wait_converged(c, rest, 3000));
    CHECK_EQ(node_open(c, k), 0);
    /* rebuilt from its store alone (it hears nothing yet): a prefix of the others' log */
    int other = k % NN + 1;
    for (int g = 0; g < NG; g++) {
        CHECK(c->nd[k].sm[g].n > 0);
        CHECK(tsm_prefix(&c->nd[k].sm[g], &c->nd[other].sm[g]));
    }
    node_connect(c, k);
    for (int j = 0; j < 5; j++)
        for (int g = 0; g < NG; g++) {
            snprintf(cmd, sizeof(cmd), "after-%d-%d", g, j);
            CHECK_EQ(propose_acked(c, g, cmd, ALL), 0);
        }
    for (int g = 0; g < NG; g++)
        CHECK_EQ(mraft_read_barrier(c->nd[k].n, GID[g], 3000, NULL), 0);
    CHECK(wait_converged(c, ALL, 3000));
    CHECK(check_state(c, ALL));
}

TEST(test_kill_and_reopen)
{
    tcl_t *c = cluster_new(NULL);
    CHECK(c);
    kill_and_reopen(c);
    cluster_free(c);
}

static void small_snapshots(mraft_config_t *cfg)
{
    cfg->snapshot_bytes = 2048;
    cfg->snap_chunk_bytes = 256;
    cfg->segment_bytes = 4096;       /* and collect the shared log's old segments often */
}

static void snapshot_catch_up(tcl_t *c)
{
    char cmd[48];
    CHECK(wait_leaders(c, ALL, 3000));
    const int f = 3;
    unsigned rest = ALL & ~(1u << f);
    uint64_t behind[NG];
    for (int g = 0; g < NG; g++)
        behind[g] = st_of(c, f, g).applied;
    cut_node(c, f, true);
    for (int j = 0; j < 100; j++)
        for (int g = 0; g < NG; g++) {
            /* incompressible enough that the snapshot file spans many 256-byte chunks */
            snprintf(cmd, sizeof(cmd), "snap-%d-%d-%08x", g, j,
                     (unsigned)((uint32_t)j * 2654435761u ^ (uint32_t)g * 40503u));
            CHECK_EQ(propose_acked(c, g, cmd, rest), 0);
        }
    /* the others have compacted past what f holds: only a snapshot can catch it up */
    for (int g = 0; g < NG; g++)
        for (int i = 1; i <= NN; i++)
            if (i != f)
                CHECK(st_of(c, i, g).snap_index > behind[g] + 1);
    mraft_stats_t s1;
    mraft_get_stats(c->nd[1].n, &s1);
    printf("# node 1: %llu snapshots, %llu gc runs, store %llu segments %llu bytes, "
           "%llu appends\n", (unsigned long long)s1.snapshots, (unsigned long long)s1.gcs,
           (unsigned long long)s1.store.wal.segments, (unsigned long long)s1.store.wal.bytes,
           (unsigned long long)s1.store.wal.appends);
    CHECK(s1.snapshots >= NG);
    CHECK(s1.gcs >= 2);
    /* old segments were collected: the store holds less than even the smallest records it
     * was given would take (a record is at least its header and a store header) */
    CHECK(s1.store.wal.bytes < s1.store.wal.appends * (WAL_RECORD_HEADER + 6));
    cut_node(c, f, false);
    CHECK(wait_converged(c, ALL, 5000));
    for (int g = 0; g < NG; g++)
        CHECK(st_of(c, f, g).installs >= 1);
    CHECK(check_state(c, ALL));
    /* a restart of f comes back from the received snapshots plus its store */
    node_kill(c, f);
    CHECK_EQ(node_up(c, f), 0);
    for (int g = 0; g < NG; g++)
        CHECK(c->nd[f].sm[g].n >= 100);
    CHECK(wait_converged(c, ALL, 3000));
    CHECK(check_state(c, ALL));
}

TEST(test_snapshot_catch_up)
{
    tcl_t *c = cluster_new(small_snapshots);
    CHECK(c);
    snapshot_catch_up(c);
    cluster_free(c);
}

typedef struct unblocker {
    tcl_t *c;
    int node, g;
    unsigned after_ms;
} unblocker_t;

static void *unblock_main(void *arg)
{
    unblocker_t *u = arg;
    sleep_ms(u->after_ms);
    pthread_mutex_lock(&u->c->net_mu);
    u->c->block_append[u->node][u->g] = false;
    pthread_mutex_unlock(&u->c->net_mu);
    return NULL;
}

static void read_barrier_on_follower(tcl_t *c)
{
    CHECK(wait_leaders(c, ALL, 3000));
    for (int g = 0; g < NG; g++) {
        int l = agreed_leader(c, g, ALL), f = l % NN + 1;
        char cmd[48];
        snprintf(cmd, sizeof(cmd), "rb-%d", g);
        /* f stops receiving the group's log: the write commits on the other two */
        pthread_mutex_lock(&c->net_mu);
        c->block_append[f][g] = true;
        pthread_mutex_unlock(&c->net_mu);
        sm_result_t res;
        CHECK_EQ(mraft_propose(c->nd[l].n, GID[g], cmd, strlen(cmd), &res, 2000, NULL), 0);
        sleep_ms(30);
        CHECK(!tsm_has(&c->nd[f].sm[g], cmd));   /* a plain local read would be stale */
        /* the barrier on f must wait until f has applied the write */
        pthread_t th;
        unblocker_t u = { c, f, g, 150 };
        pthread_create(&th, NULL, unblock_main, &u);
        uint64_t idx = 0, t0 = now_ms();
        int rc = mraft_read_barrier(c->nd[f].n, GID[g], 3000, &idx);
        uint64_t waited = now_ms() - t0;
        pthread_join(th, NULL);
        CHECK_EQ(rc, 0);
        CHECK(tsm_has(&c->nd[f].sm[g], cmd));
        CHECK(waited >= 100);
        CHECK(idx >= st_of(c, f, g).snap_index);
        /* and on the leader itself */
        CHECK_EQ(mraft_read_barrier(c->nd[l].n, GID[g], 2000, NULL), 0);
    }
}

TEST(test_read_barrier_on_follower)
{
    tcl_t *c = cluster_new(NULL);
    CHECK(c);
    read_barrier_on_follower(c);
    cluster_free(c);
}

/* Concurrent read barriers on a follower share READ_INDEX round trips (mraft.c issue_reads:
 * one request per group per loop iteration for every read due), and stay linearizable: a
 * writer proposes on the leader without pause, and every read must return a read index,
 * and find the follower's state machine applied, at least up to the last write that was
 * acknowledged before the read began. Then the same while the follower's READ_INDEX
 * messages are lost for a while: the batches are asked again and every read completes;
 * and while the leader's answers are slow, so that a read wrongly joining a request sent
 * before it began would see a write acknowledged before it began missing. */
#define BR_READERS 16
#define BR_READS 25

typedef struct brshared {
    tcl_t *c;
    int f, l, g;
    int stop;                      /* atomic: the writer stops */
    uint64_t acked;                /* atomic: index of the last acknowledged write */
    int wfails;                    /* writer's failed proposals (any rc but 0) */
} brshared_t;

typedef struct breader {
    brshared_t *sh;
    int n;                         /* reads to do */
    unsigned jitter_ms;            /* > 0: sleep 0..jitter_ms-1 ms before each read */
    unsigned seed;
    int ok, failed, stale;         /* stale: index or applied below an earlier ack */
    int first_rc;
} breader_t;

static void *bwriter_main(void *arg)
{
    brshared_t *sh = arg;
    char cmd[48];
    for (int k = 0; !__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE); k++) {
        sm_result_t res;
        snprintf(cmd, sizeof(cmd), "br-w-%d", k);
        int rc = mraft_propose(sh->c->nd[sh->l].n, GID[sh->g], cmd, strlen(cmd), &res, 2000,
                               NULL);
        if (rc || res.len != 8) {
            sh->wfails++;
            sleep_ms(5);
            continue;
        }
        uint64_t at;
        memcpy(&at, res.data, 8);
        __atomic_store_n(&sh->acked, at, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void *breader_main(void *arg)
{
    breader_t *r = arg;
    brshared_t *sh = r->sh;
    tsm_t *s = &sh->c->nd[sh->f].sm[sh->g];
    for (int k = 0; k < r->n; k++) {
        if (r->jitter_ms)
            sleep_ms((unsigned)rand_r(&r->seed) % r->jitter_ms);
        uint64_t before = __atomic_load_n(&sh->acked, __ATOMIC_ACQUIRE), idx = 0;
        int rc = mraft_read_barrier(sh->c->nd[sh->f].n, GID[sh->g], 5000, &idx);
        if (rc) {
            if (!r->failed++)
                r->first_rc = rc;
            continue;
        }
        pthread_mutex_lock(&s->mu);
        uint64_t applied = s->applied;
        pthread_mutex_unlock(&s->mu);
        if (idx < before || applied < before)
            r->stale++;
        else
            r->ok++;
    }
    return NULL;
}

/* Runs n_readers readers of `reads` reads each on sh->f (each sleeping up to jitter_ms
 * before every read); returns the reads that succeeded and were not stale, prints the
 * others. */
static int run_readers(brshared_t *sh, int n_readers, int reads, unsigned jitter_ms)
{
    pthread_t th[BR_READERS];
    breader_t rd[BR_READERS];
    for (int t = 0; t < n_readers; t++) {
        rd[t] = (breader_t){ .sh = sh, .n = reads, .jitter_ms = jitter_ms,
                             .seed = (unsigned)t + 1 };
        pthread_create(&th[t], NULL, breader_main, &rd[t]);
    }
    int ok = 0;
    for (int t = 0; t < n_readers; t++) {
        pthread_join(th[t], NULL);
        ok += rd[t].ok;
        if (rd[t].failed || rd[t].stale)
            printf("# reader %d: %d failed (first: %s), %d stale\n", t, rd[t].failed,
                   qerr_str(rd[t].first_rc), rd[t].stale);
    }
    return ok;
}

typedef struct deliverer {
    tcl_t *c;
    int stop;                      /* atomic */
} deliverer_t;

/* Delivers held messages as they fall due, every millisecond, until stopped. */
static void *delayed_main(void *arg)
{
    deliverer_t *d = arg;
    while (!__atomic_load_n(&d->stop, __ATOMIC_ACQUIRE)) {
        pthread_mutex_lock(&d->c->net_mu);
        deliver_delayed_locked(d->c, false);
        pthread_mutex_unlock(&d->c->net_mu);
        sleep_ms(1);
    }
    return NULL;
}

/* Delivers READ_INDEX messages again after 300 ms. */
static void *heal_read_index_main(void *arg)
{
    tcl_t *c = arg;
    sleep_ms(300);
    pthread_mutex_lock(&c->net_mu);
    c->drop_read_index = false;
    pthread_mutex_unlock(&c->net_mu);
    return NULL;
}

static uint64_t read_index_sent(tcl_t *c, int i, int g)
{
    pthread_mutex_lock(&c->net_mu);
    uint64_t v = c->read_index_msgs[i][g];
    pthread_mutex_unlock(&c->net_mu);
    return v;
}

static void reads_batched(tcl_t *c)
{
    CHECK(wait_leaders(c, ALL, 3000));
    brshared_t sh = { .c = c, .g = 0 };
    sh.l = agreed_leader(c, sh.g, ALL);
    sh.f = sh.l % NN + 1;
    pthread_t wt;
    pthread_create(&wt, NULL, bwriter_main, &sh);
    /* phase 1: concurrent reads, every message delivered */
    uint64_t m0 = read_index_sent(c, sh.f, sh.g);
    int ok1 = run_readers(&sh, BR_READERS, BR_READS, 0);
    uint64_t m1 = read_index_sent(c, sh.f, sh.g);
    /* phase 2: the follower's READ_INDEX messages are lost for 300 ms (more than the two
     * election timeouts after which a read is asked again) while 8 readers start, then
     * delivered again: the batches are re-asked and every read completes */
    pthread_mutex_lock(&c->net_mu);
    c->drop_read_index = true;
    pthread_mutex_unlock(&c->net_mu);
    pthread_t ht;
    pthread_create(&ht, NULL, heal_read_index_main, c);
    int ok2 = run_readers(&sh, BR_READERS / 2, 2, 0);
    pthread_join(ht, NULL);
    /* phase 3: the leader's answers take 30 ms to arrive while writes keep being
     * acknowledged, and the readers start at random moments: a read that joined a request
     * sent before it began (wrong) would get an index below a write acknowledged before it
     * began */
    deliverer_t dv = { .c = c };
    pthread_t dt;
    pthread_create(&dt, NULL, delayed_main, &dv);
    pthread_mutex_lock(&c->net_mu);
    c->delay_resp_ms = 30;
    pthread_mutex_unlock(&c->net_mu);
    int ok3 = run_readers(&sh, BR_READERS, 10, 30);
    pthread_mutex_lock(&c->net_mu);
    c->delay_resp_ms = 0;
    pthread_mutex_unlock(&c->net_mu);
    sleep_ms(50);                        /* the last held answers fall due */
    __atomic_store_n(&dv.stop, 1, __ATOMIC_RELEASE);
    pthread_join(dt, NULL);
    __atomic_store_n(&sh.stop, 1, __ATOMIC_RELEASE);
    pthread_join(wt, NULL);
    int reads = BR_READERS * BR_READS;
    printf("# %d concurrent reads on follower %d: %llu READ_INDEX messages; %d writes "
           "acknowledged meanwhile (writer failures %d)\n", reads, sh.f,
           (unsigned long long)(m1 - m0), (int)__atomic_load_n(&sh.acked, __ATOMIC_RELAXED),
           sh.wfails);
    CHECK_EQ(ok1, reads);
    CHECK_EQ(ok2, BR_READERS / 2 * 2);
    CHECK_EQ(ok3, BR_READERS * 10);
    /* one request per read before batching; fewer now (a whole batch per request) */
    CHECK(m1 - m0 < (uint64_t)reads);
    CHECK(m1 > m0);
    CHECK(sh.acked > 0);
    CHECK(wait_converged(c, ALL, 3000));
    CHECK(check_state(c, ALL));
}

TEST(test_follower_reads_batched)
{
    tcl_t *c = cluster_new(NULL);
    CHECK(c);
    reads_batched(c);
    cluster_free(c);
}

typedef struct oneprop {
    mraft_node_t *n;
    int g, rc;
    unsigned ms;
    uint64_t hint;
    char cmd[48];
} oneprop_t;

static void *oneprop_main(void *arg)
{
    oneprop_t *o = arg;
    o->rc = mraft_propose(o->n, GID[o->g], o->cmd, strlen(o->cmd), NULL, o->ms, &o->hint);
    return NULL;
}

static void minority_times_out(tcl_t *c)
{
    char cmd[48];
    CHECK(wait_leaders(c, ALL, 3000));
    const int m = 1;
    unsigned rest = ALL & ~(1u << m);
    bool led[NG];
    for (int g = 0; g < NG; g++)
        led[g] = agreed_leader(c, g, ALL) == m;
    cut_node(c, m, true);
    /* at once on every group, before check-quorum deposes m where it leads */
    pthread_t th[NG];
    oneprop_t op[NG];
    for (int g = 0; g < NG; g++) {
        op[g] = (oneprop_t){ .n = c->nd[m].n, .g = g, .ms = 300 };
        snprintf(op[g].cmd, sizeof(op[g].cmd), "minority-%d", g);
        pthread_create(&th[g], NULL, oneprop_main, &op[g]);
    }
    for (int g = 0; g < NG; g++)
        pthread_join(th[g], NULL);
    for (int g = 0; g < NG; g++) {
        /* a leader cut off takes the proposal and can never commit it; a follower names
         * a leader the minority cannot reach */
        if (led[g])
            CHECK_EQ(op[g].rc, -QERR_TIMEOUT);
        else
            CHECK(op[g].rc == -QERR_NOTLEADER && op[g].hint != m);
        CHECK_EQ(mraft_read_barrier(c->nd[m].n, GID[g], 300, NULL), -QERR_TIMEOUT);
    }
    /* nothing proposed on the minority side commits, whoever it asks */
    for (int g = 0; g < NG; g++) {
        snprintf(cmd, sizeof(cmd), "minority2-%d", g);
        CHECK(propose_any(c, g, cmd, 1u << m, 400) != 0);
    }
    /* the majority elects where needed and keeps serving */
    for (int g = 0; g < NG; g++) {
        snprintf(cmd, sizeof(cmd), "majority-%d", g);
        CHECK_EQ(propose_acked(c, g, cmd, rest), 0);
    }
    cut_node(c, m, false);
    for (int g = 0; g < NG; g++)
        CHECK_EQ(mraft_read_barrier(c->nd[m].n, GID[g], 3000, NULL), 0);
    CHECK(wait_converged(c, ALL, 3000));
    CHECK(check_state(c, ALL));
}

TEST(test_minority_times_out)
{
    tcl_t *c = cluster_new(NULL);
    CHECK(c);
    minority_times_out(c);
    cluster_free(c);
}

/* The same node loops over the real TCP transport (cluster/mraft_tcp.h): elect, commit from
 * any node, and a read barrier on every replica sees every acknowledged write. */
static void over_tcp(tcl_t *c)
{
    elect_and_commit(c);
    if (check_case_failed)
        return;
    for (int g = 0; g < NG; g++) {
        char cmd[48];
        snprintf(cmd, sizeof(cmd), "tcp-last-%d", g);
        CHECK_EQ(propose_acked(c, g, cmd, ALL), 0);
        for (int i = 1; i <= NN; i++) {
            CHECK_EQ(mraft_read_barrier(c->nd[i].n, GID[g], 3000, NULL), 0);
            CHECK(tsm_has(&c->nd[i].sm[g], cmd));
        }
    }
    CHECK(check_state(c, ALL));
}

TEST(test_over_tcp)
{
    tcl_t *c = cluster_new2(NULL, true);
    CHECK(c);
    over_tcp(c);
    cluster_free(c);
}

/* Leader balancing: group g prefers node g % 3 + 1 (the rotation fs/ makes with rendezvous
 * order); every group ends up led by its preferred node, so the leaders spread over the
 * nodes, within a bounded time. */
static void balance_spreads(tcl_t *c)
{
    uint64_t end = now_ms() + 15000;
    int ok = 0;
    while (ok < NG && now_ms() < end) {
        ok = 0;
        for (int g = 0; g < NG; g++)
            ok += agreed_leader(c, g, ALL) == g % NN + 1;
        sleep_ms(10);
    }
    CHECK_EQ(ok, NG);
    for (int g = 0; g < NG; g++) {
        char cmd[48];
        snprintf(cmd, sizeof(cmd), "spread-%d", g);
        CHECK_EQ(propose_acked(c, g, cmd, ALL), 0);
        CHECK_EQ(st_of(c, 1, g).preferred, g % NN + 1);
        CHECK_EQ(st_of(c, 1, g).member, RAFT_VOTER);
    }
    CHECK(wait_converged(c, ALL, 5000));
    CHECK(check_state(c, ALL));
}

static void fast_balance(mraft_config_t *cfg)
{
    cfg->balance_ms = 100;
}

TEST(test_balance_spreads_leaders)
{
    for (int g = 0; g < NG; g++)
        t_preferred[g] = (uint64_t)(g % NN + 1);
    tcl_t *c = cluster_new(fast_balance);
    memset(t_preferred, 0, sizeof(t_preferred));
    CHECK(c);
    balance_spreads(c);
    cluster_free(c);
}

/* A transfer to the preferred leader that fails (its TIMEOUT_NOW is lost) is counted, and
 * not tried again within the backoff, even once it would succeed: every group prefers node
 * 3, which is cut off while nodes 1 and 2 elect leaders, then rejoins with TIMEOUT_NOW to
 * it lost. (Waits a fixed while to see that nothing is retried: many balance intervals.) */
static void balance_backoff(tcl_t *c)
{
    CHECK(wait_leaders(c, 0x6, 5000));
    for (int g = 0; g < NG; g++)
        CHECK_EQ(propose_acked(c, g, "before-3", 0x6), 0);
    int lead[NG];
    for (int g = 0; g < NG; g++) {
        lead[g] = agreed_leader(c, g, 0x6);
        CHECK(lead[g] > 0);
    }
    pthread_mutex_lock(&c->net_mu);
    c->drop_timeout_now = true;
    pthread_mutex_unlock(&c->net_mu);
    cut_node(c, 3, false);
    /* every leader tries once, and fails */
    uint64_t end = now_ms() + 10000;
    int failed = 0;
    while (failed < NG && now_ms() < end) {
        failed = 0;
        for (int g = 0; g < NG; g++)
            failed += st_of(c, lead[g], g).transfers_failed >= 1;
        sleep_ms(10);
    }
    CHECK_EQ(failed, NG);
    pthread_mutex_lock(&c->net_mu);
    c->drop_timeout_now = false;
    pthread_mutex_unlock(&c->net_mu);
    sleep_ms(1500);                        /* 15 balance intervals */
    for (int g = 0; g < NG; g++) {
        mraft_group_status_t st = st_of(c, lead[g], g);
        CHECK_EQ(st.transfers, 1);
        CHECK_EQ(st.transfers_failed, 1);
        CHECK_EQ(agreed_leader(c, g, ALL), lead[g]);
    }
}

static void slow_backoff(mraft_config_t *cfg)
{
    cfg->balance_ms = 100;
    cfg->balance_backoff_ms = 60000;
}

TEST(test_balance_backoff_after_failed_transfer)
{
    for (int g = 0; g < NG; g++)
        t_preferred[g] = 3;
    t_start_cut = 3;
    tcl_t *c = cluster_new(slow_backoff);
    memset(t_preferred, 0, sizeof(t_preferred));
    t_start_cut = 0;
    CHECK(c);
    balance_backoff(c);
    cluster_free(c);
}

/* Membership changes through the loop (mraft_change_member): with the leader's APPENDs to
 * both followers held back, an ADD_LEARNER stays uncommitted, and another change meanwhile
 * is refused with -QERR_CONFCHANGE (and not proposed); once the APPENDs flow the first one
 * returns 0, every node applies it, and the status shows it. REMOVE of an unknown id is
 * -QERR_NOTFOUND, adding a member again -QERR_EXISTS, a follower answers NOTLEADER with the
 * leader, bad arguments -QERR_INVAL. */
/* The role of id in the configuration node i has applied in group g. */
static uint32_t applied_role(tcl_t *c, int i, int g, uint64_t id)
{
    mraft_group_status_t st = st_of(c, i, g);
    return raft_conf_role(&st.applied_conf, id);
}

typedef struct confcall {
    mraft_node_t *n;
    uint32_t group, op;
    uint64_t id;
    int rc;
} confcall_t;

static void *confcall_main(void *arg)
{
    confcall_t *cc = arg;
    cc->rc = mraft_change_member(cc->n, cc->group, cc->op, cc->id, 10000, NULL);
    return NULL;
}

TEST(test_conf_change)
{
    tcl_t *c = cluster_new(NULL);
    CHECK(c);
    bool up = wait_leaders(c, ALL, 5000);
    int lead = up ? agreed_leader(c, 0, ALL) : 0;
    if (!lead)
        cluster_free(c);
    CHECK(lead);
    int f = lead % NN + 1;
    mraft_node_t *ln = c->nd[lead].n;
    bool ok = true;
    uint64_t hint = 0;
    ok &= mraft_change_member(c->nd[f].n, GID[0], RAFT_CONF_ADD_LEARNER, 9, 0, &hint) ==
              -QERR_NOTLEADER && hint == (uint64_t)lead;
    ok &= mraft_change_member(ln, GID[0], RAFT_CONF_ADD_LEARNER, 0, 0, NULL) == -QERR_INVAL;
    ok &= mraft_change_member(ln, GID[0], 7, 9, 0, NULL) == -QERR_INVAL;
    ok &= mraft_change_member(ln, 999, RAFT_CONF_ADD_LEARNER, 9, 0, NULL) == -QERR_INVAL;
    ok &= mraft_change_member(ln, GID[0], RAFT_CONF_REMOVE, 9, 0, NULL) == -QERR_NOTFOUND;
    ok &= mraft_change_member(ln, GID[0], RAFT_CONF_ADD_LEARNER, (uint64_t)f, 0, NULL) ==
              -QERR_EXISTS;
    pthread_mutex_lock(&c->net_mu);
    for (int i = 1; i <= NN; i++)
        c->block_append[i][0] = i != lead;
    pthread_mutex_unlock(&c->net_mu);
    confcall_t cc = { .n = ln, .group = GID[0], .op = RAFT_CONF_ADD_LEARNER, .id = 9 };
    pthread_t t;
    pthread_create(&t, NULL, confcall_main, &cc);
    uint64_t end = now_ms() + 5000;
    mraft_group_status_t st = st_of(c, lead, 0);
    while (!(st.conf_pending && raft_conf_role(&st.conf, 9) == RAFT_LEARNER) &&
           now_ms() < end) {
        sleep_ms(2);
        st = st_of(c, lead, 0);
    }
    ok &= st.conf_pending && raft_conf_role(&st.conf, 9) == RAFT_LEARNER &&
          raft_conf_role(&st.applied_conf, 9) == 0;
    int busy = mraft_change_member(ln, GID[0], RAFT_CONF_ADD_LEARNER, 10, 0, NULL);
    int busy2 = mraft_change_member(ln, GID[0], RAFT_CONF_REMOVE, (uint64_t)f, 0, NULL);
    pthread_mutex_lock(&c->net_mu);
    for (int i = 1; i <= NN; i++)
        c->block_append[i][0] = false;
    pthread_mutex_unlock(&c->net_mu);
    pthread_join(t, NULL);
    printf("# pending change: the second got %s and %s; the first %s\n", qerr_str(busy),
           qerr_str(busy2), qerr_str(cc.rc));
    ok &= busy == -QERR_CONFCHANGE && busy2 == -QERR_CONFCHANGE && cc.rc == 0;
    /* every node applies it; the leader shows the learner's progress */
    end = now_ms() + 5000;
    bool all = false;
    while (!all && now_ms() < end) {
        all = true;
        for (int i = 1; i <= NN; i++)
            all &= applied_role(c, i, 0, 9) == RAFT_LEARNER;
        sleep_ms(2);
    }
    ok &= all;
    st = st_of(c, lead, 0);
    bool listed = false;
    for (uint32_t i = 0; i < st.n_progress; i++)
        listed |= st.progress[i].id == 9 && st.progress[i].role == RAFT_LEARNER;
    ok &= st.role != RAFT_LEADER || listed;   /* (if it still leads) */
    ok &= st_of(c, f, 0).n_progress == 0;      /* followers have no progress to show */
    /* and out again */
    lead = wait_leaders(c, ALL, 5000) ? agreed_leader(c, 0, ALL) : 0;
    ok &= lead && mraft_change_member(c->nd[lead].n, GID[0], RAFT_CONF_REMOVE, 9, 0, NULL) == 0;
    ok &= lead && mraft_change_member(c->nd[lead].n, GID[0], RAFT_CONF_REMOVE, 9, 0, NULL) ==
                      -QERR_NOTFOUND;
    ok &= lead && applied_role(c, lead, 0, 9) == 0;
    ok &= propose_acked(c, 0, "after-conf", ALL) == 0;
    /* a voter that never catches up (node 9 does not exist) stays STAGING: ADD_VOTER times
     * out, and a PROMOTE of the STAGING server waits for the promotion too (it is not
     * refused with EXISTS); removed, it is NOTFOUND. The log must be longer than promote_lag
     * (64) first: the core promotes a STAGING server whose match is within 64 entries of the
     * leader's last index, and match 0 is within 64 of a young log. */
    for (int i = 0; ok && i < 80; i++) {
        char cmd[32];
        snprintf(cmd, sizeof(cmd), "lag-%d", i);
        ok &= propose_acked(c, 0, cmd, ALL) == 0;
    }
    lead = wait_leaders(c, ALL, 5000) ? agreed_leader(c, 0, ALL) : 0;
    ok &= lead != 0;
    int add = lead ? mraft_change_member(c->nd[lead].n, GID[0], RAFT_CONF_ADD_VOTER, 9, 300,
                                         NULL) : 0;
    int again = lead ? mraft_change_member(c->nd[lead].n, GID[0], RAFT_CONF_PROMOTE, 9, 300,
                                           NULL) : 0;
    st = st_of(c, lead, 0);
    printf("# ADD_VOTER of a server that never answers: %s, then PROMOTE: %s (role %u)\n",
           qerr_str(add), qerr_str(again), (unsigned)raft_conf_role(&st.conf, 9));
    ok &= add == -QERR_TIMEOUT && again == -QERR_TIMEOUT &&
          raft_conf_role(&st.conf, 9) == RAFT_STAGING;
    ok &= lead && mraft_change_member(c->nd[lead].n, GID[0], RAFT_CONF_REMOVE, 9, 0, NULL) == 0;
    ok &= lead && mraft_change_member(c->nd[lead].n, GID[0], RAFT_CONF_PROMOTE, 9, 0, NULL) ==
                      -QERR_NOTFOUND;
    cluster_free(c);
    CHECK(ok);
}

/* ---- the leader fast path of read barriers under leadership churn ----
 * Writers acknowledge entries of group 0 (the highest index acknowledged so far is kept);
 * readers on every node take a barrier and check that its index, and the applied state after
 * it, are at least what was acknowledged before the barrier began. Leadership moves every
 * 60-120 ms (the balancer, preferred leader rotated) and every 5th round the leader is cut
 * off for 150-270 ms, and the loop is held 40 ms after each TimeoutNow it sends
 * (test_hold_after_timeout_now_ms): a lease not withdrawn before the TimeoutNow leaves
 * serves stale reads in that window (the review's broken variant: thousands stale). */
typedef struct lsh {
    tcl_t *c;
    int stop;
    uint64_t acked;      /* atomic max */
    int wok, wfail;
    int next_w;          /* atomic: writer slot */
} lsh_t;

typedef struct lrd {
    lsh_t *sh;
    int node;
    unsigned seed;
    int ok, failed, stale;
    uint64_t worst;
} lrd_t;

/* Counts a write's outcome; an acknowledged one raises sh->acked to its index. Returns
 * whether it was acknowledged. */
static bool note_write(lsh_t *sh, int rc, const sm_result_t *res)
{
    if (rc || res->len != 8) {
        __atomic_add_fetch(&sh->wfail, 1, __ATOMIC_RELAXED);
        return false;
    }
    __atomic_add_fetch(&sh->wok, 1, __ATOMIC_RELAXED);
    uint64_t at;
    memcpy(&at, res->data, 8);
    uint64_t cur = __atomic_load_n(&sh->acked, __ATOMIC_ACQUIRE);
    while (at > cur && !__atomic_compare_exchange_n(&sh->acked, &cur, at, false,
                                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        ;
    return true;
}

/* Proposes on the node it believes leads (following NOTLEADER hints). */
static void *lwriter(void *arg)
{
    lsh_t *sh = arg;
    char cmd[48];
    uint64_t hint = 0;
    int i = 1;
    for (int k = 0; !__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE); k++) {
        if (hint >= 1 && hint <= NN)
            i = (int)hint;
        else
            i = i % NN + 1;
        sm_result_t res;
        snprintf(cmd, sizeof(cmd), "lw-%d", k);
        hint = 0;
        int rc = mraft_propose(sh->c->nd[i].n, GID[0], cmd, strlen(cmd), &res, 300, &hint);
        if (!note_write(sh, rc, &res) && rc != -QERR_NOTLEADER)
            sleep_ms(2);
    }
    return NULL;
}

/* Proposes from one node, whichever leads (forwarded: mraft_propose_any). */
static void *lwriter_any(void *arg)
{
    lsh_t *sh = arg;
    int me = __atomic_add_fetch(&sh->next_w, 1, __ATOMIC_ACQ_REL);
    int node = (me - 1) % NN + 1;
    char cmd[48];
    for (int k = 0; !__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE); k++) {
        sm_result_t res;
        snprintf(cmd, sizeof(cmd), "la-%d-%d", me, k);
        int rc = mraft_propose_any(sh->c->nd[node].n, GID[0], cmd, strlen(cmd), &res, 300, NULL);
        if (!note_write(sh, rc, &res))
            sleep_ms(1);
    }
    return NULL;
}

static void *lreader(void *arg)
{
    lrd_t *r = arg;
    lsh_t *sh = r->sh;
    tsm_t *s = &sh->c->nd[r->node].sm[0];
    while (!__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE)) {
        if (rand_r(&r->seed) % 4 == 0)
            sleep_ms(1);
        uint64_t before = __atomic_load_n(&sh->acked, __ATOMIC_ACQUIRE), idx = 0;
        int rc = mraft_read_barrier(sh->c->nd[r->node].n, GID[0], 1000, &idx);
        if (rc) {
            r->failed++;
            continue;
        }
        pthread_mutex_lock(&s->mu);
        uint64_t applied = s->applied;
        pthread_mutex_unlock(&s->mu);
        if (idx < before || applied < before) {
            r->stale++;
            if (before - (idx < applied ? idx : applied) > r->worst)
                r->worst = before - (idx < applied ? idx : applied);
        } else
            r->ok++;
    }
    return NULL;
}

static void churn_cfg(mraft_config_t *cfg)
{
    cfg->balance_ms = 30;
    cfg->balance_backoff_ms = 50;
    cfg->test_hold_after_timeout_now_ms = 40;
}

TEST(test_lease_churn)
{
    tcl_t *c = cluster_new(churn_cfg);
    CHECK(c);
    CHECK(wait_leaders(c, ALL, 3000));
    lsh_t sh = { .c = c };
    pthread_t wt[2], rt[9], at[6];
    lrd_t rd[9];
    pthread_create(&wt[0], NULL, lwriter, &sh);
    pthread_create(&wt[1], NULL, lwriter, &sh);
    for (int t = 0; t < 6; t++)
        pthread_create(&at[t], NULL, lwriter_any, &sh);
    for (int t = 0; t < 9; t++) {
        rd[t] = (lrd_t){ .sh = &sh, .node = t % NN + 1, .seed = (unsigned)t + 7 };
        pthread_create(&rt[t], NULL, lreader, &rd[t]);
    }
    uint64_t t_end = now_ms() + 5000;
    int round = 0;
    while (now_ms() < t_end) {
        round++;
        int l = agreed_leader(c, 0, ALL);
        if (round % 5 == 0 && l) {
            cut_node(c, l, true);             /* the leader cut off: lease reads there */
            sleep_ms(150 + (unsigned)(round % 3) * 60);
            cut_node(c, l, false);
        } else {
            uint64_t to = (uint64_t)(round % NN + 1);
            for (int i = 1; i <= NN; i++)
                mraft_set_preferred(c->nd[i].n, GID[0], to);
            sleep_ms(60 + (unsigned)(round % 4) * 20);
        }
    }
    __atomic_store_n(&sh.stop, 1, __ATOMIC_RELEASE);
    pthread_join(wt[0], NULL);
    pthread_join(wt[1], NULL);
    for (int t = 0; t < 6; t++)
        pthread_join(at[t], NULL);
    int stale = 0, ok = 0, failed = 0;
    for (int t = 0; t < 9; t++) {
        pthread_join(rt[t], NULL);
        stale += rd[t].stale;
        ok += rd[t].ok;
        failed += rd[t].failed;
        if (rd[t].stale)
            printf("# reader %d on node %d: %d stale (worst by %llu)\n", t, rd[t].node,
                   rd[t].stale, (unsigned long long)rd[t].worst);
    }
    uint64_t lr = 0, tr = 0;
    for (int i = 1; i <= NN; i++) {
        mraft_stats_t s;
        mraft_get_stats(c->nd[i].n, &s);
        lr += s.lease_reads;
        mraft_group_status_t st = st_of(c, i, 0);
        tr += st.transfers;
    }
    printf("# lease churn: writes ok %d failed %d; reads ok %d failed %d stale %d; lease_reads %llu; "
           "transfers %llu; rounds %d\n", sh.wok, sh.wfail, ok, failed, stale,
           (unsigned long long)lr, (unsigned long long)tr, round);
    cluster_free(c);
    CHECK_EQ(stale, 0);
    CHECK(lr > 0);            /* the fast path was taken */
    CHECK(tr > 0);            /* and leadership moved */
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    RUN(test_elect_and_commit);
    RUN(test_one_fsync_per_iteration);
    RUN(test_kill_and_reopen);
    RUN(test_snapshot_catch_up);
    RUN(test_read_barrier_on_follower);
    RUN(test_follower_reads_batched);
    RUN(test_minority_times_out);
    RUN(test_over_tcp);
    RUN(test_balance_spreads_leaders);
    RUN(test_balance_backoff_after_failed_transfer);
    RUN(test_conf_change);
    RUN(test_lease_churn);
    return CHECK_DONE();
}
