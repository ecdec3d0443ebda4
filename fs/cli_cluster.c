/* fs/cli_cluster.c — `quorumfs cluster ...`, the commands that talk to a running cluster
 * from anywhere (see cli_cluster.h): `status` asks one member at its peer address for the
 * status text it publishes every second (cluster/status_client.h); `drain`, `undrain`,
 * `add`, `remove` and `rebalance` send one ADMIN request there (cluster/admin_client.h,
 * fs/admin.h); drain and remove then poll the status until done. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cluster/admin_client.h"
#include "cluster/err.h"
#include "cluster/frame.h"
#include "cluster/status_client.h"
#include "fs/admin.h"
#include "fs/cli_cluster.h"

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define DRAIN_POLL_MS 250

static int usage(FILE *f, int rc)
{
    fprintf(f,
            "usage: quorumfs cluster status --cluster HOST:PORT [OPTIONS]\n"
            "       quorumfs cluster drain ID --cluster HOST:PORT [--no-wait] [OPTIONS]\n"
            "       quorumfs cluster undrain ID --cluster HOST:PORT [OPTIONS]\n"
            "       quorumfs cluster add ID=HOST:PORT --cluster HOST:PORT [OPTIONS]\n"
            "       quorumfs cluster remove ID --cluster HOST:PORT [--no-wait] [OPTIONS]\n"
            "       quorumfs cluster rebalance [--dry-run] --cluster HOST:PORT [OPTIONS]\n"
            "OPTIONS: [--timeout-ms N] [--tls-cert F --tls-key F --tls-ca F]\n"
            "status asks the member at HOST:PORT (its peer address, as in --peers) for its\n"
            "view of the cluster: members, shards and their leaders, health.\n"
            "drain moves every shard's leadership away from member ID (for maintenance) and\n"
            "waits, up to --timeout-ms (default 30000), until that member leads nothing;\n"
            "undrain lets it lead again (docs/OPERATIONS.md \"Draining a node\").\n"
            "add records a new member and prints the command to start it with; remove moves\n"
            "member ID's replicas away and waits, up to --timeout-ms (default 120000), until\n"
            "it has left; rebalance shows the moves still to make (they run by themselves)\n"
            "(docs/OPERATIONS.md \"Adding and removing nodes\").\n"
            "With TLS on the members, give a certificate their CA signed whose subject CN is\n"
            "quorumfs-client (or a node's, quorumfs-<id>), its key and the CA bundle; TLS 1.3\n"
            "only (docs/TRANSPORT.md \"Status queries\").\n");
    return rc;
}

/* The value of option name at argv[*i] ("--name V" or "--name=V"), advancing *i; NULL when
 * argv[*i] is not that option. *missing is set when it is but has no value. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, int *missing)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] != 0)
        return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}

/* What every command takes: the member to ask, a timeout, TLS files; and for drain its
 * node id and --no-wait. */
typedef struct copts {
    const char *cmd;
    const char *addr;
    unsigned long timeout_ms;
    const char *tls[3];
    int ntls;
    uint64_t id;                 /* drain/undrain/remove/add: the member (0: none given) */
    const char *addr_new;        /* add: the new member's address */
    int no_wait;
    int dry_run;
} copts_t;

enum { NO_ID, WITH_ID, WITH_ID_ADDR };

/* Parses argv into *o (with_id: one ID argument is required, WITH_ID_ADDR: as ID=HOST:PORT).
 * Returns -1 when it went on, else the exit code to return (usage printed). */
static int parse(int argc, char **argv, copts_t *o, int with_id)
{
    static const char *const tls_names[3] = { "--tls-cert", "--tls-key", "--tls-ca" };
    for (int i = 0; i < argc; i++) {
        int missing = 0, known = 0;
        const char *v;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return usage(stdout, EXIT_OK);
        if ((v = opt_value(argc, argv, &i, "--cluster", &missing))) {
            o->addr = v;
            known = 1;
        } else if ((v = opt_value(argc, argv, &i, "--timeout-ms", &missing))) {
            char *end;
            errno = 0;
            o->timeout_ms = strtoul(v, &end, 10);
            if (errno || *end || end == v || o->timeout_ms == 0 || o->timeout_ms > 600000) {
                fprintf(stderr, "quorumfs: --timeout-ms takes 1..600000, not '%s'\n", v);
                return EXIT_USAGE;
            }
            known = 1;
        } else if (with_id && !strcmp(argv[i], "--no-wait")) {
            o->no_wait = known = 1;
        } else if (!with_id && !strcmp(o->cmd, "rebalance") && !strcmp(argv[i], "--dry-run")) {
            o->dry_run = known = 1;
        } else if (with_id && !o->id && argv[i][0] != '-') {
            char *end;
            errno = 0;
            unsigned long long id = strtoull(argv[i], &end, 10);
            int addr_ok = with_id == WITH_ID_ADDR ? *end == '=' && end[1] : !*end;
            if (errno || !addr_ok || end == argv[i] || id == 0) {
                fprintf(stderr, with_id == WITH_ID_ADDR
                        ? "quorumfs: cluster %s: '%s' is not ID=HOST:PORT (4=10.0.0.4:7000)\n"
                        : "quorumfs: cluster %s: '%s' is not a node id (1, 2, ...)\n",
                        o->cmd, argv[i]);
                return EXIT_USAGE;
            }
            o->id = id;
            o->addr_new = with_id == WITH_ID_ADDR ? end + 1 : NULL;
            known = 1;
        }
        for (int k = 0; k < 3 && !known && !missing; k++)
            if ((v = opt_value(argc, argv, &i, tls_names[k], &missing))) {
                o->tls[k] = v;
                known = 1;
            }
        if (missing) {
            fprintf(stderr, "quorumfs: %s needs a value\n", argv[i]);
            return EXIT_USAGE;
        }
        if (!known) {
            fprintf(stderr, "quorumfs: cluster %s: unknown argument '%s'\n", o->cmd, argv[i]);
            return usage(stderr, EXIT_USAGE);
        }
    }
    if (with_id && !o->id) {
        fprintf(stderr, "quorumfs: cluster %s needs the node id to %s\n", o->cmd, o->cmd);
        return usage(stderr, EXIT_USAGE);
    }
    if (!o->addr) {
        fprintf(stderr, "quorumfs: cluster %s needs --cluster HOST:PORT\n", o->cmd);
        return usage(stderr, EXIT_USAGE);
    }
    const char *colon = strrchr(o->addr, ':');
    char *end = NULL;
    unsigned long port = colon ? strtoul(colon + 1, &end, 10) : 0;
    if (!colon || end == colon + 1 || *end || port == 0 || port > 65535) {
        fprintf(stderr, "quorumfs: --cluster %s: not HOST:PORT with a port from 1 to 65535\n",
                o->addr);
        return EXIT_USAGE;
    }
    o->ntls = !!o->tls[0] + !!o->tls[1] + !!o->tls[2];
    if (o->ntls && o->ntls < 3) {
        fprintf(stderr, "quorumfs: TLS needs all three of --tls-cert, --tls-key and --tls-ca\n");
        return EXIT_USAGE;
    }
    return -1;
}

static int status_cmd(int argc, char **argv)
{
    copts_t o = { .cmd = "status", .timeout_ms = 5000 };
    int rc = parse(argc, argv, &o, 0);
    if (rc >= 0)
        return rc;
    cluster_status_tls_t t = { o.tls[0], o.tls[1], o.tls[2] };
    cluster_status_t st;
    char *err = NULL;
    rc = cluster_status_query(o.addr, o.ntls ? &t : NULL, (uint32_t)o.timeout_ms, &st, &err);
    if (rc < 0) {
        fprintf(stderr, "quorumfs: cluster status: %s\n", err ? err : qerr_str(rc));
        free(err);
        return EXIT_FAIL;
    }
    if (st.age_ms == STATUS_AGE_NONE)
        printf("# node %llu at %s has published no status yet\n",
               (unsigned long long)st.node_id, o.addr);
    else
        printf("# asked node %llu at %s%s; its view %llu ms ago\n",
               (unsigned long long)st.node_id, o.addr, st.tls ? " over TLS" : "",
               (unsigned long long)st.age_ms);
    fwrite(st.text, 1, st.len, stdout);
    if (st.len && st.text[st.len - 1] != '\n')
        putchar('\n');
    cluster_status_free(&st);
    return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Whether the status text shows member id drained and leading no shard: its line in the
 * members section ("ID ADDR STATE [drained] [leader] [leads N]") says "drained" and
 * neither "leader" nor "leads". -1 when the text has no line for id. */
static int drained_in(const char *text, uint64_t id)
{
    char head[32];
    int hl = snprintf(head, sizeof(head), "%llu ", (unsigned long long)id);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, head, (size_t)hl) != 0)
            continue;
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char line[512];
        snprintf(line, sizeof(line), "%.*s", (int)(n < sizeof(line) - 2 ? n : sizeof(line) - 2), p);
        strcat(line, " ");
        return strstr(line, " drained ") && !strstr(line, " leader ") && !strstr(line, " leads ");
    }
    return -1;
}

/* Whether the status text's members section lists id ("ID ADDR ..." at a line start). */
static int listed_in(const char *text, uint64_t id)
{
    char head[32];
    int hl = snprintf(head, sizeof(head), "%llu ", (unsigned long long)id);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        const char *colon = strchr(p + hl, ':'), *eol = strchr(p, '\n');
        if (!strncmp(p, head, (size_t)hl) && colon && (!eol || colon < eol))
            return 1;             /* a members line: "ID HOST:PORT ..." */
    }
    return 0;
}

/* Polls the status of the member asked until done(text, id) says 1 or the timeout passes
 * (measured from t0). Returns EXIT_OK or EXIT_FAIL after printing why. */
static int wait_status(const copts_t *o, const cluster_status_tls_t *t, uint64_t t0,
                       int (*done)(const char *text, uint64_t id), const char *what,
                       const char *late)
{
    for (;;) {
        cluster_status_t st;
        if (cluster_status_query(o->addr, o->ntls ? t : NULL, 5000, &st, NULL) == 0) {
            int d = done(st.text, o->id);
            cluster_status_free(&st);
            if (d == 1) {
                printf("node %llu %s (after %llu ms)\n", (unsigned long long)o->id, what,
                       (unsigned long long)(mono_ms() - t0));
                return EXIT_OK;
            }
        }
        if (mono_ms() - t0 >= o->timeout_ms) {
            fprintf(stderr, "quorumfs: cluster %s: node %llu %s after %lu ms (quorumfs cluster "
                            "status shows the members; rebalance --dry-run the moves left)\n",
                    o->cmd, (unsigned long long)o->id, late, o->timeout_ms);
            return EXIT_FAIL;
        }
        struct timespec ts = { 0, DRAIN_POLL_MS * 1000000L };
        nanosleep(&ts, NULL);
    }
}

static int drained_done(const char *text, uint64_t id) { return drained_in(text, id); }
static int gone_done(const char *text, uint64_t id) { return !listed_in(text, id); }

/* drain / undrain / add / remove / rebalance: one ADMIN request; drain then waits (unless
 * --no-wait) until the member asked shows id leading nothing, remove until it no longer
 * lists id. */
static int admin_cmd(int argc, char **argv, uint32_t op)
{
    int mode = op == ADMIN_OP_ADD ? WITH_ID_ADDR : op == ADMIN_OP_REBALANCE ? NO_ID : WITH_ID;
    copts_t o = { .cmd = admin_op_name(op),
                  .timeout_ms = op == ADMIN_OP_REMOVE ? 120000 : 30000 };
    int rc = parse(argc, argv, &o, mode);
    if (rc >= 0)
        return rc;
    cluster_status_tls_t t = { o.tls[0], o.tls[1], o.tls[2] };
    frame_admin_t req = { .version = ADMIN_VERSION, .op = op, .id = o.id,
                          .flags = o.dry_run ? ADMIN_DRY_RUN : 0 };
    if (o.addr_new && strlen(o.addr_new) > ADMIN_ADDR_MAX) {
        fprintf(stderr, "quorumfs: cluster add: address longer than %d bytes\n", ADMIN_ADDR_MAX);
        return EXIT_USAGE;
    }
    snprintf(req.addr, sizeof(req.addr), "%s", o.addr_new ? o.addr_new : "");
    cluster_admin_answer_t a;
    char *err = NULL;
    uint64_t t0 = mono_ms();
    uint32_t call_ms = o.timeout_ms < 30000 ? (uint32_t)o.timeout_ms : 30000;
    rc = cluster_admin_call(o.addr, o.ntls ? &t : NULL, call_ms, &req, &a, &err);
    if (rc < 0) {
        fprintf(stderr, "quorumfs: cluster %s: %s\n", o.cmd, err ? err : qerr_str(rc));
        free(err);
        return EXIT_FAIL;
    }
    int code = a.code;
    uint64_t answered_by = a.node_id;
    fprintf(code ? stderr : stdout, "%s%s\n", code ? "quorumfs: " : "",
            a.len ? a.text : strerror(-code));
    cluster_admin_answer_free(&a);
    if (code)
        return EXIT_FAIL;
    if (o.no_wait)
        return EXIT_OK;
    if (op == ADMIN_OP_DRAIN)
        return wait_status(&o, &t, t0, drained_done, "leads no shard", "still leads shards");
    if (op == ADMIN_OP_REMOVE && answered_by == o.id) {
        printf("(node %llu answered itself: it never sees its own removal complete; ask "
               "another member with quorumfs cluster status)\n", (unsigned long long)o.id);
        return EXIT_OK;
    }
    if (op == ADMIN_OP_REMOVE)
        return wait_status(&o, &t, t0, gone_done, "has left the cluster: stop it now",
                           "is still a member");
    return EXIT_OK;
}

int cli_cluster(int argc, char **argv)
{
    if (argc < 1 || !strcmp(argv[0], "-h") || !strcmp(argv[0], "--help"))
        return usage(argc < 1 ? stderr : stdout, argc < 1 ? EXIT_USAGE : EXIT_OK);
    if (!strcmp(argv[0], "status"))
        return status_cmd(argc - 1, argv + 1);
    static const struct {
        const char *name;
        uint32_t op;
    } cmds[] = { { "drain", ADMIN_OP_DRAIN }, { "undrain", ADMIN_OP_UNDRAIN },
                 { "add", ADMIN_OP_ADD }, { "remove", ADMIN_OP_REMOVE },
                 { "rebalance", ADMIN_OP_REBALANCE } };
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (!strcmp(argv[0], cmds[i].name))
            return admin_cmd(argc - 1, argv + 1, cmds[i].op);
    fprintf(stderr, "quorumfs: cluster %s: unknown command (status, drain, undrain, add, "
                    "remove, rebalance)\n", argv[0]);
    return EXIT_USAGE;
}
