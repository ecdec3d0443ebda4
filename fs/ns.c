/* fs/ns.c — the registry of namespace fronts (see ns.h); the state machines register in
 * fs/ns_sm.c. */
#include "fs/cache.h"
#include "fs/config.h"
#include "fs/jobs.h"
#include "fs/locks.h"
#include "fs/logs.h"
#include "fs/mount.h"
#include "fs/node.h"
#include "fs/ns.h"
#include "fs/queues.h"
#include "fs/search.h"
#include "fs/services.h"

const ns_front_t *const ns_fronts[NS__COUNT] = {
    [NS_NONE] = NULL,
    [NS_CACHE] = &cache_front,
    [NS_CONFIG] = &config_front,
    [NS_JOBS] = &jobs_front,
    [NS_LOCKS] = &locks_front,
    [NS_LOGS] = &logs_front,
    [NS_QUEUES] = &queues_front,
    [NS_SEARCH] = &search_front,
    [NS_SERVICES] = &services_front,
};

void *ns_front_ctx(fuse_req_t req, int ns)
{
    return node_front(mount_node(mount_of(req)), ns);
}
