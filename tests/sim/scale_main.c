/* tests/sim/scale_main.c — runs the scale model (tests/sim/scale.h) through its phases, once
 * without and once with quiescence, and prints the figures docs/SCALING.md quotes (markdown
 * tables) and one "ok"/"not ok" line per check. The phases: elections and warm-up, an idle
 * window, a load window, a cool-down, the kill of the node leading the most groups, then one
 * write to every group. `make test` runs a small cluster; `make bench` the 100 x 10,000 one.
 *   scale [--nodes N] [--groups G] [--seed S] [--quiesce on|off|both] [--load P]
 *         [--idle-s T] [--load-s T] [--kill-s T] [--live-ms M] [--live-timeout-ms M]
 *         [--tick-ms M] [--election-tick K] [--max-inflight K] [--kill-in-load] */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/raft.h"
#include "tests/sim/scale.h"

typedef struct opts {
    scale_config_t cfg;
    int modes;                 /* bit 0: quiescence off, bit 1: on */
    uint32_t load;             /* proposals per second in the load window */
    double warm_s, idle_s, load_s, cool_s, kill_s, final_s;
    bool kill_in_load;         /* kill in the middle of the load window, not after it */
} opts_t;

static int failures;

static void check(bool ok, const char *fmt, const char *mode, const char *detail)
{
    printf("%s %s: %s%s%s\n", ok ? "ok" : "not ok", mode, fmt, detail && *detail ? ": " : "",
           detail ? detail : "");
    if (!ok)
        failures++;
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long rss_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, fl)) {
            v = atol(line + fl);
            break;
        }
    fclose(f);
    return v;
}

/* Bytes one fresh core takes (a founding voter of 3, before any message), by malloc
 * accounting over 1000 of them. */
static double fresh_core_bytes(uint32_t max_inflight)
{
    enum { N = 1000 };
    static raft_t *rs[N];
    raft_boot_t boot = { 0 };
    boot.snap.conf.n = 3;
    for (int k = 0; k < 3; k++)
        boot.snap.conf.s[k] = (raft_server_t){ (uint64_t)k + 1, RAFT_VOTER };
    size_t before = mallinfo2().uordblks;
    for (int i = 0; i < N; i++) {
        raft_config_t rc = { .id = 1, .election_tick = 10, .heartbeat_tick = 1,
                             .max_inflight = max_inflight, .seed = (uint64_t)i,
                             .pre_vote = true, .check_quorum = true };
        if (raft_new(&rc, &boot, &rs[i]) != 0)
            abort();
    }
    size_t after = mallinfo2().uordblks;
    for (int i = 0; i < N; i++)
        raft_free(rs[i]);
    return (double)(after - before) / N;
}

/* Per-node figures of one window, over live nodes. */
typedef struct window {
    double secs;
    double plain_mean, plain_max, coal_mean, coal_max;   /* frames/s per node */
    double bplain_mean, bcoal_mean;                      /* bytes/s per node */
    double hb, app, vote, other, drv;                    /* Raft messages/s per node, by class */
    double calls;                                        /* raft_tick + raft_step /s per node */
    uint64_t raft_total;
} window_t;

static void measure(scale_t *s, const scale_config_t *cfg, double secs, window_t *w)
{
    memset(w, 0, sizeof *w);
    w->secs = secs;
    uint32_t live = 0;
    for (uint32_t id = 1; id <= cfg->nodes; id++) {
        const scale_counters_t *c = scale_node_counters(s, id);
        if (scale_node_dead(s, id))
            continue;
        live++;
        double fp = c->frames_plain / secs, fc = c->frames_coal / secs;
        w->plain_mean += fp;
        w->coal_mean += fc;
        if (fp > w->plain_max)
            w->plain_max = fp;
        if (fc > w->coal_max)
            w->coal_max = fc;
        w->bplain_mean += c->bytes_plain / secs;
        w->bcoal_mean += c->bytes_coal / secs;
        w->hb += (c->raft[RAFT_MSG_HEARTBEAT] + c->raft[RAFT_MSG_HEARTBEAT_RESP]) / secs;
        w->app += (c->raft[RAFT_MSG_APPEND] + c->raft[RAFT_MSG_APPEND_RESP]) / secs;
        w->vote += (c->raft[RAFT_MSG_PREVOTE] + c->raft[RAFT_MSG_PREVOTE_RESP] +
                    c->raft[RAFT_MSG_VOTE] + c->raft[RAFT_MSG_VOTE_RESP]) / secs;
        uint64_t all = 0;
        for (int t = 0; t < RAFT_MSG__COUNT; t++)
            all += c->raft[t];
        w->raft_total += all;
        w->other += (all - c->raft[RAFT_MSG_HEARTBEAT] - c->raft[RAFT_MSG_HEARTBEAT_RESP] -
                     c->raft[RAFT_MSG_APPEND] - c->raft[RAFT_MSG_APPEND_RESP] -
                     c->raft[RAFT_MSG_PREVOTE] - c->raft[RAFT_MSG_PREVOTE_RESP] -
                     c->raft[RAFT_MSG_VOTE] - c->raft[RAFT_MSG_VOTE_RESP]) / secs;
        w->drv += (c->markers + c->wakes + c->beats) / secs;
        w->calls += (c->ticks + c->steps) / secs;
    }
    if (!live)
        return;
    w->plain_mean /= live;
    w->coal_mean /= live;
    w->bplain_mean /= live;
    w->bcoal_mean /= live;
    w->hb /= live;
    w->app /= live;
    w->vote /= live;
    w->other /= live;
    w->drv /= live;
    w->calls /= live;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Percentile of sorted v[0..n) (n > 0), nearest rank. */
static double pct(const int64_t *v, size_t n, double p)
{
    size_t i = (size_t)(p / 100.0 * (double)n);
    if (i >= n)
        i = n - 1;
    return (double)v[i];
}

typedef struct result {
    window_t idle, load;
    double core_bytes_idle;     /* per replica */
    long rss_kib;
    uint32_t led_before, quiet_idle, min_lead, max_lead;
    uint32_t killed, kill_groups, kill_elected, kill_serving;
    double el_med, el_p90, el_max, sv_med, sv_p90, sv_max;
    uint64_t other_elections;
    double lat_med, lat_p99, lat_max;
    uint64_t acked_final, wake_requests, lost, no_leader;
    double cpu_idle, cpu_load, cpu_total;
} result_t;

static bool run(const opts_t *o, bool quiesce, result_t *res)
{
    const char *mode = quiesce ? "quiesce" : "no-quiesce";
    memset(res, 0, sizeof *res);
    scale_config_t cfg = o->cfg;
    cfg.quiesce = quiesce;
    scale_config_defaults(&cfg);
    double c0 = cpu_s();
    scale_t *s = scale_new(&cfg);
    if (!s)
        return false;
    uint64_t t = (uint64_t)(o->warm_s * 1e6);
    scale_run_until(s, t);
    scale_balance(s);    /* leaders to their preferred nodes, as the real node loop does */
    t += 3000000;
    scale_run_until(s, t);
    scale_group_summary(s, &res->led_before, &res->quiet_idle, &res->min_lead, &res->max_lead);

    /* idle */
    scale_reset_counters(s);
    double c1 = cpu_s();
    t += (uint64_t)(o->idle_s * 1e6);
    scale_run_until(s, t);
    res->cpu_idle = cpu_s() - c1;
    measure(s, &cfg, o->idle_s, &res->idle);
    uint32_t led, dummy1, dummy2;
    scale_group_summary(s, &led, &res->quiet_idle, &dummy1, &dummy2);
    res->core_bytes_idle = (double)scale_core_bytes(s) / (double)scale_replicas(s);
    res->rss_kib = rss_kib("VmRSS:");

    /* load */
    scale_reset_counters(s);
    scale_set_load(s, o->load);
    double c2 = cpu_s();
    if (o->kill_in_load) {
        /* the kill in the middle of the load window: proposals in flight to the groups it
         * led are lost or never answered, and acknowledged ones must survive */
        t += (uint64_t)(o->load_s * 1e6 / 2);
        scale_run_until(s, t);
        res->killed = scale_busiest_leader(s);
        scale_kill(s, res->killed);
        t += (uint64_t)(o->load_s * 1e6 / 2);
    } else {
        t += (uint64_t)(o->load_s * 1e6);
    }
    scale_run_until(s, t);
    res->cpu_load = cpu_s() - c2;
    scale_set_load(s, 0);
    measure(s, &cfg, o->load_s, &res->load);

    /* cool down, then kill the busiest leader */
    t += (uint64_t)(o->cool_s * 1e6);
    scale_run_until(s, t);
    if (!o->kill_in_load) {
        res->killed = scale_busiest_leader(s);
        scale_kill(s, res->killed);
    }
    t += (uint64_t)(o->kill_s * 1e6);
    scale_run_until(s, t);
    const scale_kill_stats_t *ks = scale_kill_stats(s);
    res->kill_groups = (uint32_t)ks->n;
    res->other_elections = ks->other_elections;
    int64_t *el = malloc((ks->n + 1) * sizeof *el), *sv = malloc((ks->n + 1) * sizeof *sv);
    if (!el || !sv)
        abort();
    size_t ne = 0, ns = 0;
    for (size_t i = 0; i < ks->n; i++) {
        if (ks->elected_us[i] >= 0)
            el[ne++] = ks->elected_us[i];
        if (ks->serving_us[i] >= 0)
            sv[ns++] = ks->serving_us[i];
    }
    res->kill_elected = (uint32_t)ne;
    res->kill_serving = (uint32_t)ns;
    qsort(el, ne, sizeof *el, cmp_i64);
    qsort(sv, ns, sizeof *sv, cmp_i64);
    if (ne) {
        res->el_med = pct(el, ne, 50) / 1000;
        res->el_p90 = pct(el, ne, 90) / 1000;
        res->el_max = (double)el[ne - 1] / 1000;
    }
    if (ns) {
        res->sv_med = pct(sv, ns, 50) / 1000;
        res->sv_p90 = pct(sv, ns, 90) / 1000;
        res->sv_max = (double)sv[ns - 1] / 1000;
    }
    free(el);
    free(sv);

    /* one write to every group: each must be acknowledged */
    uint64_t acked0 = scale_checks(s)->acked;
    scale_propose_all(s);
    t += (uint64_t)(o->final_s * 1e6);
    scale_run_until(s, t);
    const scale_checks_t *ck = scale_checks(s);
    res->acked_final = ck->acked - acked0;
    res->wake_requests = ck->wake_requests;
    res->lost = ck->lost;
    res->no_leader = ck->no_leader;
    if (ck->commit_lat_n) {
        int64_t *lat = malloc(ck->commit_lat_n * sizeof *lat);
        if (!lat)
            abort();
        memcpy(lat, ck->commit_lat_us, ck->commit_lat_n * sizeof *lat);
        qsort(lat, ck->commit_lat_n, sizeof *lat, cmp_i64);
        res->lat_med = pct(lat, ck->commit_lat_n, 50) / 1000;
        res->lat_p99 = pct(lat, ck->commit_lat_n, 99) / 1000;
        res->lat_max = (double)lat[ck->commit_lat_n - 1] / 1000;
        free(lat);
    }
    res->cpu_total = cpu_s() - c0;

    char d[320];
    snprintf(d, sizeof d, "%llu (group, term) leaders", (unsigned long long)ck->leader_terms);
    check(ck->violations == 0, "Raft safety held (at most one leader per term per group, the "
          "same entry applied at each index everywhere, new leaders hold every committed "
          "entry, every live replica applied the whole record)", mode,
          ck->violations ? ck->first : d);
    snprintf(d, sizeof d, "%u of %u groups", res->led_before, cfg.groups);
    check(res->led_before == cfg.groups, "every group elected a leader during the warm-up",
          mode, d);
    snprintf(d, sizeof d, "node %u led %u groups, %u elected, %u serving", res->killed,
             res->kill_groups, res->kill_elected, res->kill_serving);
    check(res->kill_groups > 0 && res->kill_elected == res->kill_groups &&
              res->kill_serving == res->kill_groups,
          "every group the killed node led elected a new leader that commits", mode, d);
    snprintf(d, sizeof d, "%llu of %u acknowledged", (unsigned long long)res->acked_final,
             cfg.groups);
    check(res->acked_final == cfg.groups, "after the kill every group acknowledged a write",
          mode, d);
    snprintf(d, sizeof d, "%llu", (unsigned long long)res->other_elections);
    check(res->other_elections == 0, "no election in a group the killed node did not lead",
          mode, d);
    if (quiesce) {
        snprintf(d, sizeof d, "%u of %u leaders quiesced, %llu Raft messages in %.0f s",
                 res->quiet_idle, cfg.groups, (unsigned long long)res->idle.raft_total,
                 o->idle_s);
        check(res->quiet_idle == cfg.groups && res->idle.raft_total == 0,
              "idle groups quiesce: no Raft message while idle, liveness beats only", mode, d);
    }
    scale_free(s);
    return true;
}

static void print_results(const opts_t *o, const result_t *r, bool have[2])
{
    const scale_config_t *c = &o->cfg;
    printf("\n## %u nodes x %u groups (3 voters each), seed %llu%s\n\n", c->nodes, c->groups,
           (unsigned long long)c->seed,
           o->kill_in_load ? ", the kill in the middle of the load window" : "");
    printf("tick %u ms, election timeout %u ticks (randomized in [%u, %u) ticks), heartbeat "
           "every %u tick, pre-vote and check-quorum on, leases off; one-way latency %u-%u "
           "us; liveness beat every %u ms, a peer dead after %u ms of silence (quiescence "
           "only); load %u proposals/s of %u bytes\n\n",
           c->tick_ms, c->election_tick, c->election_tick, 2 * c->election_tick,
           c->heartbeat_tick, c->lat_min_us, c->lat_min_us + c->lat_jitter_us, c->live_ms,
           c->live_timeout_ms, o->load, c->payload);
    printf("| design | window | frames/s per node (mean, max) | bytes/s per node | Raft msgs/s "
           "per node: heartbeat, append, vote, other | driver items/s | core calls/s per "
           "node |\n|---|---|---|---|---|---|---|\n");
    for (int q = 0; q < 2; q++) {
        if (!have[q])
            continue;
        for (int co = 0; co < 2; co++) {
            for (int wi = 0; wi < 2; wi++) {
                const window_t *w = wi ? &r[q].load : &r[q].idle;
                printf("| %s, %s | %s | %.0f, %.0f | %.0f | %.0f, %.0f, %.1f, %.1f | %.0f | "
                       "%.0f |\n",
                       co ? "coalesced" : "per-group", q ? "quiescence" : "no quiescence",
                       wi ? "load" : "idle", co ? w->coal_mean : w->plain_mean,
                       co ? w->coal_max : w->plain_max, co ? w->bcoal_mean : w->bplain_mean,
                       w->hb, w->app, w->vote, w->other, w->drv, w->calls);
            }
        }
    }
    printf("\n| | no quiescence | quiescence |\n|---|---|---|\n");
#define ROW(label, fmt, field)                                                           \
    do {                                                                                 \
        printf("| %s |", label);                                                         \
        for (int q = 0; q < 2; q++) {                                                    \
            if (have[q])                                                                 \
                printf(" " fmt " |", field);                                             \
            else                                                                         \
                printf(" - |");                                                          \
        }                                                                                \
        printf("\n");                                                                    \
    } while (0)
    ROW("heap bytes per idle replica (malloc accounting)", "%.0f", r[q].core_bytes_idle);
    ROW("heap bytes per idle group (3 replicas)", "%.0f", 3 * r[q].core_bytes_idle);
    ROW("process RSS after the idle window (MiB)", "%.0f", r[q].rss_kib / 1024.0);
    ROW("leaders per node after warm-up (min-max)", "%u", r[q].min_lead);
    ROW("... max", "%u", r[q].max_lead);
    ROW("commit latency under load, median ms", "%.2f", r[q].lat_med);
    ROW("commit latency under load, p99 ms", "%.2f", r[q].lat_p99);
    ROW("groups led by the killed node", "%u", r[q].kill_groups);
    ROW("time to elect, median ms", "%.0f", r[q].el_med);
    ROW("time to elect, p90 ms", "%.0f", r[q].el_p90);
    ROW("time to elect, max ms", "%.0f", r[q].el_max);
    ROW("time until the new leader commits, median ms", "%.0f", r[q].sv_med);
    ROW("time until the new leader commits, max ms", "%.0f", r[q].sv_max);
    ROW("elections in other groups", "%llu", (unsigned long long)r[q].other_elections);
    ROW("follower wake requests (safety net)", "%llu", (unsigned long long)r[q].wake_requests);
    ROW("proposals refused (no leader) / lost", "%llu",
        (unsigned long long)(r[q].no_leader + r[q].lost));
    ROW("host CPU s: idle window", "%.1f", r[q].cpu_idle);
    ROW("host CPU s: load window", "%.1f", r[q].cpu_load);
    ROW("host CPU s: whole run", "%.1f", r[q].cpu_total);
#undef ROW
    printf("\npeak RSS %.0f MiB\n", rss_kib("VmHWM:") / 1024.0);
}

static int usage(void)
{
    fprintf(stderr, "usage: scale [--nodes N] [--groups G] [--seed S] [--quiesce on|off|both] "
                    "[--load P] [--warm-s T] [--idle-s T] [--load-s T] [--kill-s T] "
                    "[--live-ms M] [--live-timeout-ms M] [--tick-ms M] [--election-tick K] "
                    "[--max-inflight K] [--kill-in-load]\n");
    return 2;
}

int main(int argc, char **argv)
{
    opts_t o = { .modes = 3, .load = 1000, .warm_s = 6, .idle_s = 10, .load_s = 10,
                 .cool_s = 3, .kill_s = 10, .final_s = 4 };
    o.cfg.seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        double d = v ? strtod(v, &end) : -1;
        bool num = v && *v && !*end && d >= 0 && d <= 4294967295.0;
        if (!strcmp(a, "--kill-in-load")) {
            o.kill_in_load = true;
            continue;
        }
        if (!v)
            return usage();
        if (!strcmp(a, "--quiesce")) {
            o.modes = !strcmp(v, "on") ? 2 : !strcmp(v, "off") ? 1 : !strcmp(v, "both") ? 3 : 0;
            if (!o.modes)
                return usage();
        } else if (!num) {
            return usage();
        } else if (!strcmp(a, "--nodes")) {
            o.cfg.nodes = (uint32_t)d;
        } else if (!strcmp(a, "--groups")) {
            o.cfg.groups = (uint32_t)d;
        } else if (!strcmp(a, "--seed")) {
            o.cfg.seed = (uint64_t)d;
        } else if (!strcmp(a, "--load")) {
            o.load = (uint32_t)d;
        } else if (!strcmp(a, "--warm-s")) {
            o.warm_s = d;
        } else if (!strcmp(a, "--idle-s")) {
            o.idle_s = d;
        } else if (!strcmp(a, "--load-s")) {
            o.load_s = d;
        } else if (!strcmp(a, "--kill-s")) {
            o.kill_s = d;
        } else if (!strcmp(a, "--live-ms")) {
            o.cfg.live_ms = (uint32_t)d;
        } else if (!strcmp(a, "--live-timeout-ms")) {
            o.cfg.live_timeout_ms = (uint32_t)d;
        } else if (!strcmp(a, "--tick-ms")) {
            o.cfg.tick_ms = (uint32_t)d;
        } else if (!strcmp(a, "--election-tick")) {
            o.cfg.election_tick = (uint32_t)d;
        } else if (!strcmp(a, "--max-inflight")) {
            o.cfg.max_inflight = (uint32_t)d;
        } else {
            return usage();
        }
        i++;
    }
    if (o.idle_s <= 0 || o.load_s <= 0 || o.kill_s <= 0 || o.load > 1000000) {
        fprintf(stderr, "scale: the windows must be longer than 0 s, and --load at most "
                        "1000000 proposals/s\n");
        return 2;
    }
    scale_config_defaults(&o.cfg);
    printf("fresh core, heap bytes each (3 voters, max_inflight 256): %.0f; with "
           "max_inflight 16: %.0f\n", fresh_core_bytes(256), fresh_core_bytes(16));
    result_t r[2];
    bool have[2] = { false, false };
    for (int q = 0; q < 2; q++) {
        if (!(o.modes & (1 << q)))
            continue;
        if (!run(&o, q == 1, &r[q]))
            return 2;
        have[q] = true;
        fflush(stdout);
    }
    if (have[0]) {
        char d[128];
        snprintf(d, sizeof d, "%.0f vs %.0f frames/s per node", r[0].idle.coal_mean,
                 r[0].idle.plain_mean);
        check(r[0].idle.coal_mean < r[0].idle.plain_mean,
              "coalescing sends fewer frames than one per message when idle", "no-quiesce", d);
    }
    if (have[0] && have[1]) {
        char d[128];
        snprintf(d, sizeof d, "%.0f vs %.0f frames/s per node", r[1].idle.coal_mean,
                 r[0].idle.coal_mean);
        check(r[1].idle.coal_mean < r[0].idle.coal_mean,
              "quiescence sends fewer frames than coalescing alone when idle", "both", d);
    }
    print_results(&o, r, have);
    return failures ? 1 : 0;
}
