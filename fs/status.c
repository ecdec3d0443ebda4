/* fs/status.c — `.cluster/` content: on the embedded single node one member, one shard
 * (the whole key space); on a cluster node every peer with its address and connection, and
 * the shard's leader, replicas, term, commit and applied index from the Raft group (no
 * leader / no quorum in health). Health also comes from the group's failure state and the node's view of the
 * data disk (node_space: full, almost full, deletes running on the reserve), metrics in
 * Prometheus text format (fs operations, group commit and WAL fsync, state sizes, disk). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "fs/cache_sm.h"
#include "fs/config_sm.h"
#include "fs/metrics.h"
#include "fs/status.h"

#define HEALTH_ALMOST_FULL (4ull << 20)   /* "almost full" below this left for writes... */
#define HEALTH_ALMOST_FULL_DIV 16          /* ...or a sixteenth of the disk, if smaller */

static uint64_t almost_full(uint64_t disk)
{
    uint64_t d = disk / HEALTH_ALMOST_FULL_DIV;
    return d < HEALTH_ALMOST_FULL ? d : HEALTH_ALMOST_FULL;
}

/* n bytes as "12345 bytes" or "3.2 MiB". */
static void human(char *buf, size_t size, uint64_t n)
{
    static const char *const unit[] = { "KiB", "MiB", "GiB", "TiB" };
    if (n < 10240) {
        snprintf(buf, size, "%llu bytes", (unsigned long long)n);
        return;
    }
    double v = (double)n / 1024;
    int u = 0;
    while (v >= 1024 && u < 3) {
        v /= 1024;
        u++;
    }
    snprintf(buf, size, "%.1f %s", v, unit[u]);
}

const char *const status_names[STATUS__COUNT] = { "members", "shards", "health", "metrics" };

/* Per peer of a cluster node: the transport's counters (docs/TRANSPORT.md "Metrics"). */
static void render_peer_metrics(node_t *n, char **b, size_t *len, size_t *cap)
{
    static const struct {
        const char *name, *type, *help;
    } m[] = {
        { "quorumfs_peer_up", "gauge", "1 while a connection to the peer is up." },
        { "quorumfs_peer_tls", "gauge", "1 while that connection is TLS." },
        { "quorumfs_peer_rtt_seconds", "gauge", "last PING round trip (-1 unknown)." },
        { "quorumfs_peer_bytes_sent_total", "counter", "bytes written to the peer." },
        { "quorumfs_peer_bytes_received_total", "counter", "bytes read from the peer." },
        { "quorumfs_peer_messages_sent_total", "counter", "Raft messages sent." },
        { "quorumfs_peer_messages_received_total", "counter", "Raft messages received." },
        { "quorumfs_peer_dropped_total", "counter", "Raft messages dropped (peer down, queue full)." },
        { "quorumfs_peer_reconnects_total", "counter", "connections made after the first." },
        { "quorumfs_peer_dial_failures_total", "counter", "dials that failed." },
        { "quorumfs_peer_errors_total", "counter", "connections closed for a bad frame." },
        { "quorumfs_peer_queued_bytes", "gauge", "bytes waiting to be sent." },
    };
    size_t np = node_nmembers(n);
    for (size_t f = 0; np && f < sizeof(m) / sizeof(m[0]); f++) {
        metrics_printf(b, len, cap, "# HELP %s %s\n# TYPE %s %s\n", m[f].name, m[f].help,
                       m[f].name, m[f].type);
        for (size_t i = 0; i < np; i++) {
            node_member_t mb;
            if (node_member(n, i, &mb) < 0 || mb.self)
                continue;
            const group_peer_stats_t *st = &mb.stats;
            const uint64_t v[] = { (uint64_t)st->connected, (uint64_t)st->tls, 0, st->bytes_out,
                                   st->bytes_in, st->msgs_out, st->msgs_in, st->dropped,
                                   st->reconnects, st->dial_failures, st->errors,
                                   st->queued_bytes };
            if (f == 2)
                metrics_printf(b, len, cap, "%s{peer=\"%llu\"} %.6f\n", m[f].name,
                               (unsigned long long)mb.id,
                               st->rtt_us < 0 ? -1.0 : (double)st->rtt_us / 1e6);
            else
                metrics_printf(b, len, cap, "%s{peer=\"%llu\"} %llu\n", m[f].name,
                               (unsigned long long)mb.id, (unsigned long long)v[f]);
        }
    }
}

static void render_metrics(node_t *n, char **b, size_t *len, size_t *cap)
{
    group_stats_t gs;
    group_get_stats(node_group(n, 0), &gs);   /* WAL figures: node-wide on a cluster node */
    const metrics_t *mt = node_metrics(n);
    metrics_printf(b, len, cap, "# HELP quorumfs_ops_total FUSE operations served.\n"
                                "# TYPE quorumfs_ops_total counter\n");
    for (int i = 0; i < MOP__COUNT; i++)
        metrics_printf(b, len, cap, "quorumfs_ops_total{op=\"%s\"} %llu\n", metric_op_names[i],
                       (unsigned long long)mt->ops[i]);
    metrics_printf(b, len, cap, "# HELP quorumfs_op_errors_total FUSE operations that failed.\n"
                                "# TYPE quorumfs_op_errors_total counter\n");
    for (int i = 0; i < MOP__COUNT; i++)
        metrics_printf(b, len, cap, "quorumfs_op_errors_total{op=\"%s\"} %llu\n",
                       metric_op_names[i], (unsigned long long)mt->errors[i]);
    metrics_printf(b, len, cap, "# HELP quorumfs_op_seconds FUSE operation latency.\n"
                                "# TYPE quorumfs_op_seconds histogram\n");
    for (int i = 0; i < MOP__COUNT; i++) {
        char label[64];
        snprintf(label, sizeof(label), "op=\"%s\"", metric_op_names[i]);
        metrics_hist_text(b, len, cap, "quorumfs_op_seconds", label, &mt->latency[i]);
    }
    metrics_printf(b, len, cap,
        "# HELP quorumfs_wal_fsyncs_total fsync calls on the write-ahead log.\n"
        "# TYPE quorumfs_wal_fsyncs_total counter\nquorumfs_wal_fsyncs_total %llu\n"
        "# HELP quorumfs_wal_appends_total records appended to the write-ahead log.\n"
        "# TYPE quorumfs_wal_appends_total counter\nquorumfs_wal_appends_total %llu\n"
        "# HELP quorumfs_wal_bytes bytes in live WAL segments.\n"
        "# TYPE quorumfs_wal_bytes gauge\nquorumfs_wal_bytes %llu\n"
        "# HELP quorumfs_snapshots_total snapshots taken since start (shard 0).\n"
        "# TYPE quorumfs_snapshots_total counter\nquorumfs_snapshots_total %llu\n"
        "# HELP quorumfs_lease_reads_total read barriers answered from a shard leader's "
        "lease without the node loop.\n"
        "# TYPE quorumfs_lease_reads_total counter\nquorumfs_lease_reads_total %llu\n",
        (unsigned long long)gs.wal_fsyncs, (unsigned long long)gs.wal_appends,
        (unsigned long long)gs.wal_bytes, (unsigned long long)gs.snapshots,
        (unsigned long long)gs.lease_reads);
    static const char *const per_shard[5][3] = {
        { "quorumfs_raft_term", "gauge", "current term of the shard." },
        { "quorumfs_raft_commit_index", "gauge", "commit index of the shard." },
        { "quorumfs_raft_applied_index", "gauge", "applied index of the shard." },
        { "quorumfs_raft_snapshot_index", "gauge", "index the shard's newest snapshot covers." },
        { "quorumfs_raft_snapshot_installs_total", "counter",
          "snapshots received from a leader and installed since start." },
    };
    for (int f = 0; f < 5; f++) {
        metrics_printf(b, len, cap, "# HELP %s %s\n# TYPE %s %s\n", per_shard[f][0],
                       per_shard[f][2], per_shard[f][0], per_shard[f][1]);
        for (uint32_t k = 0; k < node_nshards(n); k++) {
            group_stats_t ks;
            group_get_stats(node_group(n, k), &ks);
            uint64_t v = f == 0 ? ks.term : f == 1 ? ks.commit_index
                       : f == 2 ? ks.applied_index : f == 3 ? ks.snapshot_index : ks.installs;
            metrics_printf(b, len, cap, "%s{shard=\"%u\"} %llu\n", per_shard[f][0], k,
                           (unsigned long long)v);
        }
    }
    /* snapshots this node sends as a shard's leader, per shard and member (docs/MEMBERSHIP.md:
     * a joining or far-behind member catches up by chunked snapshot) */
    metrics_printf(b, len, cap,
                   "# HELP quorumfs_raft_snapshot_send_bytes bytes of a snapshot sent so far to a "
                   "member catching up (this node leads the shard).\n"
                   "# TYPE quorumfs_raft_snapshot_send_bytes gauge\n"
                   "# HELP quorumfs_raft_snapshot_send_size_bytes size of that snapshot.\n"
                   "# TYPE quorumfs_raft_snapshot_send_size_bytes gauge\n");
    for (uint32_t k = 0; k < node_nshards(n); k++) {
        group_stats_t ks;
        group_get_stats(node_group(n, k), &ks);
        for (uint32_t i = 0; i < ks.n_snap_sends && i < GROUP_SNAP_SENDS_MAX; i++)
            metrics_printf(b, len, cap,
                           "quorumfs_raft_snapshot_send_bytes{shard=\"%u\",to=\"%llu\"} %llu\n"
                           "quorumfs_raft_snapshot_send_size_bytes{shard=\"%u\",to=\"%llu\"} "
                           "%llu\n", k, (unsigned long long)ks.snap_sends[i].to,
                           (unsigned long long)ks.snap_sends[i].sent, k,
                           (unsigned long long)ks.snap_sends[i].to,
                           (unsigned long long)ks.snap_sends[i].total);
    }
    metrics_printf(b, len, cap, "# HELP quorumfs_wal_fsync_seconds WAL fsync latency.\n"
                                "# TYPE quorumfs_wal_fsync_seconds histogram\n");
    metrics_hist_text(b, len, cap, "quorumfs_wal_fsync_seconds", "", &gs.fsync_latency);
    metrics_printf(b, len, cap, "# HELP quorumfs_commit_seconds propose-to-applied latency.\n"
                                "# TYPE quorumfs_commit_seconds histogram\n");
    metrics_hist_text(b, len, cap, "quorumfs_commit_seconds", "", &gs.commit_latency);
    cache_stats_t cs = { 0 };
    uint64_t rev = 0, nobjs = 0;   /* sums over the shards (rev: the newest) */
    for (uint32_t k = 0; k < node_nshards(n); k++) {
        state_t *st = node_state(n, k);
        cache_stats_t ks;
        pthread_rwlock_rdlock(&st->lock);
        cache_sm_stats(st, &ks);
        uint64_t r = config_sm_rev(st);
        nobjs += st->tree.nobjs;
        pthread_rwlock_unlock(&st->lock);
        cs.bytes += ks.bytes;
        cs.cap += ks.cap;
        cs.keys += ks.keys;
        cs.evictions += ks.evictions;
        cs.expirations += ks.expirations;
        rev = r > rev ? r : rev;
    }
    metrics_printf(b, len, cap,
        "# HELP quorumfs_cache_bytes bytes of cache values held (the LRU cap counts these).\n"
        "# TYPE quorumfs_cache_bytes gauge\nquorumfs_cache_bytes %llu\n"
        "# HELP quorumfs_cache_max_bytes LRU cap on cache value bytes.\n"
        "# TYPE quorumfs_cache_max_bytes gauge\nquorumfs_cache_max_bytes %llu\n"
        "# HELP quorumfs_cache_keys cache keys held.\n"
        "# TYPE quorumfs_cache_keys gauge\nquorumfs_cache_keys %llu\n"
        "# HELP quorumfs_cache_evictions_total keys evicted by the LRU cap.\n"
        "# TYPE quorumfs_cache_evictions_total counter\nquorumfs_cache_evictions_total %llu\n"
        "# HELP quorumfs_cache_expirations_total keys removed by TTL expiry.\n"
        "# TYPE quorumfs_cache_expirations_total counter\nquorumfs_cache_expirations_total %llu\n"
        "# HELP quorumfs_config_revision newest config revision.\n"
        "# TYPE quorumfs_config_revision gauge\nquorumfs_config_revision %llu\n"
        "# HELP quorumfs_objects objects (files and directories) in the state machine.\n"
        "# TYPE quorumfs_objects gauge\nquorumfs_objects %u\n",
        (unsigned long long)cs.bytes, (unsigned long long)cs.cap,
        (unsigned long long)cs.keys, (unsigned long long)cs.evictions,
        (unsigned long long)cs.expirations, (unsigned long long)rev, (unsigned)nobjs);
    node_space_t sp;
    node_space(n, &sp);
    metrics_printf(b, len, cap,
        "# HELP quorumfs_disk_free_bytes free bytes on the data disk.\n"
        "# TYPE quorumfs_disk_free_bytes gauge\nquorumfs_disk_free_bytes %llu\n"
        "# HELP quorumfs_data_bytes bytes of the node's WAL and snapshots.\n"
        "# TYPE quorumfs_data_bytes gauge\nquorumfs_data_bytes %llu\n"
        "# HELP quorumfs_write_avail_bytes bytes writes may still add before ENOSPC.\n"
        "# TYPE quorumfs_write_avail_bytes gauge\nquorumfs_write_avail_bytes %llu\n"
        "# HELP quorumfs_reserve_in_place 1 while the disk-full reserve file is in place.\n"
        "# TYPE quorumfs_reserve_in_place gauge\nquorumfs_reserve_in_place %d\n",
        (unsigned long long)sp.free_bytes, (unsigned long long)sp.data_bytes,
        (unsigned long long)sp.avail_bytes, sp.reserve_in_place);
    render_peer_metrics(n, b, len, cap);
}

int status_render(node_t *n, int which, char **buf, size_t *len)
{
    char *b = NULL;
    size_t l = 0, cap = 0;
    group_stats_t gs;
    switch (which) {
    case STATUS_MEMBERS:
        /* id address state: on a cluster node the state is "self", "connected" (the
         * transport holds a connection to it) or "unreachable", then "leader" if it leads
         * the shard as this node knows */
        if (!node_nmembers(n)) {
            metrics_printf(&b, &l, &cap, "1 embedded alive\n");
            break;
        }
        /* then "leader" when it leads shard 0, and "leads K" when it leads K shards */
        group_get_stats(node_group(n, 0), &gs);
        for (size_t i = 0; i < node_nmembers(n); i++) {
            node_member_t mb;
            if (node_member(n, i, &mb) < 0)
                break;
            unsigned leads = 0;
            for (uint32_t k = 0; k < node_nshards(n); k++) {
                group_stats_t ks;
                group_get_stats(node_group(n, k), &ks);
                leads += ks.leader == mb.id;
            }
            metrics_printf(&b, &l, &cap, "%llu %s %s%s%s%s", (unsigned long long)mb.id, mb.addr,
                           mb.self ? "self" : mb.connected ? "connected" : "unreachable",
                           mb.state == 1 ? " joining" : mb.state == 3 ? " leaving" : "",
                           node_member_drained(n, mb.id) ? " drained" : "",
                           gs.leader == mb.id ? " leader" : "");
            metrics_printf(&b, &l, &cap, leads ? " leads %u\n" : "\n", leads);
        }
        break;
    case STATUS_SHARDS:
        /* per shard: id leader replicas term commit_index applied_index preferred_leader
         * role (leader 0: none known; replicas: its voters; role: this node's, voter or
         * learner; the embedded node: "0 1 1 ... 1 voter") */
        for (uint32_t k = 0; k < node_nshards(n); k++) {
            group_get_stats(node_group(n, k), &gs);
            uint64_t pref = node_nmembers(n) ? node_preferred_leader(n, k) : 1;
            metrics_printf(&b, &l, &cap, "%u %llu %u %llu %llu %llu %llu %s\n", k,
                           (unsigned long long)(node_nmembers(n) ? gs.leader : 1),
                           node_nreplicas(n), (unsigned long long)gs.term,
                           (unsigned long long)gs.commit_index,
                           (unsigned long long)gs.applied_index, (unsigned long long)pref,
                           gs.is_learner ? "learner" : "voter");
        }
        break;
    case STATUS_HEALTH: {
        /* One line per reason; "ok" alone when there is none. */
        int failed = 0;
        for (uint32_t k = 0; k < node_nshards(n); k++) {
            group_get_stats(node_group(n, k), &gs);
            failed |= gs.failed;
            if (node_nmembers(n) && !gs.leader)
                metrics_printf(&b, &l, &cap, "shard %u: no leader: reads and writes fail with "
                               "EIO until one is elected\n", k);
            if (node_nmembers(n) && gs.applied_index + 1000 < gs.commit_index)
                metrics_printf(&b, &l, &cap, "shard %u: catching up: applied %llu of %llu\n",
                               k, (unsigned long long)gs.applied_index,
                               (unsigned long long)gs.commit_index);
            for (uint32_t i = 0; i < gs.n_snap_sends && i < GROUP_SNAP_SENDS_MAX; i++)
                metrics_printf(&b, &l, &cap, "shard %u: sending snapshot %llu to node %llu: "
                               "%llu of %llu bytes\n", k,
                               (unsigned long long)gs.snap_sends[i].index,
                               (unsigned long long)gs.snap_sends[i].to,
                               (unsigned long long)gs.snap_sends[i].sent,
                               (unsigned long long)gs.snap_sends[i].total);
        }
        if (node_nmembers(n)) {
            size_t up = 0, all = node_nmembers(n);
            for (size_t i = 0; i < all; i++) {
                node_member_t mb;
                if (node_member(n, i, &mb) == 0 && mb.connected)
                    up++;
            }
            for (size_t i = 0; i < all; i++) {
                node_member_t mb;
                if (node_member(n, i, &mb) == 0 && !mb.connected && mb.stats.refused_now)
                    metrics_printf(&b, &l, &cap, "member %llu refused: it came back with a new "
                                   "data directory (its Raft state is lost); replace it: quorumfs "
                                   "cluster add a node with an empty data directory, and "
                                   "quorumfs cluster remove %llu\n", (unsigned long long)mb.id,
                                   (unsigned long long)mb.id);
            }
            if (up < all / 2 + 1)
                metrics_printf(&b, &l, &cap, "no quorum: this node reaches %zu of %zu members "
                               "(%zu needed)\n", up, all, all / 2 + 1);
            else if (up < all)
                metrics_printf(&b, &l, &cap, "degraded: this node reaches %zu of %zu members\n",
                               up, all);
        }
        node_space_t sp;
        node_space(n, &sp);
        char fr[32], hd[32], da[32], rs[32], av[32];
        human(fr, sizeof(fr), sp.free_bytes);
        human(hd, sizeof(hd), sp.held_bytes);
        human(da, sizeof(da), sp.data_bytes);
        human(rs, sizeof(rs), sp.reserve_bytes);
        human(av, sizeof(av), sp.avail_bytes);
        if (failed)
            metrics_printf(&b, &l, &cap,
                           "write-ahead log failed after a disk error; writes refused\n");
        if (sp.known && sp.full)
            metrics_printf(&b, &l, &cap, "data disk full: writes get ENOSPC (%s left for "
                           "writes): %s free on %s, %s of it held back for the next snapshot "
                           "(the node's files take %s)%s; delete from the mount or enlarge the "
                           "disk (docs/OPERATIONS.md)\n", av, fr, node_data_dir(n), hd, da,
                           sp.reserve_in_place ? "" : ", and the reserve is given up");
        else if (sp.known && sp.avail_bytes < almost_full(sp.disk_bytes))
            metrics_printf(&b, &l, &cap, "data disk almost full: %s left for writes on %s\n",
                           av, node_data_dir(n));
        if (sp.known && !sp.reserve_in_place) {
            char when[32] = "at start";
            if (sp.reserve_gone_ms) {
                time_t t = (time_t)(sp.reserve_gone_ms / 1000);
                struct tm tm;
                localtime_r(&t, &tm);
                strftime(when, sizeof(when), "at %Y-%m-%d %H:%M:%S", &tm);
            }
            metrics_printf(&b, &l, &cap, "deletes running on the reserve: the %s reserve was "
                           "given up %s so that deletes can be logged (%llu since); it comes "
                           "back when space is freed\n", rs, when,
                           (unsigned long long)sp.frees_on_reserve);
        }
        if (!l)
            metrics_printf(&b, &l, &cap, "ok\n");
        break;
    }
    case STATUS_METRICS:
        render_metrics(n, &b, &l, &cap);
        break;
    default:
        return -EINVAL;
    }
    if (!b)
        return -ENOMEM;
    *buf = b;
    *len = l;
    return 0;
}

int status_render_summary(node_t *n, char **buf, size_t *len)
{
    static const char *const head[] = {
        [STATUS_MEMBERS] = "members (id address state [joining|leaving] [drained] [leader of shard 0] "
                           "[leads N]):",
        [STATUS_SHARDS] = "shards (shard leader replicas term commit applied preferred role):",
        [STATUS_HEALTH] = "health:",
    };
    char *b = NULL;
    size_t l = 0, cap = 0;
    metrics_printf(&b, &l, &cap, "node %llu, %u shards\n",
                   (unsigned long long)node_cluster_id(n), node_nshards(n));
    for (int w = STATUS_MEMBERS; w <= STATUS_HEALTH; w++) {
        char *part;
        size_t pl;
        if (status_render(n, w, &part, &pl) < 0) {
            free(b);
            return -ENOMEM;
        }
        metrics_printf(&b, &l, &cap, "%s\n%.*s", head[w], (int)pl, part);
        free(part);
    }
    if (!b)
        return -ENOMEM;
    *buf = b;
    *len = l;
    return 0;
}
