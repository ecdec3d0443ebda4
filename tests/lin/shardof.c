/* tests/lin/shardof.c — prints the shard that holds a path of the mount, as every node
 * routes it (fs/route.c, FILE-API §11 "Placement"), so a test can kill the leader of the
 * shard its keys live on (.cluster/shards gives each shard's leader).
 *
 *   shardof NSHARDS PATH...     PATH relative to the mount ("cache/lin/k0", "queues/q");
 *                               one shard number per line */
#include "fs/ns_ids.h"
#include "fs/route.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: shardof NSHARDS PATH...\n");
        return 2;
    }
    char *end;
    errno = 0;
    long s = strtol(argv[1], &end, 10);
    if (errno || end == argv[1] || *end || s < 1 || s > 256) {
        fprintf(stderr, "shardof: NSHARDS from 1 to 256, not '%s'\n", argv[1]);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        const char *p = argv[i];
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        int ns = NS_NONE;
        for (int k = NS_NONE + 1; k < NS__COUNT; k++)
            if (strlen(ns_names[k]) == n && !strncmp(ns_names[k], p, n))
                ns = k;
        if (ns == NS_NONE || !slash || !slash[1]) {
            fprintf(stderr, "shardof: '%s' is not NAMESPACE/OBJECT\n", p);
            return 2;
        }
        printf("%u\n", route_shard(ns, slash + 1, (uint32_t)s));
    }
    return 0;
}
