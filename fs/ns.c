/* fs/ns.c — the registry of namespace modules (see ns.h). A namespace without a module is
 * either served by the generic object tree (cache/, config/) or refuses creation with
 * EOPNOTSUPP ("not supported yet"). */
#include "fs/locks.h"
#include "fs/ns.h"
#include "fs/queues.h"

const ns_module_t *const ns_modules[NS__COUNT] = {
    [NS_NONE] = NULL,
    [NS_LOCKS] = &locks_module,
    [NS_QUEUES] = &queues_module,
};
