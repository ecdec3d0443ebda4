/* fs/ns.c — the registry of namespace fronts (see ns.h); the state machines register in
 * fs/ns_sm.c. config/ has a front only for its `.events` watches (fs/watch.c); its files
 * are served by fs/mount.c. */
#include "fs/locks.h"
#include "fs/node.h"
#include "fs/ns.h"
#include "fs/queues.h"
#include "fs/watch.h"

const ns_front_t *const ns_fronts[NS__COUNT] = {
    [NS_NONE] = NULL,
    [NS_CONFIG] = &watch_front,
    [NS_LOCKS] = &locks_front,
    [NS_QUEUES] = &queues_front,
};

void *ns_front_ctx(fuse_req_t req, int ns)
{
    return node_front(fuse_req_userdata(req), ns);
}
