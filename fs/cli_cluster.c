/* fs/cli_cluster.c — `quorumfs cluster ...`, the commands that talk to a running cluster
 * from anywhere (see cli_cluster.h): `status` asks one member at its peer address for the
 * status text it publishes every second (cluster/status_client.h); `drain`, `undrain` (and
 * `add`, `remove`, `rebalance`, which the nodes answer "not supported yet") send one ADMIN
 * request there (cluster/admin_client.h, fs/admin.h). */
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
            "OPTIONS: [--timeout-ms N] [--tls-cert F --tls-key F --tls-ca F]\n"
            "status asks the member at HOST:PORT (its peer address, as in --peers) for its\n"
            "view of the cluster: members, shards and their leaders, health.\n"
            "drain moves every shard's leadership away from member ID (for maintenance) and\n"
            "waits, up to --timeout-ms (default 30000), until that member leads nothing;\n"
            "undrain lets it lead again (docs/OPERATIONS.md \"Draining a node\").\n"
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
    uint64_t id;                 /* drain/undrain: the member (0: none given) */
    int no_wait;
} copts_t;

/* Parses argv into *o (with_id: one ID argument is required). Returns -1 when it went on,
 * else the exit code to return (usage printed). */
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
        } else if (with_id && !o->id && argv[i][0] != '-') {
            char *end;
            errno = 0;
            unsigned long long id = strtoull(argv[i], &end, 10);
            if (errno || *end || end == argv[i] || id == 0) {
                fprintf(stderr, "quorumfs: cluster %s: '%s' is not a node id (1, 2, ...)\n",
                        o->cmd, argv[i]);
                return EXIT_USAGE;
            }
            o->id = id;
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

/* drain / undrain ID: one ADMIN request; drain then waits (unless --no-wait) until the
 * member asked shows id leading nothing. */
static int drain_cmd(int argc, char **argv, uint32_t op)
{
    copts_t o = { .cmd = admin_op_name(op), .timeout_ms = 30000 };
    int rc = parse(argc, argv, &o, 1);
    if (rc >= 0)
        return rc;
    cluster_status_tls_t t = { o.tls[0], o.tls[1], o.tls[2] };
    frame_admin_t req = { .version = ADMIN_VERSION, .op = op, .id = o.id };
    cluster_admin_answer_t a;
    char *err = NULL;
    uint64_t t0 = mono_ms();
    rc = cluster_admin_call(o.addr, o.ntls ? &t : NULL, (uint32_t)o.timeout_ms, &req, &a, &err);
    if (rc < 0) {
        fprintf(stderr, "quorumfs: cluster %s: %s\n", o.cmd, err ? err : qerr_str(rc));
        free(err);
        return EXIT_FAIL;
    }
    int code = a.code;
    fprintf(code ? stderr : stdout, "%s%s\n", code ? "quorumfs: " : "",
            a.len ? a.text : strerror(-code));
    cluster_admin_answer_free(&a);
    if (code)
        return EXIT_FAIL;
    if (op != ADMIN_OP_DRAIN || o.no_wait)
        return EXIT_OK;
    for (;;) {
        cluster_status_t st;
        if (cluster_status_query(o.addr, o.ntls ? &t : NULL, 5000, &st, NULL) == 0) {
            int d = drained_in(st.text, o.id);
            cluster_status_free(&st);
            if (d == 1) {
                printf("node %llu leads no shard (after %llu ms)\n", (unsigned long long)o.id,
                       (unsigned long long)(mono_ms() - t0));
                return EXIT_OK;
            }
        }
        if (mono_ms() - t0 >= o.timeout_ms) {
            fprintf(stderr, "quorumfs: cluster drain: node %llu still leads shards after %lu "
                            "ms (quorumfs cluster status shows which)\n",
                    (unsigned long long)o.id, o.timeout_ms);
            return EXIT_FAIL;
        }
        struct timespec ts = { 0, DRAIN_POLL_MS * 1000000L };
        nanosleep(&ts, NULL);
    }
}

int cli_cluster(int argc, char **argv)
{
    if (argc < 1 || !strcmp(argv[0], "-h") || !strcmp(argv[0], "--help"))
        return usage(argc < 1 ? stderr : stdout, argc < 1 ? EXIT_USAGE : EXIT_OK);
    if (!strcmp(argv[0], "status"))
        return status_cmd(argc - 1, argv + 1);
    if (!strcmp(argv[0], "drain"))
        return drain_cmd(argc - 1, argv + 1, ADMIN_OP_DRAIN);
    if (!strcmp(argv[0], "undrain"))
        return drain_cmd(argc - 1, argv + 1, ADMIN_OP_UNDRAIN);
    fprintf(stderr, "quorumfs: cluster %s: not supported (built: status, drain, undrain; adding "
                    "and removing members and rebalancing are not yet: docs/MEMBERSHIP.md)\n",
            argv[0]);
    return EXIT_USAGE;
}
