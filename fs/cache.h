/* fs/cache.h — the cache/ namespace (FILE-API §4). Two halves: the deterministic state
 * machine, fs/cache_sm.h (commands, read API, invariants), and its front, fs/cache_fuse.c,
 * registered here: the generic tree front plus cache's attribute checks, read touches and
 * the leader-side sweep (TOUCH and EXPIRE batches). */
#ifndef QFS_FS_CACHE_H
#define QFS_FS_CACHE_H

#include "fs/cache_sm.h"
#include "fs/ns.h"

extern const ns_front_t cache_front;

#endif
