/* tests/sim/main.c — the simulator's command line (run through tools/sim): runs seeds
 * from..from+N-1, prints each failure with the one command that replays it, and ends with
 * "N seeds, N failures". Exit status 0 only if every seed passed. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/sim/sim.h"
#include "tests/sim/smi.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: tools/sim [--sm kv|fs] [--seeds N] [--from S] [--nodes 3|5] [--groups G]\n"
            "                 [--trace] [--stop]\n"
            "                 [--stats] [--lin-only] [--stop-on TEXT] [--fs-resend] [--fs-bug N]\n"
            "                 [--breach NAME]\n"
            "  --sm M      the replicated state machine: kv (default; client histories are\n"
            "              checked for linearizability) or fs (the mount's state machine;\n"
            "              replicas' snapshots must be byte-identical at equal indexes)\n"
            "  --seeds N   number of seeds to run (default 1)\n"
            "  --from S    first seed (default 1)\n"
            "  --nodes K   founding voters; default: 3 for odd seeds, 5 for even ones\n"
            "  --groups G  Raft groups (shards) on every node, 1..8 (default 1); their node's\n"
            "              process, clock, write-ahead log (one fsync per write, torn\n"
            "              together) and links are shared, as on the real node; each group\n"
            "              runs its own state machine and is checked on its own\n"
            "  --trace     print every event of each run (use with --seeds 1 to replay)\n"
            "  --stop      stop at the first failing seed\n"
            "  --stop-on T stop at the first seed failing with a reason containing T\n"
            "  --stats     print one line of figures per seed\n"
            "  --lin-only  broken Raft invariants are traced but not fatal, so only the\n"
            "              linearizability and liveness checks can fail a run\n"
            "  --fs-resend fs clients send again a command whose outcome is unknown, as kv\n"
            "              clients do, in every seed (by default in half of them)\n"
            "  --fs-bug N  plant divergence N in some fs replicas, to see the checks catch it:\n"
            "              1 apply at a local clock, 2 skip a command, 3 a lossy restore\n"
            "  --breach B  an opt-in fault the core is not meant to survive, to see the checks\n"
            "              catch it (repeatable): merge-ticks (the caller merges owed ticks),\n"
            "              lying-fsync (a persist that is not durable),\n"
            "              hs-first (the hard state lands before the log), wipe-readd (a\n"
            "              removed id re-added with a wiped disk), restart-settings (nodes\n"
            "              restart with other pre-vote/check-quorum/lease settings)\n");
}

/* An assertion in the code under test (cluster/assert.h) aborts the process: say which seed
 * was running and how to replay it before dying. */
static char abort_note[600];

static void on_abort(int sig)
{
    fflush(stdout);
    ssize_t w = write(STDOUT_FILENO, abort_note, strlen(abort_note));
    (void)w;
    signal(sig, SIG_DFL);
    raise(sig);
}

static const struct {
    const char *name;
    unsigned bit;
} breaches[] = {
    { "merge-ticks", SIM_BREACH_MERGE_TICKS },
    { "lying-fsync", SIM_BREACH_LYING_FSYNC },
    { "hs-first", SIM_BREACH_HS_FIRST },
    { "wipe-readd", SIM_BREACH_WIPE_READD },
    { "restart-settings", SIM_BREACH_RESTART_SETTINGS },
};

static int parse_u64(const char *s, uint64_t *v)
{
    char *end;
    if (!s || !*s)
        return -1;
    *v = strtoull(s, &end, 10);
    return *end ? -1 : 0;
}

int main(int argc, char **argv)
{
    uint64_t seeds = 1, from = 1, nodes = 0, groups = 1;
    int trace = 0, stop = 0, stats = 0, lin_only = 0, sm = SIM_KV, fs_resend = 0;
    uint64_t fs_bug = 0;
    unsigned breach = 0;
    char breach_flags[160] = "";
    const char *stop_on = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--seeds") && i + 1 < argc) {
            if (parse_u64(argv[++i], &seeds) < 0)
                goto bad;
        } else if (!strcmp(a, "--from") && i + 1 < argc) {
            if (parse_u64(argv[++i], &from) < 0)
                goto bad;
        } else if (!strcmp(a, "--nodes") && i + 1 < argc) {
            if (parse_u64(argv[++i], &nodes) < 0 || (nodes != 3 && nodes != 5))
                goto bad;
        } else if (!strcmp(a, "--groups") && i + 1 < argc) {
            if (parse_u64(argv[++i], &groups) < 0 || groups < 1 || groups > 8)
                goto bad;
        } else if (!strcmp(a, "--sm") && i + 1 < argc) {
            const char *v = argv[++i];
            if (!strcmp(v, "kv"))
                sm = SIM_KV;
            else if (!strcmp(v, "fs"))
                sm = SIM_FS;
            else
                goto bad;
        } else if (!strcmp(a, "--fs-bug") && i + 1 < argc) {
            if (parse_u64(argv[++i], &fs_bug) < 0 || fs_bug < 1 || fs_bug > SMI_FS_BUGS)
                goto bad;
        } else if (!strcmp(a, "--breach") && i + 1 < argc) {
            const char *v = argv[++i];
            size_t k;
            for (k = 0; k < sizeof(breaches) / sizeof(breaches[0]); k++)
                if (!strcmp(v, breaches[k].name))
                    break;
            if (k == sizeof(breaches) / sizeof(breaches[0]))
                goto bad;
            if (!(breach & breaches[k].bit)) {
                size_t l = strlen(breach_flags);
                snprintf(breach_flags + l, sizeof(breach_flags) - l, " --breach %s", v);
            }
            breach |= breaches[k].bit;
        } else if (!strcmp(a, "--fs-resend"))
            fs_resend = 1;
        else if (!strcmp(a, "--trace"))
            trace = 1;
        else if (!strcmp(a, "--stop"))
            stop = 1;
        else if (!strcmp(a, "--stats"))
            stats = 1;
        else if (!strcmp(a, "--lin-only"))
            lin_only = 1;
        else if (!strcmp(a, "--stop-on") && i + 1 < argc)
            stop_on = argv[++i];
        else
            goto bad;
    }

    if (groups > 1 && breach) {
        fprintf(stderr, "tools/sim: --breach with --groups > 1 is not supported\n");
        return 2;
    }
    char groups_flag[32] = "";
    if (groups > 1)
        snprintf(groups_flag, sizeof(groups_flag), " --groups %" PRIu64, groups);
    uint64_t failures = 0, ran = 0;
    sim_stats_t tot;
    memset(&tot, 0, sizeof(tot));
    static char why[16384];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    signal(SIGABRT, on_abort);
    char fs_bug_flag[32] = "";
    if (fs_bug)
        snprintf(fs_bug_flag, sizeof(fs_bug_flag), " --fs-bug %" PRIu64, fs_bug);
    for (uint64_t k = 0; k < seeds; k++) {
        uint64_t seed = from + k;
        int n = nodes ? (int)nodes : (seed % 2 ? 3 : 5);
        sim_opts_t o = { .seed = seed, .nodes = n, .trace = trace ? stdout : NULL,
                         .lin_only = lin_only, .sm = sm, .fs_resend = fs_resend,
                         .fs_bug = (int)fs_bug, .breach = breach, .groups = (int)groups };
        sim_stats_t st;
        char replay[400];
        snprintf(replay, sizeof(replay), "  replay: tools/sim%s%s%s%s%s --seeds 1 --from %"
                 PRIu64 " --nodes %d%s --trace\n", sm == SIM_FS ? " --sm fs" : "", groups_flag,
                 fs_resend ? " --fs-resend" : "", fs_bug_flag, breach_flags, seed, n,
                 lin_only ? " --lin-only" : "");
        snprintf(abort_note, sizeof(abort_note),
                 "seed %" PRIu64 " (%d nodes) ABORTED (an assertion failed; see stderr)\n%s",
                 seed, n, replay);
        int rc = sim_run(&o, &st, why, sizeof(why));
        ran++;
        if (rc != 0) {
            failures++;
            printf("seed %" PRIu64 " (%d nodes) FAILED: %s\n%s", seed, n,
                   rc < 0 ? "internal error (out of memory)" : why, replay);
            fflush(stdout);
        }
        if (stats)
            printf("seed %" PRIu64 " n%d: vtime %" PRIu64 ", %" PRIu64 " ops (%" PRIu64
                   " unknown), %" PRIu64 " msgs, %" PRIu64 " crashes (%" PRIu64
                   " torn, %" PRIu64 " disk faults), %" PRIu64 " leaders, max term %" PRIu64
                   ", %" PRIu64 " snapshots installed, %" PRIu64 " conf changes, applied %"
                   PRIu64 ", %" PRIu64 " lin states\n",
                   seed, n, st.vtime, st.ops, st.unknown, st.msgs, st.crashes, st.torn,
                   st.disk_faults, st.elections, st.max_term, st.snaps_sent, st.conf_changes,
                   st.applied, st.lin_states);
        if (stats)
            printf("  checks: %" PRIu64 " lease, %" PRIu64 " read index, %" PRIu64
                   " durable commits; %" PRIu64 " pauses, %" PRIu64 " late msgs, %" PRIu64
                   " failed allocations, %" PRIu64 " crashes inside a compaction\n",
                   st.lease_checks, st.read_checks, st.durable_checks, st.pauses, st.late_msgs,
                   st.alloc_fails, st.compact_crashes);
        if (stats && sm == SIM_FS)
            printf("  fs: %" PRIu64 " state comparisons, %" PRIu64 " restores checked; %s\n",
                   st.state_checks, st.restore_checks, st.sm_line);
        tot.ops += st.ops;
        tot.unknown += st.unknown;
        tot.crashes += st.crashes;
        tot.torn += st.torn;
        tot.disk_faults += st.disk_faults;
        tot.elections += st.elections;
        tot.snaps_sent += st.snaps_sent;
        tot.conf_changes += st.conf_changes;
        tot.msgs += st.msgs;
        tot.state_checks += st.state_checks;
        tot.restore_checks += st.restore_checks;
        tot.lease_checks += st.lease_checks;
        tot.read_checks += st.read_checks;
        tot.durable_checks += st.durable_checks;
        tot.pauses += st.pauses;
        tot.late_msgs += st.late_msgs;
        tot.alloc_fails += st.alloc_fails;
        tot.compact_crashes += st.compact_crashes;
        tot.live_excused += st.live_excused;
        if (rc != 0 && (stop || (stop_on && strstr(why, stop_on))))
            break;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("# totals: %" PRIu64 " client ops (%" PRIu64 " unknown), %" PRIu64 " msgs, %" PRIu64
           " crashes (%" PRIu64 " torn writes, %" PRIu64 " disk faults), %" PRIu64
           " leaders, %" PRIu64 " snapshots installed, %" PRIu64 " conf changes; %.1f ms/seed\n",
           tot.ops, tot.unknown, tot.msgs, tot.crashes, tot.torn, tot.disk_faults, tot.elections,
           tot.snaps_sent, tot.conf_changes, ran ? secs * 1000.0 / (double)ran : 0.0);
    printf("# checks: %" PRIu64 " lease, %" PRIu64 " read index, %" PRIu64 " durable commits; "
           "faults: %" PRIu64 " pauses, %" PRIu64 " late msgs, %" PRIu64 " failed allocations, %"
           PRIu64 " crashes inside a compaction\n", tot.lease_checks, tot.read_checks,
           tot.durable_checks, tot.pauses, tot.late_msgs, tot.alloc_fails, tot.compact_crashes);
    if (tot.live_excused)
        printf("# liveness not checked in %" PRIu64 " runs: a removed server without pre-vote "
               "and voters without check-quorum (mixed settings; FINDINGS.md 8)\n",
               tot.live_excused);
    if (sm == SIM_FS)
        printf("# fs: %" PRIu64 " replica states compared byte for byte at equal indexes, %" PRIu64
               " restored states checked\n", tot.state_checks, tot.restore_checks);
    printf("%" PRIu64 " seeds, %" PRIu64 " failures\n", ran, failures);
    return failures ? 1 : 0;
bad:
    usage();
    return 2;
}
