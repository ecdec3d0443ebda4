/* tests/unit/test_group_raft.c — the Raft-backed group of cluster/group.h: 3 nodes in one
 * process over TCP on 127.0.0.1 (free ports picked first), each with its own data directory
 * and a small key-value state machine. Proposals on the leader and on every follower (which
 * forward them and return once the entry applied locally), read barriers on a follower that
 * see another node's write, the leader closed and a new one serving the survivors within a
 * bounded time, a lone node timing out, restarts from the data directory catching up (by
 * InstallSnapshot after compaction), malformed and well-formed forwarding frames from a raw
 * socket, and the forwarding codec's refusals. Every wait is bounded.
 * The nodes have ids 2, 3, 4; every node also lists a phantom peer 1 that never runs (nodes
 * only wait for lower ids to dial them), so the raw socket can speak as node 1. */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
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

#include "cluster/bytes.h"
#include "cluster/crc32c.h"
#include "cluster/err.h"
#include "cluster/frame.h"
#include "cluster/group.h"
#include "cluster/mraft.h"
#include "tests/unit/check.h"

#define NN 3                      /* nodes, ids FIRST_ID .. FIRST_ID+NN-1 */
#define FIRST_ID 2
#define PHANTOM 1                 /* a listed peer nobody runs: the raw socket's identity */
#define GID 5                     /* the group every node hosts */
#define CLUSTER_ID 0x51465354ull
#define TIMEOUT_MS 2000           /* the groups' propose / barrier timeout */
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

/* ---- the state machine: a key-value table; "key=value" sets ---------------------------- */

#define KV_MAX 16384   /* above what two writers of 4096 keys each plus the rest can set */
typedef struct kv {
    pthread_mutex_t mu;
    uint64_t applied, sets;
    size_t n;
    char *key[KV_MAX], *val[KV_MAX];
    int bad;                      /* applied out of order, or a malformed command */
    uint64_t u_twice;             /* sets of a "u:" key that was set already: such keys are
                                     proposed once each, so this counts double applies */
    uint64_t node_id;             /* the node this replica runs on (for kv_stamp) */
} kv_t;

static void kv_clear(kv_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->key[i]);
        free(s->val[i]);
    }
    s->n = 0;
    s->applied = s->sets = s->u_twice = 0;
}

static void kv_set(kv_t *s, const char *k, size_t kl, const char *v, size_t vl)
{
    for (size_t i = 0; i < s->n; i++)
        if (strlen(s->key[i]) == kl && memcmp(s->key[i], k, kl) == 0) {
            if (kl >= 2 && memcmp(k, "u:", 2) == 0)
                s->u_twice++;
            free(s->val[i]);
            s->val[i] = strndup(v, vl);
            return;
        }
    if (s->n == KV_MAX) {
        s->bad++;
        return;
    }
    s->key[s->n] = strndup(k, kl);
    s->val[s->n++] = strndup(v, vl);
}

static void kv_apply(void *ctx, uint64_t index, const void *cmd, size_t len, sm_result_t *res)
{
    kv_t *s = ctx;
    pthread_mutex_lock(&s->mu);
    if (index <= s->applied)
        s->bad++;
    s->applied = index;
    const char *c = cmd, *eq = memchr(c, '=', len);
    if (!eq) {
        s->bad++;
    } else {
        kv_set(s, c, (size_t)(eq - c), eq + 1, len - (size_t)(eq - c) - 1);
        s->sets++;
    }
    if (res) {
        res->code = 0;
        res->len = 16;
        memcpy(res->data, &index, 8);
        memcpy(res->data + 8, &s->sets, 8);
    }
    pthread_mutex_unlock(&s->mu);
}

static int kv_snapshot(void *ctx, snap_writer_t *w)
{
    kv_t *s = ctx;
    pthread_mutex_lock(&s->mu);
    uint64_t h[3] = { s->applied, s->sets, s->n };
    int rc = snap_writer_put(w, h, sizeof(h));
    for (size_t i = 0; rc == 0 && i < s->n; i++) {
        uint32_t l[2] = { (uint32_t)strlen(s->key[i]), (uint32_t)strlen(s->val[i]) };
        if ((rc = snap_writer_put(w, l, sizeof(l))) == 0 &&
            (rc = snap_writer_put(w, s->key[i], l[0])) == 0)
            rc = snap_writer_put(w, s->val[i], l[1]);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int kv_restore(void *ctx, snap_reader_t *r)
{
    kv_t *s = ctx;
    uint64_t h[3];
    char k[256], v[256];
    pthread_mutex_lock(&s->mu);
    kv_clear(s);
    int rc = snap_reader_get(r, h, sizeof(h));
    for (uint64_t i = 0; rc == 0 && i < h[2]; i++) {
        uint32_t l[2];
        if ((rc = snap_reader_get(r, l, sizeof(l))) != 0)
            break;
        if (l[0] >= sizeof(k) || l[1] >= sizeof(v)) {
            rc = -QERR_CORRUPT;
            break;
        }
        if ((rc = snap_reader_get(r, k, l[0])) == 0 && (rc = snap_reader_get(r, v, l[1])) == 0)
            kv_set(s, k, l[0], v, l[1]);
    }
    if (rc == 0) {
        s->applied = h[0];
        s->sets = h[1];
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* The leader's stamp (sm_ops_t.stamp): a "s:KEY=" command whose value is STAMP_LEN bytes
 * gets as value the stamping node's id (4 digits) and its wall clock in ms (20 digits);
 * anything else is left alone. */
#define STAMP_LEN 24
static void kv_stamp(void *ctx, void *cmd, size_t len)
{
    kv_t *s = ctx;
    char *c = cmd, *eq = memchr(c, '=', len);
    if (len < 2 || memcmp(c, "s:", 2) != 0 || !eq || (size_t)(c + len - eq - 1) != STAMP_LEN)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char v[STAMP_LEN + 1];
    snprintf(v, sizeof(v), "%04u%020llu", (unsigned)s->node_id,
             (unsigned long long)ts.tv_sec * 1000ull + (unsigned long long)ts.tv_nsec / 1000000);
    memcpy(eq + 1, v, STAMP_LEN);
}

static const sm_ops_t kv_ops = { .apply = kv_apply, .snapshot = kv_snapshot,
                                 .restore = kv_restore, .stamp = kv_stamp };

/* The value of key in s, copied into buf ("" if absent); returns whether it was found. */
static bool kv_get(kv_t *s, const char *key, char *buf, size_t cap)
{
    bool found = false;
    buf[0] = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->key[i], key) == 0) {
            snprintf(buf, cap, "%s", s->val[i]);
            found = true;
        }
    pthread_mutex_unlock(&s->mu);
    return found;
}

/* Same table and set count in a and b. */
static bool kv_equal(kv_t *a, kv_t *b)
{
    bool eq = true;
    pthread_mutex_lock(&a->mu);
    pthread_mutex_lock(&b->mu);
    if (a->n != b->n || a->sets != b->sets)
        eq = false;
    for (size_t i = 0; eq && i < a->n; i++) {
        bool hit = false;
        for (size_t j = 0; j < b->n && !hit; j++)
            hit = strcmp(a->key[i], b->key[j]) == 0 && strcmp(a->val[i], b->val[j]) == 0;
        eq = hit;
    }
    pthread_mutex_unlock(&b->mu);
    pthread_mutex_unlock(&a->mu);
    return eq;
}

/* ---- the cluster fixture ----------------------------------------------------------------- */

typedef struct cl {
    char base[64];
    char dir[NN][96];
    char addr[NN + 1][32];        /* [0]: the phantom peer's (nobody listens there) */
    group_peer_t peers[NN + 1];
    group_node_t *node[NN];
    group_t *g[NN];
    kv_t kv[NN];
    uint64_t snapshot_bytes;
} cl_t;

/* Transport log lines: kept (the last ones) so a case can check what was logged; printed
 * as TAP comments only with QFS_TEST_VERBOSE set. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_text[16384];

static void test_log(void *ctx, const char *line)
{
    (void)ctx;
    pthread_mutex_lock(&log_mu);
    size_t have = strlen(log_text), n = strlen(line);
    if (have + n + 2 > sizeof(log_text))
        have = 0;                 /* keep the newest lines only */
    memcpy(log_text + have, line, n);
    log_text[have + n] = '\n';
    log_text[have + n + 1] = 0;
    pthread_mutex_unlock(&log_mu);
    if (getenv("QFS_TEST_VERBOSE"))
        printf("# %s\n", line);
}

static bool logged(const char *needle)
{
    pthread_mutex_lock(&log_mu);
    bool hit = strstr(log_text, needle) != NULL;
    pthread_mutex_unlock(&log_mu);
    return hit;
}

static uint64_t id_of(int i)
{
    return FIRST_ID + (uint64_t)i;
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

static int start_node(cl_t *c, int i)
{
    group_raft_config_t cfg = {
        .id = id_of(i), .listen = c->addr[i + 1], .peers = c->peers, .n_peers = NN + 1,
        .cluster_id = CLUSTER_ID, .dir = c->dir[i], .tick_ms = TICK_MS, .election_tick = 10,
        .timeout_ms = TIMEOUT_MS, .snapshot_bytes = c->snapshot_bytes,
        .snap_chunk_bytes = 512, .segment_bytes = 16 << 10, .seed = 77 + (uint64_t)i,
        .log = test_log };
    uint64_t voters[NN];
    for (int j = 0; j < NN; j++)
        voters[j] = id_of(j);
    char *msg = NULL;
    kv_clear(&c->kv[i]);
    c->kv[i].node_id = id_of(i);
    int rc = group_node_open(&cfg, &c->node[i], &msg);
    if (rc == 0 &&
        (rc = group_node_add(c->node[i], GID, voters, NN, &kv_ops, &c->kv[i], &c->g[i], &msg)))
        group_node_close(c->node[i]);
    else if (rc == 0 && (rc = group_node_start(c->node[i], &msg)))
        group_node_close(c->node[i]);
    if (rc) {
        printf("# node %d: %s (%s)\n", (int)id_of(i), qerr_str(rc), msg ? msg : "");
        c->node[i] = NULL;
        c->g[i] = NULL;
    }
    free(msg);
    return rc;
}

static void stop_node(cl_t *c, int i)
{
    group_node_close(c->node[i]);
    c->node[i] = NULL;
    c->g[i] = NULL;
}

static cl_t *cluster_new(uint64_t snapshot_bytes)
{
    cl_t *c = calloc(1, sizeof(*c));
    snprintf(c->base, sizeof(c->base), "/tmp/qfs-graft-XXXXXX");
    if (!mkdtemp(c->base)) {
        free(c);
        return NULL;
    }
    c->snapshot_bytes = snapshot_bytes;
    for (int i = 0; i <= NN; i++) {
        snprintf(c->addr[i], sizeof(c->addr[i]), "127.0.0.1:%u", (unsigned)free_port());
        c->peers[i] = (group_peer_t){ .id = i == 0 ? PHANTOM : id_of(i - 1), .addr = c->addr[i] };
    }
    char base[sizeof(c->base)];
    memcpy(base, c->base, sizeof(base));
    for (int i = 0; i < NN; i++) {
        pthread_mutex_init(&c->kv[i].mu, NULL);
        snprintf(c->dir[i], sizeof(c->dir[i]), "%s/n%d", base, (int)id_of(i));
        mkdir(c->dir[i], 0755);
    }
    for (int i = 0; i < NN; i++)
        if (start_node(c, i)) {
            for (int j = 0; j < i; j++)
                stop_node(c, j);
            return NULL;   /* leaks the temp dir: the failure is reported */
        }
    return c;
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
    for (int i = 0; i < NN; i++) {
        stop_node(c, i);
        kv_clear(&c->kv[i]);
        pthread_mutex_destroy(&c->kv[i].mu);
    }
    nftw(c->base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(c);
}

/* The node that leads, once every running node names it; -1 after ms. */
static int wait_leader(cl_t *c, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    do {
        int lead = -1;
        bool agree = true;
        for (int i = 0; i < NN; i++)
            if (c->g[i] && group_is_leader(c->g[i]))
                lead = i;
        for (int i = 0; lead >= 0 && i < NN; i++) {
            group_stats_t st;
            if (!c->g[i])
                continue;
            group_get_stats(c->g[i], &st);
            agree &= st.leader == id_of(lead);
        }
        if (lead >= 0 && agree)
            return lead;
        sleep_ms(10);
    } while (now_ms() < end);
    return -1;
}

static int put(cl_t *c, int i, const char *key, const char *val, sm_result_t *res)
{
    char cmd[200];
    int n = snprintf(cmd, sizeof(cmd), "%s=%s", key, val);
    return group_propose(c->g[i], cmd, (size_t)n, res);
}

/* Proposes on node i until it succeeds or ms pass (each try bounded by the group timeout:
 * a try that times out has an unknown outcome, and the key is simply set again). */
static int put_retry(cl_t *c, int i, const char *key, const char *val, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    int rc;
    do {
        rc = put(c, i, key, val, NULL);
    } while (rc != 0 && now_ms() < end);
    return rc;
}

static bool has(cl_t *c, int i, const char *key, const char *val)
{
    char buf[256];
    return kv_get(&c->kv[i], key, buf, sizeof(buf)) && strcmp(buf, val) == 0;
}

/* ---- cases ------------------------------------------------------------------------------- */

/* A proposal on the leader and on each follower returns 0 with apply's result, and the
 * proposing node has applied it on return; a read barrier on a follower sees a write made
 * on another follower. */
TEST(test_propose_on_every_node)
{
    cl_t *c = cluster_new(0);
    CHECK(c);
    int lead = wait_leader(c, 5000);
    if (lead < 0)
        cluster_free(c);
    CHECK(lead >= 0);
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < NN; i++) {
            char key[32], val[32];
            sm_result_t res;
            snprintf(key, sizeof(key), "k%d-%d", i, round);
            snprintf(val, sizeof(val), "v%d", round);
            int rc = put(c, i, key, val, &res);
            if (rc)
                printf("# put on node %d (leader %d): %s\n", (int)id_of(i), (int)id_of(lead),
                       qerr_str(rc));
            CHECK_EQ(rc, 0);
            CHECK_EQ(res.len, 16);
            uint64_t index;
            memcpy(&index, res.data, 8);
            CHECK(index >= 1);
            CHECK(has(c, i, key, val));                 /* applied here on return */
            group_stats_t st;
            group_get_stats(c->g[i], &st);
            CHECK(st.applied_index >= index);
            CHECK_EQ(st.node_id, id_of(i));
            CHECK(st.leader >= FIRST_ID && st.leader < FIRST_ID + NN);   /* (a loaded machine */
            CHECK_EQ(st.is_leader, st.leader == st.node_id);            /* may re-elect) */
            CHECK(st.term >= 1 && st.commit_index >= index);
        }
    /* read barrier: written on follower a, read on follower b after a barrier */
    int a = (lead + 1) % NN, b = (lead + 2) % NN;
    for (int j = 0; j < 40; j++) {
        char key[32], val[32];
        snprintf(key, sizeof(key), "rb%d", j);
        snprintf(val, sizeof(val), "x%d", j);
        CHECK_EQ(put(c, j % 2 ? a : lead, key, val, NULL), 0);
        CHECK_EQ(group_read_barrier(c->g[b], 0), 0);
        CHECK(has(c, b, key, val));
    }
    /* every replica converges on the same table */
    for (int i = 0; i < NN; i++)
        CHECK_EQ(group_read_barrier(c->g[i], 0), 0);
    uint64_t end = now_ms() + 3000;
    while (!(kv_equal(&c->kv[0], &c->kv[1]) && kv_equal(&c->kv[0], &c->kv[2])) &&
           now_ms() < end)
        sleep_ms(10);
    CHECK(kv_equal(&c->kv[0], &c->kv[1]) && kv_equal(&c->kv[0], &c->kv[2]));
    for (int i = 0; i < NN; i++)
        CHECK_EQ(c->kv[i].bad, 0);
    cluster_free(c);
}

/* Concurrent proposals from several threads on every node: all succeed, each exactly once
 * (no retries happen without faults). */
typedef struct worker {
    cl_t *c;
    int node, id, n, failed;
} worker_t;

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    for (int j = 0; j < w->n; j++) {
        char key[32];
        snprintf(key, sizeof(key), "w%d-%d", w->id, j);
        if (put(w->c, w->node, key, "1", NULL) != 0 || !has(w->c, w->node, key, "1"))
            w->failed++;
    }
    return NULL;
}

TEST(test_concurrent_forwarding)
{
    cl_t *c = cluster_new(0);
    CHECK(c);
    int lead = wait_leader(c, 5000);
    if (lead < 0)
        cluster_free(c);
    CHECK(lead >= 0);
    enum { NW = 6, PER = 40 };
    worker_t w[NW];
    pthread_t th[NW];
    for (int i = 0; i < NW; i++) {
        w[i] = (worker_t){ .c = c, .node = i % NN, .id = i, .n = PER };
        pthread_create(&th[i], NULL, worker_main, &w[i]);
    }
    int failed = 0;
    for (int i = 0; i < NW; i++) {
        pthread_join(th[i], NULL);
        failed += w[i].failed;
    }
    CHECK_EQ(failed, 0);
    CHECK_EQ(group_read_barrier(c->g[lead], 0), 0);
    pthread_mutex_lock(&c->kv[lead].mu);
    uint64_t sets = c->kv[lead].sets;
    pthread_mutex_unlock(&c->kv[lead].mu);
    CHECK_EQ(sets, NW * PER);
    cluster_free(c);
}

/* Proposes distinct keys on one node until told to stop; remembers which were acknowledged. */
typedef struct writer {
    cl_t *c;
    int node, id;
    volatile int stop;
    volatile uint64_t close_at;   /* when the leader was closed (0: not yet) */
    uint64_t first_after;         /* the end of the first acknowledged write begun after it */
    int acked[4096], n_acked, timeouts, other;
} writer_t;

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    for (int j = 0; j < 4096 && !w->stop; j++) {
        char key[32];
        snprintf(key, sizeof(key), "u:ld%d-%d", w->id, j);
        uint64_t close_at = w->close_at, t = now_ms();
        int rc = put(w->c, w->node, key, "1", NULL);
        if (rc == 0 && close_at && t >= close_at && !w->first_after)
            w->first_after = now_ms();
        if (rc == 0)
            w->acked[w->n_acked++] = j;
        else if (rc == -QERR_TIMEOUT)
            w->timeouts++;
        else
            w->other++;
    }
    return NULL;
}

/* The leader is closed while both other nodes propose: the survivors elect a new one and
 * proposals on both succeed within a bounded time, every acknowledged write is on both
 * survivors, no write is applied twice (those in flight at the close are resent), and the
 * old leader restarts from its data directory and catches up. */
TEST(test_leader_closed)
{
    cl_t *c = cluster_new(0);
    CHECK(c);
    int lead = wait_leader(c, 5000);
    if (lead < 0)
        cluster_free(c);
    CHECK(lead >= 0);
    for (int i = 0; i < NN; i++)
        CHECK_EQ(put(c, i, "before", "1", NULL), 0);
    int s1 = (lead + 1) % NN, s2 = (lead + 2) % NN;
    writer_t *w = calloc(2, sizeof(*w));
    pthread_t th[2];
    for (int k = 0; k < 2; k++) {
        w[k] = (writer_t){ .c = c, .node = k ? s2 : s1, .id = k };
        pthread_create(&th[k], NULL, writer_main, &w[k]);
    }
    sleep_ms(200);
    uint64_t t0 = now_ms();
    w[0].close_at = w[1].close_at = t0;
    stop_node(c, lead);
    /* a proposal begun now is served as soon as the survivors know the new leader */
    CHECK_EQ(put_retry(c, s1, "after1", "2", 8000), 0);
    uint64_t gap = now_ms() - t0;
    sleep_ms(TIMEOUT_MS + 500);   /* the writers' requests in flight at the close time out */
    for (int k = 0; k < 2; k++) {
        w[k].stop = 1;
        pthread_join(th[k], NULL);
    }
    /* writes in flight to the closed leader are resent (same envelope) until a new leader
       serves them, or time out (outcome unknown, applied at most once); new ones are served
       once the survivors know the new leader */
    uint64_t first = 0;
    for (int k = 0; k < 2; k++)
        if (w[k].first_after && (!first || w[k].first_after < first))
            first = w[k].first_after;
    printf("# leader closed: a new proposal was acknowledged %llu ms later; the writers had "
           "%d and %d acknowledged, %d timeouts, %d other errors, "
           "their first write begun after the close acknowledged %lld ms after it\n",
           (unsigned long long)gap, w[0].n_acked, w[1].n_acked, w[0].timeouts + w[1].timeouts,
           w[0].other + w[1].other, first ? (long long)(first - t0) : -1ll);
    int other = w[0].other + w[1].other;
    if (other || !first || gap >= 2000)
        free(w);
    CHECK_EQ(other, 0);
    CHECK(gap < 2000);
    CHECK(first && first - t0 < TIMEOUT_MS + 1500);
    int nl = wait_leader(c, 5000);
    CHECK(nl == s1 || nl == s2);
    CHECK_EQ(put(c, s1, "after2", "3", NULL), 0);
    CHECK_EQ(put(c, s2, "after3", "4", NULL), 0);
    CHECK_EQ(group_read_barrier(c->g[s1], 0), 0);
    CHECK(has(c, s1, "after3", "4"));
    CHECK_EQ(group_read_barrier(c->g[s2], 0), 0);
    int lost = 0;
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < w[k].n_acked; j++) {
            char key[32];
            snprintf(key, sizeof(key), "u:ld%d-%d", k, w[k].acked[j]);
            lost += !has(c, s1, key, "1") + !has(c, s2, key, "1");
        }
    free(w);
    CHECK_EQ(lost, 0);
    /* proposals resent across the leader change applied once each */
    group_dedup_stats_t d1, d2;
    CHECK_EQ(group_dedup_stats(c->g[s1], &d1), 0);
    CHECK_EQ(group_dedup_stats(c->g[s2], &d2), 0);
    printf("# leader closed: %llu + %llu resends, %llu + %llu duplicates skipped\n",
           (unsigned long long)d1.retries, (unsigned long long)d2.retries,
           (unsigned long long)d1.dup_hits, (unsigned long long)d2.dup_hits);
    CHECK_EQ(c->kv[s1].u_twice, 0);
    CHECK_EQ(c->kv[s2].u_twice, 0);
    /* the old leader comes back from its directory and catches up */
    CHECK_EQ(start_node(c, lead), 0);
    CHECK(has(c, lead, "before", "1"));              /* re-applied from its own log */
    CHECK_EQ(group_read_barrier(c->g[lead], 5000), 0);
    CHECK(has(c, lead, "after3", "4"));
    CHECK_EQ(put(c, lead, "back", "5", NULL), 0);
    CHECK(has(c, lead, "back", "5"));
    cluster_free(c);
}

/* One follower proposes without pause (a new "u:" key each time) while the other takes read
 * barriers without pause; the leader is closed mid-flight (its sockets close, as when its
 * process is killed). Every proposal returns 0 within the group's timeout, the one in flight
 * at the close included (group_propose resends it with the same envelope to the new leader:
 * before the exactly-once resends, a forward in flight at the close was never answered and
 * its caller got -QERR_TIMEOUT, EIO on a mount), every barrier returns 0 too, and on both
 * survivors every acknowledged key is applied exactly once. */
static uint64_t u_twice_of(cl_t *c, int i);

typedef struct flw {
    cl_t *c;
    int node;
    volatile int stop;
    int n, failed, first_rc;
    uint64_t worst_ms;
} flw_t;

static void *flw_write(void *arg)
{
    flw_t *w = arg;
    for (int j = 0; j < 8192 && !w->stop; j++) {
        char key[32];
        snprintf(key, sizeof(key), "u:fl%d", j);
        uint64_t t = now_ms();
        int rc = put(w->c, w->node, key, "1", NULL);
        uint64_t d = now_ms() - t;
        w->worst_ms = d > w->worst_ms ? d : w->worst_ms;
        w->n++;
        if (rc && !w->failed++)
            w->first_rc = rc;
    }
    return NULL;
}

static void *flw_read(void *arg)
{
    flw_t *w = arg;
    while (!w->stop) {
        uint64_t t = now_ms();
        int rc = group_read_barrier(w->c->g[w->node], 0);
        uint64_t d = now_ms() - t;
        w->worst_ms = d > w->worst_ms ? d : w->worst_ms;
        w->n++;
        if (rc && !w->failed++)
            w->first_rc = rc;
    }
    return NULL;
}

TEST(test_leader_killed_in_flight)
{
    for (int round = 0; round < 3; round++) {
        cl_t *c = cluster_new(0);
        CHECK(c);
        int lead = wait_leader(c, 5000);
        if (lead < 0)
            cluster_free(c);
        CHECK(lead >= 0);
        int f = (lead + 1 + round % 2) % NN;     /* the writer: either follower in turn */
        int r = NN * (NN - 1) / 2 - lead - f;    /* the reader: the other one */
        CHECK_EQ(put(c, f, "warm", "1", NULL), 0);
        CHECK_EQ(group_read_barrier(c->g[r], 0), 0);
        flw_t w = { .c = c, .node = f }, rd = { .c = c, .node = r };
        pthread_t tw, tr;
        pthread_create(&tw, NULL, flw_write, &w);
        pthread_create(&tr, NULL, flw_read, &rd);
        sleep_ms(100 + 70 * (unsigned)round);
        /* at least one write acknowledged before the close (bounded: a loaded machine can
         * take longer than the pause above to serve the first forwarded write) */
        for (uint64_t end = now_ms() + 10000; w.n == 0 && now_ms() < end;)
            sleep_ms(10);
        int before = w.n;
        stop_node(c, lead);
        sleep_ms(TIMEOUT_MS + 1000);          /* a proposal or barrier at the close ends */
        w.stop = rd.stop = 1;
        pthread_join(tw, NULL);
        pthread_join(tr, NULL);
        printf("# leader %d closed after %d writes on node %d: %d writes (%d failed, first "
               "%s, slowest %llu ms), %d barriers on node %d (%d failed, slowest %llu ms)\n",
               (int)id_of(lead), before, (int)id_of(f), w.n, w.failed,
               w.failed ? qerr_str(w.first_rc) : "-", (unsigned long long)w.worst_ms, rd.n,
               (int)id_of(r), rd.failed, (unsigned long long)rd.worst_ms);
        int lost = 0;
        if (!w.failed && !rd.failed) {
            CHECK_EQ(group_read_barrier(c->g[f], 0), 0);
            CHECK_EQ(group_read_barrier(c->g[r], 0), 0);
            for (int j = 0; j < w.n; j++) {
                char key[32];
                snprintf(key, sizeof(key), "u:fl%d", j);
                lost += !has(c, f, key, "1") + !has(c, r, key, "1");
            }
        }
        uint64_t twice = u_twice_of(c, f) + u_twice_of(c, r);
        cluster_free(c);
        CHECK_EQ(w.failed, 0);
        CHECK_EQ(rd.failed, 0);
        CHECK_EQ(lost, 0);
        CHECK_EQ(twice, 0);
        CHECK(before > 0);
    }
}

/* Leader-stamped commands (sm_ops_t.stamp): a follower's proposal whose value holds a
 * skewed time, and one made on the leader, are applied on every replica with the value the
 * LEADER stamped right before appending (its id, and its clock within the call), not the
 * proposer's; the stamp sees the command without group_raft's envelope; a command the stamp
 * does not know is applied as proposed. */
static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

TEST(test_leader_stamps_commands)
{
    cl_t *c = cluster_new(0);
    CHECK(c);
    int lead = wait_leader(c, 5000);
    if (lead < 0)
        cluster_free(c);
    CHECK(lead >= 0);
    int f = (lead + 1) % NN;
    const char *skewed = "999999999999999999999999";   /* STAMP_LEN digits, far ahead */
    uint64_t t0 = wall_ms();
    int rf = put(c, f, "s:from-follower", skewed, NULL);
    int rl = put(c, lead, "s:from-leader", skewed, NULL);
    int ro = put(c, f, "s:other", "not a stamp", NULL);
    uint64_t t1 = wall_ms();
    group_stats_t st;
    group_get_stats(c->g[lead], &st);
    bool still = st.is_leader && st.leader == id_of(lead);   /* no election meanwhile */
    int wrong = 0;
    for (int i = 0; i < NN && rf == 0 && rl == 0 && ro == 0; i++) {
        if (group_read_barrier(c->g[i], 0) != 0) {
            wrong++;
            continue;
        }
        const char *keys[2] = { "s:from-follower", "s:from-leader" };
        for (int k = 0; k < 2; k++) {
            char v[64];
            unsigned id = 0;
            unsigned long long t = 0;
            if (!kv_get(&c->kv[i], keys[k], v, sizeof(v)) || strlen(v) != STAMP_LEN ||
                sscanf(v, "%4u%20llu", &id, &t) != 2 || id != id_of(lead) || t < t0 || t > t1) {
                printf("# node %d: %s = \"%s\" (leader %d, clock %llu..%llu)\n",
                       (int)id_of(i), keys[k], v, (int)id_of(lead), (unsigned long long)t0,
                       (unsigned long long)t1);
                wrong++;
            }
        }
        if (!has(c, i, "s:other", "not a stamp"))
            wrong++;
    }
    cluster_free(c);
    CHECK_EQ(rf, 0);
    CHECK_EQ(rl, 0);
    CHECK_EQ(ro, 0);
    CHECK(still);
    CHECK_EQ(wrong, 0);
}

/* A node alone (the two others closed) gets -QERR_TIMEOUT within its timeout for proposals
 * and read barriers, never a hang; once the others restart, it works again and all agree. */
TEST(test_minority_times_out)
{
    cl_t *c = cluster_new(0);
    CHECK(c);
    int lead = wait_leader(c, 5000);
    if (lead < 0)
        cluster_free(c);
    CHECK(lead >= 0);
    CHECK_EQ(put(c, lead, "a", "1", NULL), 0);
    int lone = (lead + 1) % NN;
    for (int i = 0; i < NN; i++)
        if (i != lone)
            stop_node(c, i);
    for (int k = 0; k < 2; k++) {
        uint64_t t0 = now_ms();
        int rc = put(c, lone, "lost", "x", NULL);
        uint64_t took = now_ms() - t0;
        CHECK_EQ(rc, -QERR_TIMEOUT);
        CHECK(took >= TIMEOUT_MS - 50 && took < TIMEOUT_MS + 1000);
        t0 = now_ms();
        CHECK_EQ(group_read_barrier(c->g[lone], 500), -QERR_TIMEOUT);
        took = now_ms() - t0;
        CHECK(took < 1500);
    }
    for (int i = 0; i < NN; i++)
        if (i != lone)
            CHECK_EQ(start_node(c, i), 0);
    CHECK_EQ(put_retry(c, lone, "healed", "1", 10000), 0);
    CHECK(wait_leader(c, 5000) >= 0);
    for (int i = 0; i < NN; i++) {
        CHECK_EQ(group_read_barrier(c->g[i], 5000), 0);
        CHECK(has(c, i, "healed", "1"));
        CHECK(has(c, i, "a", "1"));
    }
    cluster_free(c);
}

/* With 1 KiB snapshots, a follower closed while 400 entries are written catches up by
 * InstallSnapshot when it restarts, then restarts again from the received snapshot. */
TEST(test_restart_catches_up_by_snapshot)
{
    cl_t *c = cluster_new(1024);
    CHECK(c);
    int lead = wait_leader(c, 5000);
    if (lead < 0)
        cluster_free(c);
    CHECK(lead >= 0);
    int f = (lead + 1) % NN, other = (lead + 2) % NN;
    CHECK_EQ(put(c, f, "first", "1", NULL), 0);
    stop_node(c, f);
    for (int j = 0; j < 400; j++) {
        char key[32], val[32];
        snprintf(key, sizeof(key), "key%03d", j % 150);
        snprintf(val, sizeof(val), "value-%d", j);
        CHECK_EQ(put(c, j % 2 ? lead : other, key, val, NULL), 0);
    }
    group_stats_t st;
    group_get_stats(c->g[lead], &st);
    CHECK(st.snapshots >= 2);
    CHECK(st.snapshot_index > 10);                   /* the follower's entries are gone */
    CHECK_EQ(start_node(c, f), 0);
    CHECK_EQ(group_read_barrier(c->g[f], 5000), 0);
    CHECK(has(c, f, "key149", "value-299"));
    CHECK(has(c, f, "first", "1"));
    group_get_stats(c->g[f], &st);
    CHECK(st.installs >= 1);
    group_dedup_stats_t ds;   /* the dedup table came with the snapshot */
    CHECK_EQ(group_dedup_stats(c->g[f], &ds), 0);
    CHECK(ds.clients >= 2);
    CHECK_EQ(put(c, f, "after", "1", NULL), 0);
    CHECK_EQ(group_read_barrier(c->g[lead], 0), 0);
    CHECK(kv_equal(&c->kv[f], &c->kv[lead]));
    /* a restart now starts from the received snapshot file */
    stop_node(c, f);
    CHECK_EQ(start_node(c, f), 0);
    CHECK(has(c, f, "key149", "value-299"));
    CHECK(has(c, f, "after", "1"));
    CHECK_EQ(group_read_barrier(c->g[f], 5000), 0);
    CHECK(kv_equal(&c->kv[f], &c->kv[lead]));
    for (int i = 0; i < NN; i++)
        CHECK_EQ(c->kv[i].bad, 0);
    cluster_free(c);
}

/* ---- exactly-once retries -------------------------------------------------------------------- */

static uint64_t sets_of(cl_t *c, int i)
{
    pthread_mutex_lock(&c->kv[i].mu);
    uint64_t n = c->kv[i].sets;
    pthread_mutex_unlock(&c->kv[i].mu);
    return n;
}

static uint64_t u_twice_of(cl_t *c, int i)
{
    pthread_mutex_lock(&c->kv[i].mu);
    uint64_t n = c->kv[i].u_twice;
    pthread_mutex_unlock(&c->kv[i].mu);
    return n;
}

/* Every running node has passed a read barrier (so has applied all acknowledged writes). */
static bool all_caught_up(cl_t *c)
{
    for (int i = 0; i < NN; i++)
        if (c->g[i] && group_read_barrier(c->g[i], 5000) != 0)
            return false;
    return true;
}

/* A follower's forward is lost, then the leader's answer to the next one: each proposal is
 * resent by group_propose with the same envelope and applied exactly once on every replica;
 * the resent one whose first copy applied gets the result saved from that first apply. */
TEST(test_lost_forward_and_answer_apply_once)
{
    cl_t *c = cluster_new(0);
    CHECK(c);
    int lead = wait_leader(c, 5000);
    if (lead < 0)
        cluster_free(c);
    CHECK(lead >= 0);
    int f = (lead + 1) % NN;
    CHECK_EQ(put(c, f, "warm", "1", NULL), 0);      /* f knows the leader and is connected */
    CHECK(all_caught_up(c));
    uint64_t sets0[NN];
    for (int i = 0; i < NN; i++)
        sets0[i] = sets_of(c, i);
    group_dedup_stats_t df0, dl0, df, dl;
    CHECK_EQ(group_dedup_stats(c->g[f], &df0), 0);
    CHECK_EQ(group_dedup_stats(c->g[lead], &dl0), 0);
    CHECK(df0.retry_ms == 10 * TICK_MS);            /* the election timeout by default */

    /* 1. the PROPOSE is lost: nothing reaches the leader until the resend */
    group_node_test_drop_fwd(c->node[f], FWD_PROPOSE, 1);
    sm_result_t res;
    CHECK_EQ(put(c, f, "u:lost-propose", "1", &res), 0);
    CHECK(has(c, f, "u:lost-propose", "1"));
    CHECK_EQ(group_dedup_stats(c->g[f], &df), 0);
    CHECK(df.retries >= df0.retries + 1);

    /* 2. the RESULT is lost: the first copy applied everywhere, the resend is a duplicate */
    group_node_test_drop_fwd(c->node[lead], FWD_RESULT, 1);
    CHECK_EQ(put(c, f, "u:lost-result", "1", &res), 0);
    CHECK_EQ(res.len, 16);
    uint64_t idx, sets_at;
    memcpy(&idx, res.data, 8);
    memcpy(&sets_at, res.data + 8, 8);
    CHECK(all_caught_up(c));
    CHECK_EQ(group_dedup_stats(c->g[f], &df), 0);
    CHECK_EQ(group_dedup_stats(c->g[lead], &dl), 0);
    printf("# lost forward and answer: %llu resends on the follower, %llu duplicates skipped "
           "on the leader\n", (unsigned long long)(df.retries - df0.retries),
           (unsigned long long)(dl.dup_hits - dl0.dup_hits));
    CHECK(df.retries >= df0.retries + 2);
    CHECK(dl.dup_hits >= dl0.dup_hits + 1);         /* the resend met the saved result */
    CHECK(df.dup_hits >= 1);                        /* on the follower's replica too */
    CHECK_EQ(sets_at, sets0[lead] + 2);             /* the result of the FIRST apply */
    group_stats_t st;
    group_get_stats(c->g[lead], &st);
    CHECK(st.applied_index > idx);                  /* the duplicate entry came after it */
    for (int i = 0; i < NN; i++) {
        CHECK_EQ(sets_of(c, i), sets0[i] + 2);      /* two proposals, two applies */
        CHECK_EQ(u_twice_of(c, i), 0);
        CHECK(has(c, i, "u:lost-result", "1"));
        CHECK_EQ(c->kv[i].bad, 0);
    }
    cluster_free(c);
}

/* A duplicate that arrives after the group snapshotted (its log compacted) and every node
 * restarted from its snapshot is still recognized: the table is in the snapshot. A sequence
 * number below the client's low is skipped as finished. */
TEST(test_duplicate_after_snapshot_restore)
{
    cl_t *c = cluster_new(1024);
    CHECK(c);
    int lead = wait_leader(c, 5000);
    if (lead < 0)
        cluster_free(c);
    CHECK(lead >= 0);
    const uint64_t XN = 99, XI = 0x1234;            /* a client that is no node of ours */
    sm_result_t r1, r2;
    CHECK_EQ(group_test_propose_as(c->g[lead], XN, XI, 1, 1, "u:snap=1", 8, &r1), 0);
    CHECK_EQ(r1.len, 16);
    uint64_t idx1;
    memcpy(&idx1, r1.data, 8);
    for (int j = 0; j < 80; j++) {                  /* several 1 KiB snapshots past idx1 */
        char key[32];
        snprintf(key, sizeof(key), "fill%d", j);
        CHECK_EQ(put(c, j % NN, key, "some filler value to reach the snapshot size", NULL), 0);
    }
    CHECK(all_caught_up(c));
    for (int i = 0; i < NN; i++) {
        group_stats_t st;
        group_get_stats(c->g[i], &st);
        CHECK(st.snapshot_index > idx1);            /* the entry is gone from the log */
    }
    for (int i = 0; i < NN; i++)
        stop_node(c, i);
    for (int i = 0; i < NN; i++)
        CHECK_EQ(start_node(c, i), 0);
    for (int i = 0; i < NN; i++) {
        group_dedup_stats_t d;
        CHECK_EQ(group_dedup_stats(c->g[i], &d), 0);
        CHECK(d.clients >= 1);                      /* restored with the state */
    }
    lead = wait_leader(c, 5000);
    CHECK(lead >= 0);
    CHECK(all_caught_up(c));
    uint64_t sets0 = sets_of(c, lead);
    /* the same (client, seq) again, from another node: not applied, the saved result back */
    int other = (lead + 1) % NN;
    CHECK_EQ(group_test_propose_as(c->g[other], XN, XI, 1, 1, "u:snap=1", 8, &r2), 0);
    CHECK_EQ(r2.len, r1.len);
    CHECK(memcmp(r2.data, r1.data, r1.len) == 0);   /* idx1 and the set count back then */
    CHECK(all_caught_up(c));
    for (int i = 0; i < NN; i++) {
        group_dedup_stats_t d;
        CHECK_EQ(group_dedup_stats(c->g[i], &d), 0);
        CHECK(d.dup_hits >= 1);
        CHECK_EQ(sets_of(c, i), sets0);
        CHECK_EQ(u_twice_of(c, i), 0);
    }
    /* seq 2 with low 2 applies; then seq 1 is below the client's low: skipped as finished */
    CHECK_EQ(group_test_propose_as(c->g[lead], XN, XI, 2, 2, "u:snap2=1", 9, &r2), 0);
    CHECK_EQ(r2.code, 0);
    CHECK_EQ(group_test_propose_as(c->g[lead], XN, XI, 1, 1, "u:snap=1", 8, &r2), 0);
    CHECK_EQ(r2.code, -EALREADY);
    /* an envelope breaking a rule (low above seq) is applied nowhere */
    CHECK_EQ(group_test_propose_as(c->g[lead], XN, XI, 3, 4, "u:bad=1", 7, &r2), 0);
    CHECK_EQ(r2.code, -EPROTO);
    CHECK(all_caught_up(c));
    for (int i = 0; i < NN; i++) {
        CHECK_EQ(sets_of(c, i), sets0 + 1);
        CHECK(!has(c, i, "u:bad", "1"));
        CHECK_EQ(c->kv[i].bad, 0);
    }
    cluster_free(c);
}

/* 1100 clients propose once each: the table stays at its cap of 1024 on every replica, the
 * same clients evicted everywhere (least recently applied first); a recent client's
 * duplicate is still recognized, while the first client was evicted (its duplicate, arriving
 * after 1023 newer clients wrote, applies again: the documented limit). */
typedef struct many {
    cl_t *c;
    int node, from, to, failed;
} many_t;

static void *many_main(void *arg)
{
    many_t *m = arg;
    for (int k = m->from; k < m->to; k++) {
        char cmd[32];
        int n = snprintf(cmd, sizeof(cmd), "u:client%d=1", k);
        if (group_test_propose_as(m->c->g[m->node], 1000 + (uint64_t)k, 1, 1, 1, cmd,
                                  (size_t)n, NULL) != 0)
            m->failed++;
    }
    return NULL;
}

TEST(test_dedup_table_bounded)
{
    cl_t *c = cluster_new(0);
    CHECK(c);
    int lead = wait_leader(c, 5000);
    if (lead < 0)
        cluster_free(c);
    CHECK(lead >= 0);
    sm_result_t r;
    /* client 0 first, alone, so it is the least recently applied one */
    CHECK_EQ(group_test_propose_as(c->g[lead], 1000, 1, 1, 1, "u:client0=1", 11, &r), 0);
    enum { NT = 6, NC = 1100 };
    many_t m[NT];
    pthread_t th[NT];
    for (int t = 0; t < NT; t++) {
        m[t] = (many_t){ .c = c, .node = t % NN, .from = 1 + t * (NC - 1) / NT,
                         .to = 1 + (t + 1) * (NC - 1) / NT };
        pthread_create(&th[t], NULL, many_main, &m[t]);
    }
    int failed = 0;
    for (int t = 0; t < NT; t++) {
        pthread_join(th[t], NULL);
        failed += m[t].failed;
    }
    CHECK_EQ(failed, 0);
    CHECK(all_caught_up(c));
    group_dedup_stats_t d[NN];
    for (int i = 0; i < NN; i++) {
        CHECK_EQ(group_dedup_stats(c->g[i], &d[i]), 0);
        CHECK_EQ(d[i].clients, 1024);
        CHECK(d[i].evictions >= NC - 1024);
        CHECK_EQ(d[i].evictions, d[0].evictions);   /* a function of the log */
    }
    uint64_t sets0 = sets_of(c, lead);
    /* the last client of thread 0 is recent: its duplicate is recognized */
    int recent = m[0].to - 1;
    char cmd[32];
    int n = snprintf(cmd, sizeof(cmd), "u:client%d=1", recent);
    CHECK_EQ(group_test_propose_as(c->g[lead], 1000 + (uint64_t)recent, 1, 1, 1, cmd,
                                   (size_t)n, &r), 0);
    CHECK(all_caught_up(c));
    CHECK_EQ(sets_of(c, lead), sets0);
    /* client 0 was evicted: its duplicate is applied again */
    CHECK_EQ(group_test_propose_as(c->g[lead], 1000, 1, 1, 1, "u:client0=1", 11, &r), 0);
    CHECK(all_caught_up(c));
    CHECK_EQ(sets_of(c, lead), sets0 + 1);
    for (int i = 0; i < NN; i++) {
        CHECK_EQ(u_twice_of(c, i), 1);
        CHECK_EQ(c->kv[i].bad, 0);
    }
    cluster_free(c);
}

/* ---- a snapshot of the older format (no dedup table) ----------------------------------------- */

static void null_send(void *ctx, uint64_t to, uint32_t group, const raft_msg_t *m)
{
    (void)ctx;
    (void)to;
    (void)group;
    (void)m;
}

/* A one-node group written by a node loop without group_raft (snapshot metadata version 1,
 * no tag: the state machine's stream alone, commands without envelopes) loads under
 * group_raft: the state comes from the old snapshot and the log after it, new proposals get
 * envelopes, and the next snapshot (with the table) loads too. */
TEST(test_old_snapshot_format_loads)
{
    char base[64] = "/tmp/qfs-graftold-XXXXXX";
    CHECK(mkdtemp(base));
    kv_t *kv = calloc(1, sizeof(*kv));
    pthread_mutex_init(&kv->mu, NULL);
    const uint64_t id = 1, voters[1] = { 1 };
    /* 1. the old writer: mraft alone, snap_tag 0 */
    mraft_config_t mc = { .id = id, .dir = base, .tick_ms = TICK_MS, .election_tick = 10,
                          .snapshot_bytes = 512, .timeout_ms = 5000 };
    mraft_transport_t tr = { .send = null_send };
    mraft_node_t *mn = NULL;
    char *msg = NULL;
    int rc = mraft_open(&mc, &tr, &mn, &msg);
    if (rc == 0 && (rc = mraft_add_group(mn, GID, voters, 1, &kv_ops, kv, &msg)) == 0)
        rc = mraft_start(mn);
    if (rc)
        printf("# old node: %s (%s)\n", qerr_str(rc), msg ? msg : "");
    free(msg);
    msg = NULL;
    CHECK_EQ(rc, 0);
    uint64_t end = now_ms() + 5000;
    int n_put = 0;
    for (int j = 0; j < 60; j++) {
        char cmd[64];
        int n = snprintf(cmd, sizeof(cmd), "old%d=value number %d", j, j);
        do   /* the first waits for the node to elect itself */
            rc = mraft_propose(mn, GID, cmd, (size_t)n, NULL, 1000, NULL);
        while (rc == -QERR_NOTLEADER && now_ms() < end && (sleep_ms(10), 1));
        n_put += rc == 0;
    }
    mraft_group_status_t ms;
    for (int j = 0; j < 20; j++) {   /* until a snapshot is followed by a log tail */
        rc = mraft_status(mn, GID, &ms);
        if (rc || (ms.snap_index > 0 && ms.snap_index < ms.applied))
            break;
        n_put += mraft_propose(mn, GID, "tail=1", 6, NULL, 1000, NULL) == 0;
    }
    mraft_close(mn);
    CHECK_EQ(rc, 0);
    CHECK(n_put >= 60);
    CHECK(ms.snap_index > 0 && ms.snap_index < ms.applied);   /* a snapshot and a log tail */
    /* 2. reopened under group_raft */
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)free_port());
    group_raft_config_t cfg = { .id = id, .listen = addr, .dir = base, .tick_ms = TICK_MS,
                                .election_tick = 10, .timeout_ms = 5000, .snapshot_bytes = 512,
                                .log = test_log };
    group_node_t *nd = NULL;
    group_t *g = NULL;
    for (int round = 0; round < 2; round++) {
        kv_clear(kv);
        rc = group_node_open(&cfg, &nd, &msg);
        if (rc == 0 && (rc = group_node_add(nd, GID, voters, 1, &kv_ops, kv, &g, &msg)) != 0)
            group_node_close(nd);
        else if (rc == 0 && (rc = group_node_start(nd, &msg)) != 0)
            group_node_close(nd);
        if (rc)
            printf("# reopen %d: %s (%s)\n", round, qerr_str(rc), msg ? msg : "");
        free(msg);
        msg = NULL;
        CHECK_EQ(rc, 0);
        char v[64];
        CHECK(kv_get(kv, "old59", v, sizeof(v)) && strcmp(v, "value number 59") == 0);
        CHECK(kv_get(kv, "old0", v, sizeof(v)) && strcmp(v, "value number 0") == 0);
        if (round == 0) {
            group_stats_t st;
            group_get_stats(g, &st);
            CHECK(st.snapshot_index >= ms.snap_index);  /* restored from the old file */
            for (int j = 0; j < 40 && rc == 0; j++) {   /* new snapshots, with the table */
                char cmd[64];
                int n = snprintf(cmd, sizeof(cmd), "u:new%d=value number %d", j, j);
                rc = group_propose(g, cmd, (size_t)n, NULL);
            }
            CHECK_EQ(rc, 0);
            group_get_stats(g, &st);
            CHECK(st.snapshot_index > ms.applied);
        } else {
            group_dedup_stats_t d;
            CHECK_EQ(group_dedup_stats(g, &d), 0);
            CHECK(d.clients >= 1);                       /* the table came back */
            CHECK(kv_get(kv, "u:new39", v, sizeof(v)));
            CHECK_EQ(group_propose(g, "u:again=1", 9, NULL), 0);
        }
        CHECK_EQ(kv->bad, 0);
        group_node_close(nd);
    }
    kv_clear(kv);
    pthread_mutex_destroy(&kv->mu);
    free(kv);
    nftw(base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- a raw peer on a socket ---------------------------------------------------------------- */

static int raw_connect(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1)),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static bool raw_send(int fd, const frame_t *f)
{
    uint8_t buf[4096];
    size_t len;
    return frame_encode(f, buf, sizeof(buf), &len) == 0 &&
           send(fd, buf, len, MSG_NOSIGNAL) == (ssize_t)len;
}

/* Sends a FWD frame with an arbitrary payload and a correct CRC. */
static bool raw_send_fwd_payload(int fd, const uint8_t *p, size_t plen)
{
    uint8_t buf[1024];
    le_put32(buf, FRAME_MAGIC);
    buf[4] = FRAME_VERSION;
    buf[5] = FRAME_FWD;
    buf[6] = buf[7] = 0;
    le_put32(buf + 8, (uint32_t)plen);
    memcpy(buf + FRAME_HDR_BYTES, p, plen);
    le_put32(buf + 12, crc32c(crc32c(0, buf, 12), p, plen));
    size_t len = FRAME_HDR_BYTES + plen;
    return send(fd, buf, len, MSG_NOSIGNAL) == (ssize_t)len;
}

/* Reads frames until one of `type` arrives (1), the peer closes (0), or ms pass (-1). */
static int raw_recv(int fd, frame_decoder_t *d, uint32_t type, frame_t *out, unsigned ms)
{
    static uint8_t buf[65536];
    static size_t have, off;
    uint64_t end = now_ms() + ms;
    for (;;) {
        while (off < have) {
            size_t used;
            int rc = frame_decoder_feed(d, buf + off, have - off, &used, out);
            off += used;
            if (rc < 0)
                return -1;
            if (rc == 1) {
                if (out->type == type)
                    return 1;
                frame_free(out);
            }
        }
        off = have = 0;
        uint64_t now = now_ms();
        if (now >= end)
            return -1;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, (int)(end - now)) <= 0)
            return -1;
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0)
            return 0;
        have = (size_t)n;
    }
}

/* A connection that passed its HELLO as node PHANTOM; -1 on failure. */
static int raw_hello(cl_t *c, int i, frame_decoder_t **d)
{
    int fd = raw_connect(c->addr[i + 1]);
    if (fd < 0)
        return -1;
    *d = frame_decoder_new(0);
    frame_t h = { .type = FRAME_HELLO, .hello = { .node_id = PHANTOM, .cluster_id = CLUSTER_ID,
                                                   .proto_min = 1, .proto_max = 1 } };
    frame_t got;
    if (!raw_send(fd, &h) || raw_recv(fd, *d, FRAME_HELLO, &got, 2000) != 1) {
        close(fd);
        frame_decoder_free(*d);
        *d = NULL;
        return -1;
    }
    frame_free(&got);
    return fd;
}

/* Forwarding from a raw peer: well-formed PROPOSEs are answered (NOTFOUND for an unknown
 * group, NOTLEADER with the leader from a follower, applied with its index by the leader),
 * a stray RESULT is ignored; malformed FWD payloads close the connection and are logged;
 * the cluster serves on. */
TEST(test_forwarding_frames_from_a_raw_peer)
{
    cl_t *c = cluster_new(0);
    CHECK(c);
    int lead = wait_leader(c, 5000);
    if (lead < 0)
        cluster_free(c);
    CHECK(lead >= 0);
    int fol = (lead + 1) % NN;
    frame_decoder_t *d = NULL;
    frame_t r;

    int fd = raw_hello(c, fol, &d);
    CHECK(fd >= 0);
    const char *cmd = "raw=1";
    frame_t p = { .type = FRAME_FWD, .fwd = { .kind = FWD_PROPOSE, .group = 999, .req = 41,
                                              .attempt = 1, .cmd = (const uint8_t *)cmd,
                                              .len = strlen(cmd) } };
    CHECK(raw_send(fd, &p));
    CHECK_EQ(raw_recv(fd, d, FRAME_FWD, &r, 2000), 1);
    CHECK_EQ(r.fwd.kind, FWD_RESULT);
    CHECK_EQ(r.fwd.req, 41);
    CHECK_EQ(r.fwd.rc, -QERR_NOTFOUND);
    frame_free(&r);
    p.fwd.group = GID;
    p.fwd.req = 42;
    CHECK(raw_send(fd, &p));
    CHECK_EQ(raw_recv(fd, d, FRAME_FWD, &r, 2000), 1);
    CHECK_EQ(r.fwd.req, 42);
    CHECK_EQ(r.fwd.attempt, 1);
    CHECK_EQ(r.fwd.rc, -QERR_NOTLEADER);
    CHECK_EQ(r.fwd.leader, id_of(lead));
    frame_free(&r);
    /* a RESULT nobody asked for is ignored */
    frame_t stray = { .type = FRAME_FWD, .fwd = { .kind = FWD_RESULT, .group = GID, .req = 7,
                                                  .rc = 0, .index = 3, .term = 1 } };
    CHECK(raw_send(fd, &stray));
    /* malformed: a PROPOSE whose length field lies */
    uint8_t bad[64] = { FWD_VERSION, FWD_PROPOSE, 0, 0 };
    le_put32(bad + 4, GID);
    le_put64(bad + 8, 43);
    le_put32(bad + 16, 1);
    le_put32(bad + 20, 1000);
    memcpy(bad + 24, "x=1", 3);
    CHECK(raw_send_fwd_payload(fd, bad, 27));
    CHECK_EQ(raw_recv(fd, d, FRAME_FWD, &r, 3000), 0);   /* closed, no answer */
    close(fd);
    frame_decoder_free(d);

    /* the leader applies a raw PROPOSE and answers with its index */
    fd = raw_hello(c, lead, &d);
    CHECK(fd >= 0);
    p.fwd.req = 44;
    p.fwd.attempt = 3;
    CHECK(raw_send(fd, &p));
    CHECK_EQ(raw_recv(fd, d, FRAME_FWD, &r, 3000), 1);
    CHECK_EQ(r.fwd.req, 44);
    CHECK_EQ(r.fwd.attempt, 3);
    CHECK_EQ(r.fwd.rc, 0);
    CHECK(r.fwd.index >= 1);
    CHECK_EQ(r.fwd.res.len, 16);
    frame_free(&r);
    CHECK(has(c, lead, "raw", "1"));
    /* malformed: another forwarding version, then (new connection) a RESULT too long */
    uint8_t v2[FWD_RESULT_BYTES] = { 2, FWD_RESULT };
    CHECK(raw_send_fwd_payload(fd, v2, sizeof(v2)));
    CHECK_EQ(raw_recv(fd, d, FRAME_FWD, &r, 3000), 0);
    close(fd);
    frame_decoder_free(d);
    fd = raw_hello(c, lead, &d);
    CHECK(fd >= 0);
    uint8_t longres[FWD_RESULT_BYTES + 80] = { FWD_VERSION, FWD_RESULT };
    le_put64(longres + FWD_HEAD_BYTES + 12, 5);              /* index */
    le_put32(longres + FWD_HEAD_BYTES + 32, 80);             /* result length over 64 */
    CHECK(raw_send_fwd_payload(fd, longres, sizeof(longres)));
    CHECK_EQ(raw_recv(fd, d, FRAME_FWD, &r, 3000), 0);
    close(fd);
    frame_decoder_free(d);
    /* a FWD frame before any HELLO */
    fd = raw_connect(c->addr[fol + 1]);
    CHECK(fd >= 0);
    d = frame_decoder_new(0);
    CHECK(raw_send(fd, &p));
    CHECK_EQ(raw_recv(fd, d, FRAME_FWD, &r, 3000), 0);
    close(fd);
    frame_decoder_free(d);

    CHECK(logged("forwarding message refused: command length does not match the payload"));
    CHECK(logged("forwarding message refused: another forwarding version"));
    CHECK(logged("forwarding message refused: result length does not match the payload"));
    CHECK(logged("first frame has type 5, not HELLO"));
    /* every node still serves */
    for (int i = 0; i < NN; i++)
        CHECK_EQ(put(c, i, "still", "ok", NULL), 0);
    cluster_free(c);
}

/* The forwarding codec alone: round trips, and each malformation refused with its code. */
TEST(test_fwd_codec)
{
    uint8_t b[512];
    size_t len;
    frame_fwd_t f = { .kind = FWD_PROPOSE, .group = 9, .req = 1234567890123ull, .attempt = 2,
                      .cmd = (const uint8_t *)"abc", .len = 3 }, g;
    CHECK_EQ(frame_fwd_encode(&f, b, sizeof(b), &len), 0);
    CHECK_EQ(len, frame_fwd_size(&f));
    CHECK_EQ(len, FWD_HEAD_BYTES + 4 + 3);
    CHECK_EQ(frame_fwd_decode(b, len, &g, NULL), 0);
    CHECK(g.kind == FWD_PROPOSE && g.group == 9 && g.req == f.req && g.attempt == 2 &&
          g.len == 3 && memcmp(g.cmd, "abc", 3) == 0);
    frame_fwd_free(&g);
    const char *why = NULL;
    CHECK_EQ(frame_fwd_decode(b, len - 1, &g, &why), -QERR_CORRUPT);    /* truncated */
    CHECK(why && strstr(why, "length"));
    CHECK_EQ(g.kind, 0);
    CHECK_EQ(frame_fwd_decode(b, 10, &g, NULL), -QERR_CORRUPT);         /* no header */
    b[0] = 9;
    CHECK_EQ(frame_fwd_decode(b, len, &g, NULL), -QERR_FORMAT);
    b[0] = FWD_VERSION;
    b[2] = 1;
    CHECK_EQ(frame_fwd_decode(b, len, &g, NULL), -QERR_CORRUPT);        /* flags */
    b[2] = 0;
    b[1] = 3;
    CHECK_EQ(frame_fwd_decode(b, len, &g, NULL), -QERR_CORRUPT);        /* kind */
    /* an empty command is fine */
    f.len = 0;
    CHECK_EQ(frame_fwd_encode(&f, b, sizeof(b), &len), 0);
    CHECK_EQ(frame_fwd_decode(b, len, &g, NULL), 0);
    CHECK_EQ(g.len, 0);
    frame_fwd_free(&g);

    frame_fwd_t r = { .kind = FWD_RESULT, .group = 9, .req = 5, .attempt = 1, .rc = 0,
                      .leader = 3, .index = 77, .term = 4, .res = { .code = -17, .len = 5 } };
    memcpy(r.res.data, "hello", 5);
    CHECK_EQ(frame_fwd_encode(&r, b, sizeof(b), &len), 0);
    CHECK_EQ(len, FWD_RESULT_BYTES + 5);
    CHECK_EQ(frame_fwd_decode(b, len, &g, NULL), 0);
    CHECK(g.kind == FWD_RESULT && g.rc == 0 && g.leader == 3 && g.index == 77 &&
          g.term == 4 && g.res.code == -17 && g.res.len == 5 &&
          memcmp(g.res.data, "hello", 5) == 0);
    CHECK_EQ(frame_fwd_decode(b, len + 1, &g, NULL), -QERR_CORRUPT);    /* trailing byte */
    CHECK_EQ(frame_fwd_decode(b, len - 1, &g, NULL), -QERR_CORRUPT);
    le_put32(b + FWD_HEAD_BYTES, 5);                                     /* rc positive */
    CHECK_EQ(frame_fwd_decode(b, len, &g, NULL), -QERR_CORRUPT);
    le_put32(b + FWD_HEAD_BYTES, (uint32_t)-QERR__COUNT);                /* unknown code */
    CHECK_EQ(frame_fwd_decode(b, len, &g, NULL), -QERR_CORRUPT);
    le_put32(b + FWD_HEAD_BYTES, 0);
    le_put64(b + FWD_HEAD_BYTES + 12, 0);                                /* success at 0 */
    CHECK_EQ(frame_fwd_decode(b, len, &g, NULL), -QERR_CORRUPT);
    /* encode refuses what decode would */
    r.index = 0;
    CHECK_EQ(frame_fwd_encode(&r, b, sizeof(b), &len), -QERR_INVAL);
    r.index = 1;
    r.res.len = SM_RESULT_MAX + 1;
    CHECK_EQ(frame_fwd_encode(&r, b, sizeof(b), &len), -QERR_INVAL);
    r.res.len = 0;
    r.rc = 1;
    CHECK_EQ(frame_fwd_encode(&r, b, sizeof(b), &len), -QERR_INVAL);
    r.rc = -QERR_NOTLEADER;
    CHECK_EQ(frame_fwd_encode(&r, b, 10, &len), -QERR_TOOBIG);
    /* inside a frame, through the streaming decoder */
    frame_t fr = { .type = FRAME_FWD, .fwd = r }, out;
    uint8_t fb[512];
    size_t used;
    CHECK_EQ(frame_encode(&fr, fb, sizeof(fb), &len), 0);
    frame_decoder_t *d = frame_decoder_new(0);
    CHECK_EQ(frame_decoder_feed(d, fb, len, &used, &out), 1);
    CHECK(out.type == FRAME_FWD && out.fwd.rc == -QERR_NOTLEADER && out.fwd.req == 5);
    frame_free(&out);
    frame_decoder_free(d);
}

/* group_open_raft: one call per node; group_close closes the node. */
TEST(test_open_raft_one_call)
{
    char base[64] = "/tmp/qfs-graft1-XXXXXX";
    CHECK(mkdtemp(base));
    char addr[NN][32], dir[NN][96];
    group_peer_t peers[NN];
    group_t *g[NN] = { 0 };
    kv_t *kv = calloc(NN, sizeof(*kv));
    for (int i = 0; i < NN; i++) {
        snprintf(addr[i], sizeof(addr[i]), "127.0.0.1:%u", (unsigned)free_port());
        snprintf(dir[i], sizeof(dir[i]), "%s/n%d", base, i + 1);
        mkdir(dir[i], 0755);
        peers[i] = (group_peer_t){ .id = (uint64_t)i + 1, .addr = addr[i] };
        pthread_mutex_init(&kv[i].mu, NULL);
    }
    int rc = 0;
    for (int i = 0; i < NN && rc == 0; i++) {
        group_raft_config_t cfg = { .id = (uint64_t)i + 1, .listen = addr[i], .peers = peers,
                                    .n_peers = NN, .dir = dir[i], .tick_ms = TICK_MS,
                                    .timeout_ms = 3000, .log = test_log };
        char *msg = NULL;
        rc = group_open_raft(&cfg, 1, &kv_ops, &kv[i], &g[i], &msg);
        if (rc)
            printf("# group_open_raft: %s (%s)\n", qerr_str(rc), msg ? msg : "");
        free(msg);
    }
    for (int i = 0; i < NN && rc == 0; i++)
        rc = group_propose(g[i], "one=1", 5, NULL);   /* waits out the first election */
    CHECK_EQ(rc, 0);
    for (int i = 0; i < NN; i++) {
        CHECK_EQ(group_read_barrier(g[i], 0), 0);
        char v[16];
        CHECK(kv_get(&kv[i], "one", v, sizeof(v)) && strcmp(v, "1") == 0);
    }
    /* a bad peer list is refused with a message */
    group_raft_config_t bad = { .id = 9, .listen = "127.0.0.1:0", .peers = peers, .n_peers = NN,
                                .dir = dir[0] };
    group_peer_t dup[2] = { { 1, addr[0] }, { 1, addr[1] } };
    bad.peers = dup;
    bad.n_peers = 2;
    char *msg = NULL;
    group_t *x = NULL;
    CHECK_EQ(group_open_raft(&bad, 1, &kv_ops, &kv[0], &x, &msg), -QERR_INVAL);
    CHECK(msg && strstr(msg, "twice"));
    free(msg);
    for (int i = 0; i < NN; i++) {
        group_close(g[i]);
        kv_clear(&kv[i]);
        pthread_mutex_destroy(&kv[i].mu);
    }
    free(kv);
    nftw(base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- learners and the preferred leader ------------------------------------------------------
 * 5 nodes (ids LFIRST..LFIRST+4) over TCP, one group with 3 voters and 2 learners, founded by
 * group_node_add_members with the same lists on every node. LVOTERS[0] is the preferred
 * leader. Each case's body runs in its own function so the fixture is freed even when a
 * CHECK ends the body early. */
#define LN 5
#define LFIRST 2
#define LGID 9
#define LBALANCE_MS 300           /* the tests' balancing interval (default 3000) */
static const uint64_t LVOTERS[3] = { 4, 2, 3 };   /* preferred leader: node 4 */
static const uint64_t LLEARNERS[2] = { 5, 6 };

typedef struct lcl {
    char base[64];
    char dir[LN][96];
    char addr[LN][32];
    group_peer_t peers[LN];
    group_node_t *node[LN];
    group_t *g[LN];
    kv_t kv[LN];
    int balance_off;
} lcl_t;

static uint64_t lid(int i)
{
    return LFIRST + (uint64_t)i;
}

static int lidx(uint64_t id)
{
    return (int)(id - LFIRST);
}

static int lstart(lcl_t *c, int i)
{
    group_raft_config_t cfg = {
        .id = lid(i), .listen = c->addr[i], .peers = c->peers, .n_peers = LN,
        .cluster_id = CLUSTER_ID, .dir = c->dir[i], .tick_ms = TICK_MS, .election_tick = 10,
        .timeout_ms = TIMEOUT_MS, .seed = 991 + (uint64_t)i, .log = test_log,
        .leader_balance_off = c->balance_off, .balance_ms = LBALANCE_MS };
    group_members_t m = { .voters = LVOTERS, .n_voters = 3, .learners = LLEARNERS,
                          .n_learners = 2 };
    char *msg = NULL;
    kv_clear(&c->kv[i]);
    int rc = group_node_open(&cfg, &c->node[i], &msg);
    if (rc == 0 &&
        (rc = group_node_add_members(c->node[i], LGID, &m, &kv_ops, &c->kv[i], &c->g[i],
                                     &msg)))
        group_node_close(c->node[i]);
    else if (rc == 0 && (rc = group_node_start(c->node[i], &msg)))
        group_node_close(c->node[i]);
    if (rc) {
        printf("# node %d: %s (%s)\n", (int)lid(i), qerr_str(rc), msg ? msg : "");
        c->node[i] = NULL;
        c->g[i] = NULL;
    }
    free(msg);
    return rc;
}

static void lstop(lcl_t *c, int i)
{
    group_node_close(c->node[i]);
    c->node[i] = NULL;
    c->g[i] = NULL;
}

static lcl_t *lcl_new(int balance_off)
{
    lcl_t *c = calloc(1, sizeof(*c));
    snprintf(c->base, sizeof(c->base), "/tmp/qfs-glearn-XXXXXX");
    if (!mkdtemp(c->base)) {
        free(c);
        return NULL;
    }
    c->balance_off = balance_off;
    char base[sizeof(c->base)];
    memcpy(base, c->base, sizeof(base));
    for (int i = 0; i < LN; i++) {
        snprintf(c->addr[i], sizeof(c->addr[i]), "127.0.0.1:%u", (unsigned)free_port());
        c->peers[i] = (group_peer_t){ .id = lid(i), .addr = c->addr[i] };
        pthread_mutex_init(&c->kv[i].mu, NULL);
        snprintf(c->dir[i], sizeof(c->dir[i]), "%s/n%d", base, (int)lid(i));
        mkdir(c->dir[i], 0755);
    }
    for (int i = 0; i < LN; i++)
        if (lstart(c, i)) {
            for (int j = 0; j < i; j++)
                lstop(c, j);
            return NULL;   /* leaks the temp dir: the failure is reported */
        }
    return c;
}

static void lcl_free(lcl_t *c)
{
    if (!c)
        return;
    for (int i = 0; i < LN; i++) {
        lstop(c, i);
        kv_clear(&c->kv[i]);
        pthread_mutex_destroy(&c->kv[i].mu);
    }
    nftw(c->base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(c);
}

/* The node index that leads once every running node names it; -1 after ms. */
static int lwait_leader(lcl_t *c, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    do {
        int lead = -1;
        bool agree = true;
        for (int i = 0; i < LN; i++)
            if (c->g[i] && group_is_leader(c->g[i]))
                lead = i;
        for (int i = 0; lead >= 0 && i < LN; i++) {
            group_stats_t st;
            if (!c->g[i])
                continue;
            group_get_stats(c->g[i], &st);
            agree &= st.leader == lid(lead);
        }
        if (lead >= 0 && agree)
            return lead;
        sleep_ms(10);
    } while (now_ms() < end);
    return -1;
}

/* Waits until node `want` leads (and every running node says so); false after ms. */
static bool lwait_leader_is(lcl_t *c, int want, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    do {
        if (lwait_leader(c, 200) == want)
            return true;
    } while (now_ms() < end);
    return false;
}

static int lput(lcl_t *c, int i, const char *key, const char *val)
{
    char cmd[200];
    int n = snprintf(cmd, sizeof(cmd), "%s=%s", key, val);
    return group_propose(c->g[i], cmd, (size_t)n, NULL);
}

static int lput_retry(lcl_t *c, int i, const char *key, const char *val, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    int rc;
    do {
        rc = lput(c, i, key, val);
    } while (rc != 0 && now_ms() < end);
    return rc;
}

static bool lhas(lcl_t *c, int i, const char *key, const char *val)
{
    char buf[256];
    return kv_get(&c->kv[i], key, buf, sizeof(buf)) && strcmp(buf, val) == 0;
}

static bool is_voter_idx(int i)
{
    for (int k = 0; k < 3; k++)
        if (lidx(LVOTERS[k]) == i)
            return true;
    return false;
}

/* Learners: stats say so, they never lead; a learner's proposal is applied locally on
 * return; a write on a voter is read on each learner after a barrier. */
static void learners_body(lcl_t *c)
{
    int lead = lwait_leader(c, 10000);
    CHECK(lead >= 0);
    CHECK(is_voter_idx(lead));
    for (int i = 0; i < LN; i++) {
        group_stats_t st;
        group_get_stats(c->g[i], &st);
        CHECK_EQ(st.is_learner, !is_voter_idx(i));
        CHECK_EQ(st.node_id, lid(i));
        CHECK_EQ(st.preferred_leader, LVOTERS[0]);
    }
    for (int k = 0; k < 2; k++) {
        int l = lidx(LLEARNERS[k]);
        char key[32];
        snprintf(key, sizeof(key), "from-learner-%d", (int)lid(l));
        CHECK_EQ(lput_retry(c, l, key, "x", 10000), 0);
        CHECK(lhas(c, l, key, "x"));              /* applied here on return */
        CHECK_EQ(group_read_barrier(c->g[l], 0), 0);
        CHECK(lhas(c, l, key, "x"));
        CHECK_EQ(group_is_leader(c->g[l]), 0);
    }
    /* a write on each voter, read on both learners after a barrier */
    for (int k = 0; k < 3; k++) {
        int v = lidx(LVOTERS[k]);
        char key[32];
        snprintf(key, sizeof(key), "from-voter-%d", (int)lid(v));
        CHECK_EQ(lput_retry(c, v, key, "y", 10000), 0);
        for (int j = 0; j < 2; j++) {
            int l = lidx(LLEARNERS[j]);
            CHECK_EQ(group_read_barrier(c->g[l], 0), 0);
            CHECK(lhas(c, l, key, "y"));
        }
    }
    /* the learners applied exactly what the voters did */
    int l0 = lidx(LLEARNERS[0]);
    for (int i = 0; i < LN; i++) {
        CHECK_EQ(group_read_barrier(c->g[i], 0), 0);
        CHECK(i == l0 || kv_equal(&c->kv[l0], &c->kv[i]));
        CHECK_EQ(c->kv[i].bad, 0);
    }
}

TEST(test_learners_propose_and_read)
{
    lcl_t *c = lcl_new(0);
    CHECK(c);
    learners_body(c);
    lcl_free(c);
}

/* One voter down: still commits (2 of 3 voters). Two voters down: the learners and the last
 * voter are 3 of 5 nodes but not a quorum of the voters: a proposal and a barrier time out,
 * and no learner ever leads. */
static void learner_quorum_body(lcl_t *c)
{
    int lead = lwait_leader(c, 10000);
    CHECK(lead >= 0);
    int l = lidx(LLEARNERS[0]);
    CHECK_EQ(lput_retry(c, l, "before", "1", 10000), 0);
    lstop(c, lidx(LVOTERS[1]));
    CHECK_EQ(lput_retry(c, l, "one-down", "1", 10000), 0);
    CHECK(lhas(c, l, "one-down", "1"));
    CHECK(lwait_leader(c, 10000) >= 0);
    lstop(c, lidx(LVOTERS[2]));
    int rc = lput(c, l, "two-down", "1");
    CHECK_EQ(rc, -QERR_TIMEOUT);
    CHECK_EQ(group_read_barrier(c->g[l], 1000), -QERR_TIMEOUT);
    CHECK(!lhas(c, l, "two-down", "1"));
    for (int k = 0; k < 2; k++)
        CHECK_EQ(group_is_leader(c->g[lidx(LLEARNERS[k])]), 0);
    /* a voter back: commits again, and the learner reads it */
    CHECK_EQ(lstart(c, lidx(LVOTERS[1])), 0);
    CHECK_EQ(lput_retry(c, l, "healed", "1", 15000), 0);
    CHECK_EQ(group_read_barrier(c->g[lidx(LLEARNERS[1])], 0), 0);
    CHECK(lhas(c, lidx(LLEARNERS[1]), "healed", "1"));
}

TEST(test_learners_are_no_quorum)
{
    lcl_t *c = lcl_new(1);
    CHECK(c);
    learner_quorum_body(c);
    lcl_free(c);
}

/* Balancing on: the preferred leader (LVOTERS[0]) leads within a bounded time after start,
 * and again after it was stopped (another voter led meanwhile) and restarted; the transfer
 * back is counted on the node that made it. */
static void preferred_body(lcl_t *c)
{
    int pref = lidx(LVOTERS[0]);
    CHECK(lwait_leader_is(c, pref, 15000));
    CHECK_EQ(lput_retry(c, lidx(LLEARNERS[0]), "a", "1", 10000), 0);
    lstop(c, pref);
    int other = lwait_leader(c, 10000);
    CHECK(other >= 0 && other != pref && is_voter_idx(other));
    CHECK_EQ(lput_retry(c, other, "b", "2", 10000), 0);
    CHECK_EQ(lstart(c, pref), 0);
    CHECK(lwait_leader_is(c, pref, 20000));
    uint64_t transfers = 0;
    for (int k = 1; k < 3; k++) {
        group_stats_t st;
        group_get_stats(c->g[lidx(LVOTERS[k])], &st);
        transfers += st.leader_transfers;
    }
    CHECK(transfers >= 1);
    CHECK_EQ(group_read_barrier(c->g[pref], 0), 0);
    CHECK(lhas(c, pref, "b", "2"));
    CHECK_EQ(lput_retry(c, lidx(LLEARNERS[1]), "c", "3", 10000), 0);
}

TEST(test_preferred_leader_leads)
{
    lcl_t *c = lcl_new(0);
    CHECK(c);
    preferred_body(c);
    lcl_free(c);
}

/* A drain: every node is told another preferred leader (group_node_set_preferred), and the
 * leader moves there; told the first again, it moves back; a group no node hosts is
 * NOTFOUND. */
static void set_preferred_body(lcl_t *c)
{
    int first = lidx(LVOTERS[0]), second = lidx(LVOTERS[1]);
    CHECK(lwait_leader_is(c, first, 15000));
    for (int i = 0; i < LN; i++)
        CHECK_EQ(group_node_set_preferred(c->node[i], LGID, LVOTERS[1]), 0);
    CHECK_EQ(group_node_set_preferred(c->node[0], LGID + 1, LVOTERS[1]), -QERR_NOTFOUND);
    CHECK(lwait_leader_is(c, second, 15000));
    CHECK_EQ(lput_retry(c, lidx(LLEARNERS[0]), "drained", "1", 10000), 0);
    for (int i = 0; i < LN; i++) {
        group_stats_t st;
        group_get_stats(c->g[i], &st);
        CHECK_EQ(st.preferred_leader, LVOTERS[1]);
    }
    for (int i = 0; i < LN; i++)
        CHECK_EQ(group_node_set_preferred(c->node[i], LGID, LVOTERS[0]), 0);
    CHECK(lwait_leader_is(c, first, 15000));
}

TEST(test_set_preferred_moves_the_leader)
{
    lcl_t *c = lcl_new(0);
    CHECK(c);
    set_preferred_body(c);
    lcl_free(c);
}

/* Balancing off: with the preferred voter stopped and restarted, whoever leads keeps
 * leading: no transfer is started, and no node reports a preferred leader. (This case waits
 * a fixed while to see that nothing happens: many balancing intervals.) */
static void balance_off_body(lcl_t *c)
{
    int pref = lidx(LVOTERS[0]);
    CHECK(lwait_leader(c, 10000) >= 0);
    lstop(c, pref);
    int lead = lwait_leader(c, 10000);
    CHECK(lead >= 0 && lead != pref);
    CHECK_EQ(lstart(c, pref), 0);
    CHECK_EQ(lput_retry(c, lidx(LLEARNERS[0]), "k", "v", 10000), 0);
    CHECK_EQ(group_read_barrier(c->g[pref], 0), 0);   /* caught up */
    sleep_ms(10 * LBALANCE_MS);
    CHECK_EQ(lwait_leader(c, 5000), lead);
    for (int i = 0; i < LN; i++) {
        group_stats_t st;
        group_get_stats(c->g[i], &st);
        CHECK_EQ(st.leader_transfers, 0);
        CHECK_EQ(st.preferred_leader, 0);
    }
}

TEST(test_balance_off_keeps_leader)
{
    lcl_t *c = lcl_new(1);
    CHECK(c);
    balance_off_body(c);
    lcl_free(c);
}

/* group_node_add_members refuses bad member lists with a message. */
TEST(test_add_members_refusals)
{
    char base[64] = "/tmp/qfs-glearnbad-XXXXXX";
    CHECK(mkdtemp(base));
    group_raft_config_t cfg = { .id = 7, .listen = "127.0.0.1:0", .dir = base,
                                .log = test_log };
    group_node_t *nd = NULL;
    char *msg = NULL;
    int rc = group_node_open(&cfg, &nd, &msg);
    free(msg);
    msg = NULL;
    CHECK_EQ(rc, 0);
    kv_t kv = { 0 };
    pthread_mutex_init(&kv.mu, NULL);
    group_t *g = NULL;
    const uint64_t v[2] = { 1, 2 }, l_self[1] = { 7 }, l_dup[2] = { 7, 2 }, l_none[1] = { 3 };
    group_members_t not_member = { v, 2, l_none, 1 };
    group_members_t overlap = { v, 2, l_dup, 2 };
    group_members_t no_voters = { NULL, 0, l_self, 1 };
    group_members_t ok = { v, 2, l_self, 1 };
    int r1 = group_node_add_members(nd, 1, &not_member, &kv_ops, &kv, &g, &msg);
    bool m1 = msg && strstr(msg, "learners");
    free(msg);
    msg = NULL;
    int r2 = group_node_add_members(nd, 2, &overlap, &kv_ops, &kv, &g, &msg);
    bool m2 = msg != NULL;
    free(msg);
    msg = NULL;
    int r3 = group_node_add_members(nd, 3, &no_voters, &kv_ops, &kv, &g, &msg);
    free(msg);
    msg = NULL;
    int r4 = group_node_add_members(nd, 4, &ok, &kv_ops, &kv, &g, &msg);
    free(msg);
    group_stats_t st = { 0 };
    if (r4 == 0)
        group_get_stats(g, &st);
    group_node_close(nd);
    kv_clear(&kv);
    pthread_mutex_destroy(&kv.mu);
    nftw(base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    CHECK_EQ(r1, -QERR_INVAL);
    CHECK(m1);
    CHECK_EQ(r2, -QERR_INVAL);
    CHECK(m2);
    CHECK_EQ(r3, -QERR_INVAL);
    CHECK_EQ(r4, 0);
    CHECK_EQ(st.is_learner, 1);
    CHECK_EQ(st.preferred_leader, 1);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    RUN(test_fwd_codec);
    RUN(test_propose_on_every_node);
    RUN(test_concurrent_forwarding);
    RUN(test_leader_closed);
    RUN(test_leader_killed_in_flight);
    RUN(test_leader_stamps_commands);
    RUN(test_minority_times_out);
    RUN(test_restart_catches_up_by_snapshot);
    RUN(test_forwarding_frames_from_a_raw_peer);
    RUN(test_open_raft_one_call);
    RUN(test_lost_forward_and_answer_apply_once);
    RUN(test_duplicate_after_snapshot_restore);
    RUN(test_dedup_table_bounded);
    RUN(test_old_snapshot_format_loads);
    RUN(test_add_members_refusals);
    RUN(test_learners_propose_and_read);
    RUN(test_learners_are_no_quorum);
    RUN(test_preferred_leader_leads);
    RUN(test_balance_off_keeps_leader);
    RUN(test_set_preferred_moves_the_leader);
    return CHECK_DONE();
}
