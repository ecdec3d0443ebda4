/* fs/cache.h — the cache/ namespace (FILE-API §4). Two halves: the deterministic state
 * machine, fs/cache_sm.h (commands, read API, invariants), and its front, which serves the
 * files on the generic tree front. */
#ifndef QFS_FS_CACHE_H
#define QFS_FS_CACHE_H

#include "fs/cache_sm.h"

#endif
