/* fs/admin.c — what a node does with an administration request (see admin.h). Drain and
 * undrain write the member's drained flag into the meta group's record (node_drain); each
 * node's leader balancer then moves the leaderships. Add and remove write a member into the
 * record as joining or mark it leaving (node_member_add/_remove); every node's mover
 * (cluster/mover.h) then moves the groups' members. Rebalance shows the moves left. */
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
    case ADMIN_OP_ADD: {
        char *how = NULL;
        int rc = node_member_add(n, req->id, req->addr, &how);
        unsigned long long id = (unsigned long long)req->id;
        if (rc == 0) {
            if (how) {
                *text = how;
                return 0;
            }
            return say(text, 0, "node %llu added (joining)", id);
        }
        free(how);
        switch (rc) {
        case -EOPNOTSUPP: return say(text, rc, "add: an embedded node has no cluster");
        case -EINVAL: return say(text, rc, "add: node ids are 1 to 4095, not %llu", id);
        case -EDESTADDRREQ:
            return say(text, rc, "add: '%s' is not HOST:PORT (printable, no spaces, a port "
                                 "from 1 to 65535; [v6]:PORT for IPv6)", req->addr);
        case -EEXIST: return say(text, rc, "add: node %llu is a member already", id);
        case -EADDRINUSE:
            return say(text, rc, "add: another member has the address %s", req->addr);
        case -ENOSPC:
            return say(text, rc, "add: the cluster has 16 members, the most a shard's Raft "
                                 "group holds");
        default:
            return say(text, rc, "add of node %llu not committed: %s", id, strerror(-rc));
        }
    }
    case ADMIN_OP_REMOVE: {
        int rc = node_member_remove(n, req->id);
        unsigned long long id = (unsigned long long)req->id;
        switch (rc) {
        case 0:
            return say(text, 0, "node %llu is leaving: its replicas and leaderships move to "
                                "the other members, then it leaves the member list; stop it "
                                "once `quorumfs cluster status` no longer lists it", id);
        case -EOPNOTSUPP: return say(text, rc, "remove: an embedded node has no cluster");
        case -ENOENT:
            return say(text, rc, "remove: node %llu is not a member of this cluster", id);
        case -EBUSY:
            return say(text, rc, "remove: refused: the shards need %u voters, and without "
                                 "node %llu fewer active members would be left (add one "
                                 "first)", node_nreplicas(n), id);
        default:
            return say(text, rc, "remove of node %llu not committed: %s", id, strerror(-rc));
        }
    }
    case ADMIN_OP_REBALANCE: {
        char *plan = NULL;
        int rc = node_rebalance_plan(n, &plan);
        if (rc == -EOPNOTSUPP)
            return say(text, rc, "rebalance: an embedded node has no cluster");
        if (rc < 0 || !plan)
            return say(text, rc < 0 ? rc : -ENOMEM, "rebalance: out of memory");
        rc = say(text, 0, "%s%s", req->flags & ADMIN_DRY_RUN ? ""
                 : "# rebalancing runs by itself after every membership change; the moves "
                   "left, as this node sees them:\n", plan);
        free(plan);
        return rc;
    }
    default:
        return say(text, -EINVAL, "unknown administration request %u", req->op);
    }
}
