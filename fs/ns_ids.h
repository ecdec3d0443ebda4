/* fs/ns_ids.h — the namespaces of the mount: their ids (the `ns` byte of every command, the
 * top-level directory they own) and names. Shared by the state-machine halves and the
 * fronts; the registries that give each id its modules are fs/ns_sm.c and fs/ns.c. */
#ifndef QFS_FS_NS_IDS_H
#define QFS_FS_NS_IDS_H

#include <stdint.h>

enum ns_id {
    NS_NONE = 0,
    NS_CACHE, NS_CONFIG, NS_JOBS, NS_LOCKS, NS_LOGS, NS_QUEUES, NS_SEARCH, NS_SERVICES,
    NS__COUNT
};

/* Each namespace has a root directory whose id (and inode) is NS_ROOT_ID(ns); the mount
 * root is 1 (FUSE_ROOT_ID). */
#define NS_ROOT_ID(ns) ((uint64_t)(ns) + 1)

extern const char *const ns_names[NS__COUNT];  /* "cache", "config", ...; [0] = NULL */

#endif
