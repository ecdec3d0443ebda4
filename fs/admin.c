/* fs/admin.c — what a node does with an administration request (see admin.h). Drain and
 * undrain write the member's drained flag into the meta group's record (node_drain); each
 * node's leader balancer then moves the leaderships. The membership changes (add, remove,
 * rebalance) are not built yet and say so. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fs/admin.h"
#include "fs/node.h"

static const char *const op_names[] = {
    [ADMIN_OP_DRAIN] = "drain", [ADMIN_OP_UNDRAIN] = "undrain", [ADMIN_OP_ADD] = "add",
    [ADMIN_OP_REMOVE] = "remove", [ADMIN_OP_REBALANCE] = "rebalance",
};

const char *admin_op_name(uint32_t op)
{
    return op < sizeof(op_names) / sizeof(op_names[0]) ? op_names[op] : NULL;
}

static int say(char **text, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int say(char **text, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(text, fmt, ap) < 0)
        *text = NULL;
    va_end(ap);
    return rc;
}

int admin_run(struct node *n, const frame_admin_t *req, char **text)
{
    *text = NULL;
    const char *name = admin_op_name(req->op);
    switch (req->op) {
    case ADMIN_OP_DRAIN:
    case ADMIN_OP_UNDRAIN: {
        int on = req->op == ADMIN_OP_DRAIN;
        int rc = node_drain(n, req->id, on);
        if (rc == -ENOENT)
            return say(text, rc, "%s: node %llu is not a member of this cluster", name,
                       (unsigned long long)req->id);
        if (rc == -EOPNOTSUPP)
            return say(text, rc, "%s: an embedded node has no cluster", name);
        if (rc == -EBUSY)
            return say(text, rc, "%s: refused: with node %llu drained too, some shard would "
                                 "have no voter left to lead it (undrain another first)",
                       name, (unsigned long long)req->id);
        if (rc < 0)
            return say(text, rc, "%s of node %llu not committed: %s", name,
                       (unsigned long long)req->id, strerror(-rc));
        return say(text, 0, on ? "node %llu drained: the leaders of its shards move to other "
                                 "voters"
                               : "node %llu undrained: it leads its preferred shards again",
                   (unsigned long long)req->id);
    }
    case ADMIN_OP_ADD:
    case ADMIN_OP_REMOVE:
    case ADMIN_OP_REBALANCE:
        return say(text, -EOPNOTSUPP, "cluster %s: not supported yet (docs/MEMBERSHIP.md: the "
                                      "member record and drain are built, the mover is not)",
                   name);
    default:
        return say(text, -EINVAL, "unknown administration request %u", req->op);
    }
}
