/* cluster/group_raft.c — the Raft-backed group of cluster/group.h. A group_node_t is one node
 * loop (cluster/mraft.h) on the TCP transport (cluster/mraft_tcp.h) hosting one or more
 * groups; each hosted group is a group_t whose calls go to the loop: group_propose is
 * mraft_propose_any (the leader proposes; a follower forwards to the leader and waits to
 * apply the entry itself), group_read_barrier is mraft_read_barrier (ReadIndex). Everything
 * that waits is bounded by the node's timeout. Design: docs/CLUSTER.md "The Raft group". */
#include "cluster/group.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/assert.h"
#include "cluster/err.h"
#include "cluster/mraft.h"
#include "cluster/mraft_tcp.h"

#define DEFAULT_TIMEOUT_MS 5000

/* One hosted group. impl must stay first (cluster/group.h). */
typedef struct group_raft {
    const group_impl_t *impl;
    group_node_t *node;
    uint32_t id;
    bool owns_node;          /* made by group_open_raft: group_close closes the node */
    hist_t commit_latency;
} group_raft_t;

struct group_node {
    uint64_t id;
    uint32_t timeout_ms;
    mraft_tcp_t *tcp;
    mraft_node_t *n;
    group_raft_t **groups;
    size_t n_groups;
    bool started;
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- group_t calls ------------------------------------------------------------------ */

static int raft_g_propose(group_t *gt, const void *cmd, size_t len, sm_result_t *res)
{
    group_raft_t *g = (group_raft_t *)(void *)gt;
    uint64_t t0 = now_ns();
    int rc = mraft_propose_any(g->node->n, g->id, cmd, len, res, g->node->timeout_ms, NULL);
    if (rc == 0)
        hist_add(&g->commit_latency, now_ns() - t0);
    return rc;
}

static int raft_g_read_barrier(group_t *gt, uint32_t timeout_ms)
{
    group_raft_t *g = (group_raft_t *)(void *)gt;
    return mraft_read_barrier(g->node->n, g->id, timeout_ms ? timeout_ms : g->node->timeout_ms,
                              NULL);
}

static int raft_g_is_leader(group_t *gt)
{
    group_raft_t *g = (group_raft_t *)(void *)gt;
    mraft_group_status_t st;
    return mraft_status(g->node->n, g->id, &st) == 0 && st.role == RAFT_LEADER;
}

static void raft_g_get_stats(group_t *gt, group_stats_t *out)
{
    group_raft_t *g = (group_raft_t *)(void *)gt;
    mraft_group_status_t st;
    mraft_stats_t ns;
    memset(out, 0, sizeof(*out));
    if (mraft_status(g->node->n, g->id, &st) == 0) {
        out->term = st.term;
        out->leader = st.leader;
        out->is_leader = st.role == RAFT_LEADER;
        out->commit_index = st.commit;
        out->applied_index = st.applied;
        out->snapshot_index = st.snap_index;
        out->snapshots = st.snapshots;
        out->installs = st.installs;
    }
    out->node_id = g->node->id;
    mraft_get_stats(g->node->n, &ns);
    out->wal_bytes = ns.store.wal.bytes;
    out->wal_appends = ns.store.wal.appends;
    out->wal_fsyncs = ns.store.wal.syncs;
    out->failed = ns.failed != 0;
    for (int i = 0; i < HIST_BUCKETS; i++)
        out->commit_latency.bucket[i] =
            __atomic_load_n(&g->commit_latency.bucket[i], __ATOMIC_RELAXED);
    out->commit_latency.count = __atomic_load_n(&g->commit_latency.count, __ATOMIC_RELAXED);
    out->commit_latency.sum_ns = __atomic_load_n(&g->commit_latency.sum_ns, __ATOMIC_RELAXED);
}

static void raft_g_close(group_t *gt)
{
    group_raft_t *g = (group_raft_t *)(void *)gt;
    if (g->owns_node)
        group_node_close(g->node);
}

static const group_impl_t raft_impl = {
    .propose = raft_g_propose,
    .read_barrier = raft_g_read_barrier,
    .is_leader = raft_g_is_leader,
    .get_stats = raft_g_get_stats,
    .close = raft_g_close,
};

/* ---- the node --------------------------------------------------------------------------- */

static void tcp_log(void *ctx, int level, const char *line)
{
    group_node_t *nd = ctx;
    (void)level;
    if (nd->log)
        nd->log(nd->log_ctx, line);
    else
        fprintf(stderr, "quorumfs: transport: %s\n", line);
}

int group_node_open(const group_raft_config_t *cfg, group_node_t **out, char **errmsg)
{
    *out = NULL;
    if (errmsg)
        *errmsg = NULL;
    if (!cfg->id || !cfg->dir || !cfg->listen || (cfg->n_peers && !cfg->peers)) {
        qerr_set_msg(errmsg, "group: a Raft node needs an id, a data directory and a listen "
                     "address");
        return -QERR_INVAL;
    }
    for (size_t i = 0; i < cfg->n_peers; i++) {
        if (!cfg->peers[i].id || !cfg->peers[i].addr) {
            qerr_set_msg(errmsg, "group: peer %zu has no id or no address", i + 1);
            return -QERR_INVAL;
        }
        for (size_t j = 0; j < i; j++)
            if (cfg->peers[j].id == cfg->peers[i].id) {
                qerr_set_msg(errmsg, "group: peer id %" PRIu64 " listed twice",
                             cfg->peers[i].id);
                return -QERR_INVAL;
            }
    }
    group_node_t *nd = xcalloc(1, sizeof(*nd));
    nd->id = cfg->id;
    nd->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : DEFAULT_TIMEOUT_MS;
    nd->log = cfg->log;
    nd->log_ctx = cfg->log_ctx;
    transport_config_t tc = { .id = cfg->id, .cluster_id = cfg->cluster_id,
                              .listen = cfg->listen, .log = tcp_log, .log_ctx = nd };
    int rc = mraft_tcp_new(&tc, &nd->tcp, errmsg);
    if (rc)
        goto fail;
    for (size_t i = 0; i < cfg->n_peers; i++) {
        if (cfg->peers[i].id == cfg->id)
            continue;
        rc = transport_add_peer(mraft_tcp_transport(nd->tcp), cfg->peers[i].id,
                                cfg->peers[i].addr);
        if (rc) {
            qerr_set_msg(errmsg, "group: peer %" PRIu64 " at \"%s\": %s", cfg->peers[i].id,
                         cfg->peers[i].addr, qerr_str(rc));
            goto fail;
        }
    }
    mraft_config_t mc = {
        .id = cfg->id, .dir = cfg->dir, .tick_ms = cfg->tick_ms,
        .election_tick = cfg->election_tick, .heartbeat_tick = cfg->heartbeat_tick,
        .snapshot_bytes = cfg->snapshot_bytes, .snap_chunk_bytes = cfg->snap_chunk_bytes,
        .segment_bytes = cfg->segment_bytes, .timeout_ms = nd->timeout_ms,
        .max_cmd = cfg->max_cmd, .seed = cfg->seed };
    mraft_transport_t tr;
    mraft_tcp_ops(nd->tcp, &tr);
    if ((rc = mraft_open(&mc, &tr, &nd->n, errmsg)))
        goto fail;
    mraft_tcp_attach(nd->tcp, nd->n);
    *out = nd;
    return 0;
fail:
    mraft_tcp_free(nd->tcp);
    free(nd);
    return rc;
}

int group_node_add(group_node_t *nd, uint32_t group, const uint64_t *voters, size_t n_voters,
                   const sm_ops_t *ops, void *ctx, group_t **out, char **errmsg)
{
    *out = NULL;
    if (errmsg)
        *errmsg = NULL;
    ASSERT(!nd->started);
    bool member = false;
    for (size_t i = 0; i < n_voters; i++)
        member |= voters[i] == nd->id;
    if (!member) {
        qerr_set_msg(errmsg, "group %u: node %" PRIu64 " is not one of its voters", group,
                     nd->id);
        return -QERR_INVAL;
    }
    int rc = mraft_add_group(nd->n, group, voters, n_voters, ops, ctx, errmsg);
    if (rc)
        return rc;
    group_raft_t *g = xcalloc(1, sizeof(*g));
    g->impl = &raft_impl;
    g->node = nd;
    g->id = group;
    nd->groups = xrealloc(nd->groups, (nd->n_groups + 1) * sizeof(*nd->groups));
    nd->groups[nd->n_groups++] = g;
    *out = (group_t *)(void *)g;
    return 0;
}

int group_node_start(group_node_t *nd, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    ASSERT(!nd->started);
    int rc = mraft_start(nd->n);
    if (rc) {
        qerr_set_msg(errmsg, "group: cannot start node %" PRIu64 ": %s", nd->id, qerr_str(rc));
        return rc;
    }
    nd->started = true;
    return 0;
}

uint16_t group_node_port(const group_node_t *nd)
{
    return transport_port(mraft_tcp_transport(nd->tcp));
}

void group_node_close(group_node_t *nd)
{
    if (!nd)
        return;
    mraft_close(nd->n);          /* the loop stops; then the transport is ours to free */
    mraft_tcp_free(nd->tcp);
    for (size_t i = 0; i < nd->n_groups; i++)
        free(nd->groups[i]);
    free(nd->groups);
    free(nd);
}

int group_open_raft(const group_raft_config_t *cfg, uint32_t group, const sm_ops_t *ops,
                    void *ctx, group_t **out, char **errmsg)
{
    *out = NULL;
    group_node_t *nd = NULL;
    int rc = group_node_open(cfg, &nd, errmsg);
    if (rc)
        return rc;
    uint64_t *voters = xcalloc(cfg->n_peers + 1, sizeof(*voters));
    size_t nv = 0;
    voters[nv++] = cfg->id;
    for (size_t i = 0; i < cfg->n_peers; i++)
        if (cfg->peers[i].id != cfg->id)
            voters[nv++] = cfg->peers[i].id;
    group_t *g = NULL;
    rc = group_node_add(nd, group, voters, nv, ops, ctx, &g, errmsg);
    free(voters);
    if (rc == 0)
        rc = group_node_start(nd, errmsg);
    if (rc) {
        group_node_close(nd);
        return rc;
    }
    ((group_raft_t *)(void *)g)->owns_node = true;
    *out = g;
    return 0;
}
