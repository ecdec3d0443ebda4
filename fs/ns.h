/* fs/ns.h — namespace modules: how a namespace with its own file model (queues/, locks/,
 * later logs/, jobs/, search/, services/) plugs into the mount without touching the generic
 * tree code. A module owns its part of the state machine (apply, snapshot, restore), its
 * leader-side timers (sweep), and the FUSE operations on its inodes: fs/mount.c routes every
 * request whose inode (or parent inode) belongs to the module's namespace to module->fuse.
 *
 * Inodes of a module: its namespace root NS_ROOT_ID(ns), state objects whose ns is the
 * module's (if it uses the generic object tree), and any inode with NS_INO_BIT set and the
 * namespace in bits 56..60 (see NS_INO()), numbered as the module likes. */
#ifndef QFS_FS_NS_H
#define QFS_FS_NS_H

#include <fuse_lowlevel.h>
#include "cluster/sm.h"
#include "fs/cmd.h"
#include "fs/snapio.h"
#include "fs/state.h"

#define NS_INO_BIT (1ull << 61)
#define NS_INO(ns, local) (NS_INO_BIT | ((uint64_t)(ns) << 56) | ((local) & ((1ull << 56) - 1)))
#define NS_INO_NS(ino) ((int)(((ino) >> 56) & 0x1f))

struct node;

typedef struct ns_module {
    /* State machine side; all called with the state write lock held, deterministic. */
    int (*init)(state_t *st);        /* allocate st->ns_state[ns]; 0 or -QERR_NOMEM */
    void (*free)(state_t *st);       /* release st->ns_state[ns] (also before a restore) */
    /* Applies a command whose header names this namespace; returns 0 or -errno. */
    int (*apply)(state_t *st, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res);
    void (*snapshot)(const state_t *st, snapout_t *o);   /* read lock held */
    int (*restore)(state_t *st, snapin_t *in);           /* after init; 0 or -QERR_* */
    /* Called after each apply of a command of this namespace, write lock held: the place to
     * answer parked blocking requests (pop, claim, lock waits). */
    void (*on_apply)(state_t *st);

    /* Node side (no lock held; may propose). */
    void (*start)(struct node *n);   /* after the node opened, before the mount serves */
    void (*sweep)(struct node *n);   /* every sweep period (100 ms) on the leader */
    void (*stop)(struct node *n);    /* at unmount, before the node closes */

    /* The kernel forgot nlookup references to a module inode (forget and forget_multi). */
    void (*forget)(fuse_ino_t ino, uint64_t nlookup);

    /* FUSE side: operations on this namespace's inodes, called exactly as libfuse would call
     * them (the module replies). A NULL entry makes mount.c reply EOPNOTSUPP (never ENOSYS,
     * which would switch the operation off for the whole mount). forget goes to the hook
     * above; init, destroy and statfs are never routed. */
    const struct fuse_lowlevel_ops *fuse;
} ns_module_t;

/* The registry, indexed by enum ns_id; NULL where the generic tree (cache/, config/) or
 * "not supported" applies. Defined in fs/ns.c. */
extern const ns_module_t *const ns_modules[NS__COUNT];

#endif
