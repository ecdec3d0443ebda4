/* fs/status.h — the read-only `.cluster/` files: members, shards, health and metrics,
 * rendered from the node's true values at open time (one version per open). */
#ifndef QFS_FS_STATUS_H
#define QFS_FS_STATUS_H

#include <stddef.h>
#include "fs/node.h"

enum status_file { STATUS_MEMBERS, STATUS_SHARDS, STATUS_HEALTH, STATUS_METRICS, STATUS__COUNT };
extern const char *const status_names[STATUS__COUNT];

/* Renders file which into a malloc'ed *buf of *len bytes. Returns 0 or -ENOMEM. */
int status_render(node_t *n, int which, char **buf, size_t *len);

/* What `quorumfs cluster status --cluster HOST:PORT` prints when it asks this node: the
 * node's id and address, then the members, shards and health files under headings
 * ("members (id address state ...):" ...). Malloc'ed into *buf; 0 or -ENOMEM. */
int status_render_summary(node_t *n, char **buf, size_t *len);

#endif
