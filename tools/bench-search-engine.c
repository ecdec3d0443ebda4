/* tools/bench-search-engine.c — the search/ query engine (fs/bm25.c) alone, in process: no
 * FUSE, no node. Loads the documents of a directory into S shard states (each placed by
 * name as the node places it), then runs every query of a file R times and prints the
 * engine's queries/s, or (--print) every answer once, so two builds can be compared byte
 * for byte, or (--each) each query's mean time in microseconds. tools/bench-search uses it for the engine's share of a query's cost.
 *
 *   bench-search-engine [--shards S] [--rounds R] [--print | --each] CORPUS_DIR QUERIES
 *
 * QUERIES: one query a line, optionally after "<kind>\t" (tests/integration/search_bm25.py
 * queries). Exit 0, or 1 with a message on a bad argument or file. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "fs/bm25.h"
#include "fs/cmd.h"
#include "fs/ns_sm.h"
#include "fs/route.h"
#include "fs/search_sm.h"
#include "fs/state.h"

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 65536, n = 0;
    char *p = malloc(cap + 1);
    size_t r;
    while (p && (r = fread(p + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *np = realloc(p, 2 * cap + 1);
            if (!np) {
                free(p);
                p = NULL;
                break;
            }
            p = np;
            cap *= 2;
        }
    }
    fclose(f);
    if (p) {
        p[n] = '\0';
        *len = n;
    }
    return p;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int usage(void)
{
    fprintf(stderr, "usage: bench-search-engine [--shards S] [--rounds R] [--print | --each] "
                    "CORPUS_DIR QUERIES\n");
    return 1;
}

int main(int argc, char **argv)
{
    uint32_t shards = 1, rounds = 5;
    int print = 0, each = 0, i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--print") == 0) {
            print = 1;
        } else if (strcmp(argv[i], "--each") == 0) {
            each = 1;
        } else if (i + 1 < argc && strcmp(argv[i], "--shards") == 0) {
            shards = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if (i + 1 < argc && strcmp(argv[i], "--rounds") == 0) {
            rounds = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else {
            return usage();
        }
    }
    if (argc - i != 2 || shards < 1 || shards > 256 || rounds < 1)
        return usage();
    const char *dir = argv[i], *qfile = argv[i + 1];

    state_t **st = calloc(shards, sizeof(*st));
    for (uint32_t k = 0; k < shards; k++) {
        st[k] = state_new(1 << 20);
        if (!st[k]->ns_state[NS_SEARCH])
            search_sm.init(st[k]);
    }
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "bench-search-engine: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    char **names = NULL;
    size_t nn = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        if (nn == cap) {
            cap = cap ? cap * 2 : 256;
            names = realloc(names, cap * sizeof(*names));
        }
        names[nn++] = strdup(de->d_name);
    }
    closedir(d);
    if (nn)
        qsort(names, nn, sizeof(*names), by_name);
    uint64_t idx = 0;
    double t0 = now_s();
    for (size_t j = 0; j < nn; j++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[j]);
        size_t len = 0;
        char *text = slurp(path, &len);
        if (!text || len > SEARCH_DOC_MAX) {
            fprintf(stderr, "bench-search-engine: %s: unreadable or over 1 MiB\n", path);
            return 1;
        }
        snprintf(path, sizeof(path), "bench/%s", names[j]);
        uint32_t k = shards > 1 ? route_shard(NS_SEARCH, path, shards) : 0;
        cmdbuf_t b;
        search_cmd_put(&b, 1000, "bench", names[j], 0, text, len);
        sm_result_t res;
        memset(&res, 0, sizeof(res));
        state_sm_ops.apply(st[k], ++idx, b.p, b.len, &res);
        free(b.p);
        free(text);
        if (res.code != 0) {
            fprintf(stderr, "bench-search-engine: %s: PUT failed (%d)\n", names[j], res.code);
            return 1;
        }
    }
    double tload = now_s() - t0;

    size_t qlen = 0;
    char *qtext = slurp(qfile, &qlen);
    if (!qtext) {
        fprintf(stderr, "bench-search-engine: %s: %s\n", qfile, strerror(errno));
        return 1;
    }
    char **qs = NULL;
    size_t nq = 0;
    cap = 0;
    for (char *line = strtok(qtext, "\n"); line; line = strtok(NULL, "\n")) {
        char *tab = strchr(line, '\t');
        if (nq == cap) {
            cap = cap ? cap * 2 : 256;
            qs = realloc(qs, cap * sizeof(*qs));
        }
        qs[nq++] = tab ? tab + 1 : line;
    }
    if (each) {                           /* each query's mean time over the rounds */
        for (size_t j = 0; j < nq; j++) {
            double t = now_s();
            for (uint32_t r = 0; r < rounds; r++) {
                char *out;
                size_t len;
                bm25_query(st, shards, "bench", qs[j], strlen(qs[j]), &out, &len, NULL);
                free(out);
            }
            printf("%.1f\t%s\n", 1e6 * (now_s() - t) / rounds, qs[j]);
        }
        return 0;
    }
    if (print) {
        for (size_t j = 0; j < nq; j++) {
            char *out;
            size_t len;
            int rc = bm25_query(st, shards, "bench", qs[j], strlen(qs[j]), &out, &len, NULL);
            printf("Q %s\n", qs[j]);
            if (rc < 0)
                printf("ERR %d\n", -rc);
            else
                fwrite(out ? out : "", 1, len, stdout);
            free(out);
        }
        return 0;
    }
    t0 = now_s();
    size_t runs = 0, bytes = 0;
    for (uint32_t r = 0; r < rounds; r++) {
        for (size_t j = 0; j < nq; j++) {
            char *out;
            size_t len;
            if (bm25_query(st, shards, "bench", qs[j], strlen(qs[j]), &out, &len, NULL) == 0)
                bytes += len;
            free(out);
            runs++;
        }
    }
    double tq = now_s() - t0;
    printf("engine: %zu documents on %u shard(s) indexed in %.2f s; %zu queries in %.3f s: "
           "%.0f queries/s on one thread (%.1f us each, %zu result bytes)\n",
           nn, shards, tload, runs, tq, (double)runs / tq, 1e6 * tq / (double)runs, bytes);
    return 0;                             /* the states go with the process */
}
