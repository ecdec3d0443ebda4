/* fs/route.c — placement keys and shards of objects (see route.h). */
#include <stdio.h>
#include <string.h>
#include "cluster/placement.h"
#include "fs/names.h"
#include "fs/ns_ids.h"
#include "fs/route.h"

int route_key(int ns, const char *path, char *buf, size_t size)
{
    if (ns <= NS_NONE || ns >= NS__COUNT || !path || !*path)
        return -1;
    size_t n = strlen(path);
    if (ns == NS_SEARCH) {
        /* a document ("index/doc") is placed by its whole name; an index spans all shards */
        if (!strchr(path, '/'))
            return -1;
    } else {
        const char *slash = strchr(path, '/');
        if (slash)
            n = (size_t)(slash - path);
        /* config/'s history and watch forms of a top-level name ("a@41", ".events@7") are
         * the unit of "a" (".events"): they must reach its shard */
        size_t base;
        uint64_t rev;
        if (ns == NS_CONFIG && names_split_rev(path, n, &base, &rev) == 0)
            n = base;
    }
    int len = snprintf(buf, size, "%s/%.*s", ns_names[ns], (int)n, path);
    return len < 0 || (size_t)len >= size ? -1 : len;
}

uint32_t route_shard(int ns, const char *path, uint32_t nshards)
{
    char key[4096 + 16];
    int len = route_key(ns, path, key, sizeof(key));
    return len < 0 ? 0 : shard_for_key(key, (size_t)len, nshards);
}

int route_same_shard(int ns, const char *a, const char *b, uint32_t nshards)
{
    return nshards == 1 || route_shard(ns, a, nshards) == route_shard(ns, b, nshards);
}
