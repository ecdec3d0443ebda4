/* fs/admin.h — cluster administration requests (`quorumfs cluster drain|undrain|add|remove|
 * rebalance`, docs/OPERATIONS.md): the op codes the CLI (fs/cli_cluster.c) sends in an
 * ADMIN frame (cluster/frame.h, to any member's peer address) and what a node does with one
 * (admin_run, called by fs/node.c on a thread of its own for each request). */
#ifndef QFS_FS_ADMIN_H
#define QFS_FS_ADMIN_H

#include <stdint.h>
#include "cluster/frame.h"

struct node;

enum admin_op {
    ADMIN_OP_DRAIN = 1,          /* id: move every leadership away from that member */
    ADMIN_OP_UNDRAIN,            /* id: let it lead again */
    ADMIN_OP_ADD,                /* id, addr: a new member (joining); text: how to start it */
    ADMIN_OP_REMOVE,             /* id: the member leaves once its replicas moved away */
    ADMIN_OP_REBALANCE,          /* text: the moves left (rebalancing runs by itself; flags
                                    ADMIN_DRY_RUN says the caller only wants the plan) */
};
#define ADMIN_DRY_RUN 1u

/* The CLI's name of op ("drain", ...), or NULL for an unknown one. */
const char *admin_op_name(uint32_t op);

/* Runs request req on node n, blocking for the proposals it makes (each bounded by the
 * node's operation timeout). Returns 0 or a negative errno value, and sets *text to a
 * malloc'ed line for the operator (NULL when out of memory). */
int admin_run(struct node *n, const frame_admin_t *req, char **text);

#endif
