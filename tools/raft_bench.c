/* tools/raft_bench.c — throughput of the Raft core alone: one 3-node group in one process,
 * each Ready's messages handed straight to the target raft_t, no disk or network, batched
 * proposals, a compaction every COMPACT_EVERY entries. Prints committed (and applied on all
 * three nodes) entries per CPU-second for 16, 256 and 4096-byte entries.
 * Usage: raft_bench [scale]   (scale multiplies the entry counts; default 1) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/err.h"
#include "cluster/raft.h"

#define N 3
#define COMPACT_EVERY 16384  /* entries applied between two compactions */

static raft_t *nodes[N + 1];
static uint64_t applied_bytes[N + 1];
static uint64_t applied_entries[N + 1];
static uint64_t msgs_sent;

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void deliver(const raft_msg_t *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (m[i].to < 1 || m[i].to > N)
            continue;
        msgs_sent++;
        raft_step(nodes[m[i].to], &m[i]);
    }
}

/* One Ready of node i. (b) persist: nothing (no disk). (a)+(c) send: each message goes
 * straight to its target, which copies what it keeps during raft_step, before this node's
 * Ready is advanced. (d) apply: touch every payload. Returns 1 if there was a Ready. */
static int pump_deliver(int i)
{
    raft_t *r = nodes[i];
    if (!raft_has_ready(r))
        return 0;
    raft_ready_t rd;
    raft_ready(r, &rd);
    deliver(rd.msgs, rd.n_msgs);
    deliver(rd.msgs_after_persist, rd.n_msgs_after_persist);
    for (size_t k = 0; k < rd.n_committed; k++) {
        const raft_entry_t *e = &rd.committed[k];
        if (e->type != RAFT_ENTRY_NORMAL)
            continue;
        applied_entries[i]++;
        uint64_t sum = 0;
        for (uint32_t b = 0; b < e->len; b += 64)
            sum += e->data[b];
        applied_bytes[i] += e->len + (sum & 1);
    }
    raft_advance(r, &rd);
    /* the application snapshots now and then, so the log does not hold everything (the
     * snapshot itself is not written: there is no disk here) */
    raft_status_t st;
    raft_status(r, &st);
    if (st.applied >= st.snap_index + COMPACT_EVERY)
        raft_compact(r, st.applied, NULL);
    return 1;
}

static int setup(void)
{
    for (int i = 1; i <= N; i++) {
        raft_config_t cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.id = (uint64_t)i;
        cfg.election_tick = 10;
        cfg.heartbeat_tick = 1;
        cfg.seed = (uint64_t)i;
        cfg.pre_vote = true;
        cfg.check_quorum = true;
        raft_boot_t boot;
        memset(&boot, 0, sizeof boot);
        boot.snap.conf.n = N;
        for (int j = 0; j < N; j++)
            boot.snap.conf.s[j] = (raft_server_t){ (uint64_t)(j + 1), RAFT_VOTER };
        int rc = raft_new(&cfg, &boot, &nodes[i]);
        if (rc < 0) {
            fprintf(stderr, "raft_new: %s\n", qerr_str(rc));
            return rc;
        }
        applied_bytes[i] = applied_entries[i] = 0;
    }
    /* elect node 1 */
    raft_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = RAFT_MSG_TIMEOUT_NOW;
    m.from = 2;
    m.to = 1;
    raft_step(nodes[1], &m);
    for (int round = 0; round < 100; round++) {
        int any = 0;
        for (int i = 1; i <= N; i++)
            any |= pump_deliver(i);
        if (!any)
            break;
    }
    raft_status_t st;
    raft_status(nodes[1], &st);
    return st.role == RAFT_LEADER ? 0 : -QERR_NOTLEADER;
}

static void teardown(void)
{
    for (int i = 1; i <= N; i++) {
        raft_free(nodes[i]);
        nodes[i] = NULL;
    }
}

/* Proposes total entries of size bytes in batches of batch; returns entries/CPU-second
 * measured until all three nodes have applied everything. */
static double run(size_t size, uint64_t total, size_t batch, double *secs_out)
{
    if (setup() < 0)
        return 0;
    uint8_t *payload = malloc(size * batch);
    for (size_t k = 0; k < size * batch; k++)
        payload[k] = (uint8_t)(k * 131);
    raft_iov_t *iov = malloc(batch * sizeof *iov);
    for (size_t k = 0; k < batch; k++)
        iov[k] = (raft_iov_t){ payload + k * size, size };
    msgs_sent = 0;
    uint64_t proposed = 0;
    int ticks = 0;
    double t0 = cpu_now();
    while (applied_entries[1] < total || applied_entries[2] < total ||
           applied_entries[3] < total) {
        /* keep the pipeline full: propose until backpressure says no */
        while (proposed < total) {
            size_t n = total - proposed < batch ? (size_t)(total - proposed) : batch;
            int rc = raft_propose_batch(nodes[1], iov, n, NULL);
            if (rc == -QERR_BUSY)
                break;
            if (rc < 0) {
                fprintf(stderr, "propose: %s\n", qerr_str(rc));
                goto out;
            }
            proposed += n;
        }
        int any = 0;
        for (int i = 1; i <= N; i++)
            any |= pump_deliver(i);
        if (!any) {
            /* quiet: a tick sends heartbeats that carry the commit index to followers */
            for (int i = 1; i <= N; i++)
                raft_tick(nodes[i]);
            if (++ticks > 1000000)
                break;
        }
    }
out:;
    double secs = cpu_now() - t0;
    *secs_out = secs;
    free(iov);
    free(payload);
    teardown();
    return secs > 0 ? (double)total / secs : 0;
}

int main(int argc, char **argv)
{
    double scale = argc > 1 ? atof(argv[1]) : 1.0;
    if (scale <= 0)
        scale = 1.0;
    struct {
        size_t size;
        uint64_t total;
    } cases[] = { { 16, 4000000 }, { 256, 1000000 }, { 4096, 150000 } };
    const size_t batch = 1024;
    printf("raft_bench: 3-node group in one process, no disk/network, batches of %zu, "
           "compaction every %d entries\n", batch, COMPACT_EVERY);
    printf("%-10s %12s %10s %16s %12s\n", "entry", "entries", "cpu s", "entries/cpu-s",
           "MB/cpu-s");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint64_t total = (uint64_t)((double)cases[c].total * scale);
        if (total < batch)
            total = batch;
        double secs = 0;
        double rate = run(cases[c].size, total, batch, &secs);
        if (applied_entries[1] < total) {
            fprintf(stderr, "only %llu of %llu entries applied\n",
                    (unsigned long long)applied_entries[1], (unsigned long long)total);
            return 1;
        }
        printf("%-10zu %12llu %10.3f %16.0f %12.1f\n", cases[c].size,
               (unsigned long long)total, secs, rate, rate * (double)cases[c].size / 1e6);
        fflush(stdout);
    }
    return 0;
}
