/* fs/route.h — from an object to its shard (FILE-API §11 "Placement"): the unit of placement
 * is the entry directly below a namespace (a queue, a lock, a config top-level directory, a
 * cache top-level key or directory, a log, a job, a service), so a whole unit lives on one
 * shard and a rename inside it never crosses shards; a search index spreads its documents
 * over all shards by name. The embedded node has one shard; the cluster hosts many, and every
 * node routes with this same function. Pure. */
#ifndef QFS_FS_ROUTE_H
#define QFS_FS_ROUTE_H

#include <stddef.h>
#include <stdint.h>

/* Writes the placement key of the object at path (namespace-relative, no leading '/') in
 * namespace ns into buf: "<ns>/<unit>". Returns its length, or -1 when path names no unit
 * (the namespace root: it spans every shard) or the key does not fit in size. */
int route_key(int ns, const char *path, char *buf, size_t size);

/* The shard in [0, nshards) of the object at path in ns; 0 for a namespace root. */
uint32_t route_shard(int ns, const char *path, uint32_t nshards);

/* Nonzero when a rename from a to b (both in ns) stays on one shard, i.e. can be one command;
 * otherwise the caller answers EXDEV, as between filesystems. */
int route_same_shard(int ns, const char *a, const char *b, uint32_t nshards);

#endif
