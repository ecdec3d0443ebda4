/* tests/sim/main.c — the simulator's command line (run through tools/sim): runs seeds
 * from..from+N-1, prints each failure with the one command that replays it, and ends with
 * "N seeds, N failures". Exit status 0 only if every seed passed. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/sim/sim.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: tools/sim [--seeds N] [--from S] [--nodes 3|5] [--trace] [--stop] [--stats]\n"
            "                 [--lin-only] [--stop-on TEXT]\n"
            "  --seeds N   number of seeds to run (default 1)\n"
            "  --from S    first seed (default 1)\n"
            "  --nodes K   founding voters; default: 3 for odd seeds, 5 for even ones\n"
            "  --trace     print every event of each run (use with --seeds 1 to replay)\n"
            "  --stop      stop at the first failing seed\n"
            "  --stop-on T stop at the first seed failing with a reason containing T\n"
            "  --stats     print one line of figures per seed\n"
            "  --lin-only  broken Raft invariants are traced but not fatal, so only the\n"
            "              linearizability and liveness checks can fail a run\n");
}

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
    uint64_t seeds = 1, from = 1, nodes = 0;
    int trace = 0, stop = 0, stats = 0, lin_only = 0;
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
        } else if (!strcmp(a, "--trace"))
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

    uint64_t failures = 0, ran = 0;
    sim_stats_t tot;
    memset(&tot, 0, sizeof(tot));
    static char why[16384];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint64_t k = 0; k < seeds; k++) {
        uint64_t seed = from + k;
        int n = nodes ? (int)nodes : (seed % 2 ? 3 : 5);
        sim_opts_t o = { .seed = seed, .nodes = n, .trace = trace ? stdout : NULL,
                         .lin_only = lin_only };
        sim_stats_t st;
        int rc = sim_run(&o, &st, why, sizeof(why));
        ran++;
        if (rc != 0) {
            failures++;
            printf("seed %" PRIu64 " (%d nodes) FAILED: %s\n", seed, n,
                   rc < 0 ? "internal error (out of memory)" : why);
            printf("  replay: tools/sim --seeds 1 --from %" PRIu64 " --nodes %d%s --trace\n", seed,
                   n, lin_only ? " --lin-only" : "");
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
        tot.ops += st.ops;
        tot.unknown += st.unknown;
        tot.crashes += st.crashes;
        tot.torn += st.torn;
        tot.disk_faults += st.disk_faults;
        tot.elections += st.elections;
        tot.snaps_sent += st.snaps_sent;
        tot.conf_changes += st.conf_changes;
        tot.msgs += st.msgs;
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
    printf("%" PRIu64 " seeds, %" PRIu64 " failures\n", ran, failures);
    return failures ? 1 : 0;
bad:
    usage();
    return 2;
}
