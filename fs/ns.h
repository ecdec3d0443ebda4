/* fs/ns.h — the FUSE half of a namespace module: how a namespace (cache/, config/, queues/,
 * locks/, later logs/, jobs/, search/, services/) serves its files, proposes its commands and
 * delivers the effects its state machine (fs/ns_sm.h) emits. fs/mount.c routes every request
 * whose inode (or parent inode) belongs to the namespace to front->fuse. A namespace whose
 * files are objects of the shard's tree uses the generic tree front (fs/tree_fuse.h) as its
 * fuse operations and adds its own part through front->tree.
 *
 * A front keeps its tables (open files, parked requests) in a context it creates per node
 * (start); handlers reach it through the request: ns_front_ctx(req, ns), which goes through
 * fuse_req_userdata() (the mount, fs/mount.h, and its node), never through a process-wide
 * global. The state's delivery
 * hook (fs/node.c) hands each effect to front->deliver with that context, after the state
 * lock was released.
 *
 * Inodes of a module: its namespace root NS_ROOT_ID(ns) and any inode with NS_INO_BIT set
 * and the namespace in bits 56..60 (see NS_INO()), numbered as the module likes. */
#ifndef QFS_FS_NS_H
#define QFS_FS_NS_H

#include <fuse_lowlevel.h>
#include "fs/effects.h"
#include "fs/state.h"

#define NS_INO_BIT (1ull << 61)
#define NS_INO(ns, local) (NS_INO_BIT | ((uint64_t)(ns) << 56) | ((local) & ((1ull << 56) - 1)))
#define NS_INO_NS(ino) ((int)(((ino) >> 56) & 0x1f))
/* A module inode of a sharded namespace carries its shard in bits 48..55 of the local part
 * (shard 0, the embedded node's only one, leaves the number as it was): */
#define NS_LOCAL_BITS 48
#define NS_LOCAL_MAX ((1ull << NS_LOCAL_BITS) - 1)
#define NS_SHARD_INO(ns, shard, local) \
    NS_INO(ns, ((uint64_t)(shard) << NS_LOCAL_BITS) | ((local) & NS_LOCAL_MAX))
#define NS_INO_SHARD(ino) ((uint32_t)(((ino) >> NS_LOCAL_BITS) & 0xff))
#define NS_INO_LOCAL(ino) ((uint64_t)(ino) & NS_LOCAL_MAX)

struct node;

typedef struct ns_front {
    /* Node side (no lock held; may propose). start creates the front's context after the
     * node opened (state restored and replayed, session open), before the mount serves;
     * returns NULL only on out of memory. stop runs at node close, once no request, sweep
     * or delivery can reach ctx any more, and frees it. */
    void *(*start)(struct node *n);
    /* every sweep period (100 ms) on every node; what only the shard leader may propose
     * (expiries, ending silent sessions) the hook guards with node_is_leader() */
    void (*sweep)(void *ctx);
    /* Optional (NULL: none). At node close (node_quiesce), before the node's session ends
     * and its groups close, with no lock held: the front stops work of its own that would
     * propose later (jobs/ kills its runs' process groups and joins its runners). Requests,
     * sweeps and deliveries may still reach ctx afterwards. */
    void (*quiesce)(void *ctx);
    void (*stop)(void *ctx);

    /* An effect of this namespace, after the apply that emitted it released the state
     * lock; called on the applying thread, one effect at a time, in log order. The hook may
     * take over the effect's owned fields (setting them NULL). Effects for other nodes'
     * sessions are ignored. */
    void (*deliver)(void *ctx, effect_t *e);

    /* The kernel forgot nlookup references to a module inode (forget and forget_multi). */
    void (*forget)(void *ctx, fuse_ino_t ino, uint64_t nlookup);

    /* FUSE operations on this namespace's inodes, called exactly as libfuse would call them
     * (the module replies). A NULL entry makes mount.c reply EOPNOTSUPP (never ENOSYS, which
     * would switch the operation off for the whole mount). forget goes to the hook above;
     * init, destroy and statfs are never routed. NULL: the generic tree front serves it. */
    const struct fuse_lowlevel_ops *fuse;

    /* With fuse = &tree_fuse_ops: what the namespace adds to the generic tree front. */
    const struct tree_front *tree;

    /* Optional, for a module inode ino of this namespace: 1 when the operation about to be
     * routed (the lookup of child name in ino; else, name NULL, the open of ino when open is
     * 1, any other reading operation on ino when 0) reads nothing a cluster read barrier
     * would make fresher, so fs/mount.c skips the barrier. Only for operations whose outcome
     * the next step decides anyway through a proposal (or a barrier of its own); NULL: every
     * such operation takes the barrier. No lock held. */
    int (*barrier_free)(fuse_ino_t ino, const char *name, int open);
} ns_front_t;

/* The registry, indexed by enum ns_id; NULL where there is no front (a namespace not built
 * yet: the generic tree front serves its empty root). Defined in fs/ns.c. */
extern const ns_front_t *const ns_fronts[NS__COUNT];

/* The context of namespace ns's front for the node that serves req (NULL if none). */
void *ns_front_ctx(fuse_req_t req, int ns);

#endif
