/* fs/cli_cluster.c — `quorumfs cluster ...`, the commands that talk to a running cluster
 * from anywhere (see cli_cluster.h). Today: `status`, which asks one member at its peer
 * address for the status text it publishes every second (cluster/status_client.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cluster/err.h"
#include "cluster/frame.h"
#include "cluster/status_client.h"
#include "fs/cli_cluster.h"

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2

static int usage(FILE *f, int rc)
{
    fprintf(f,
            "usage: quorumfs cluster status --cluster HOST:PORT [--timeout-ms N]\n"
            "                               [--tls-cert F --tls-key F --tls-ca F]\n"
            "Asks the member at HOST:PORT (its peer address, as in --peers) for its view of\n"
            "the cluster: members, shards and their leaders, health. With TLS on the member,\n"
            "give a certificate its CA signed whose subject CN is quorumfs-client (or a\n"
            "node's, quorumfs-<id>), its key and the CA bundle; TLS 1.3 only\n"
            "(docs/TRANSPORT.md \"Status queries\").\n");
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

static int status_cmd(int argc, char **argv)
{
    const char *addr = NULL, *tls[3] = { NULL, NULL, NULL };
    static const char *const tls_names[3] = { "--tls-cert", "--tls-key", "--tls-ca" };
    unsigned long timeout_ms = 5000;
    for (int i = 0; i < argc; i++) {
        int missing = 0, known = 0;
        const char *v;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return usage(stdout, EXIT_OK);
        if ((v = opt_value(argc, argv, &i, "--cluster", &missing))) {
            addr = v;
            known = 1;
        } else if ((v = opt_value(argc, argv, &i, "--timeout-ms", &missing))) {
            char *end;
            errno = 0;
            timeout_ms = strtoul(v, &end, 10);
            if (errno || *end || end == v || timeout_ms == 0 || timeout_ms > 600000) {
                fprintf(stderr, "quorumfs: --timeout-ms takes 1..600000, not '%s'\n", v);
                return EXIT_USAGE;
            }
            known = 1;
        }
        for (int k = 0; k < 3 && !known && !missing; k++)
            if ((v = opt_value(argc, argv, &i, tls_names[k], &missing))) {
                tls[k] = v;
                known = 1;
            }
        if (missing) {
            fprintf(stderr, "quorumfs: %s needs a value\n", argv[i]);
            return EXIT_USAGE;
        }
        if (!known) {
            fprintf(stderr, "quorumfs: cluster status: unknown argument '%s'\n", argv[i]);
            return usage(stderr, EXIT_USAGE);
        }
    }
    if (!addr) {
        fprintf(stderr, "quorumfs: cluster status needs --cluster HOST:PORT\n");
        return usage(stderr, EXIT_USAGE);
    }
    const char *colon = strrchr(addr, ':');
    char *end = NULL;
    unsigned long port = colon ? strtoul(colon + 1, &end, 10) : 0;
    if (!colon || end == colon + 1 || *end || port == 0 || port > 65535) {
        fprintf(stderr, "quorumfs: --cluster %s: not HOST:PORT with a port from 1 to 65535\n",
                addr);
        return EXIT_USAGE;
    }
    int ntls = !!tls[0] + !!tls[1] + !!tls[2];
    if (ntls && ntls < 3) {
        fprintf(stderr, "quorumfs: TLS needs all three of --tls-cert, --tls-key and --tls-ca\n");
        return EXIT_USAGE;
    }
    cluster_status_tls_t t = { tls[0], tls[1], tls[2] };
    cluster_status_t st;
    char *err = NULL;
    int rc = cluster_status_query(addr, ntls ? &t : NULL, (uint32_t)timeout_ms, &st, &err);
    if (rc < 0) {
        fprintf(stderr, "quorumfs: cluster status: %s\n", err ? err : qerr_str(rc));
        free(err);
        return EXIT_FAIL;
    }
    if (st.age_ms == STATUS_AGE_NONE)
        printf("# node %llu at %s has published no status yet\n",
               (unsigned long long)st.node_id, addr);
    else
        printf("# asked node %llu at %s%s; its view %llu ms ago\n",
               (unsigned long long)st.node_id, addr, st.tls ? " over TLS" : "",
               (unsigned long long)st.age_ms);
    fwrite(st.text, 1, st.len, stdout);
    if (st.len && st.text[st.len - 1] != '\n')
        putchar('\n');
    cluster_status_free(&st);
    return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
}

int cli_cluster(int argc, char **argv)
{
    if (argc < 1 || !strcmp(argv[0], "-h") || !strcmp(argv[0], "--help"))
        return usage(argc < 1 ? stderr : stdout, argc < 1 ? EXIT_USAGE : EXIT_OK);
    if (!strcmp(argv[0], "status"))
        return status_cmd(argc - 1, argv + 1);
    fprintf(stderr, "quorumfs: cluster %s: not supported (only 'cluster status' is built; "
                    "membership changes come with issue 10)\n", argv[0]);
    return EXIT_USAGE;
}
