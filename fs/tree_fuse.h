/* fs/tree_fuse.h — the FUSE front shared by the namespaces whose files are objects of the
 * shard's tree (fs/tree_sm.h): lookup and attributes, directories, value files with their
 * write protocol (one committed step per write request, creation at the first write or
 * close, O_TRUNC with the first write, the put-back after EFBIG), rename and extended
 * attributes. It reads the state only through the tree's read API and builds every command
 * with the tree's encoders. What a namespace adds, it adds through the tree_front_t named in
 * its ns_front_t (cache/: fs/cache_fuse.c, config/: fs/config_fuse.c). A namespace that is
 * not built yet is served here too: its root, empty, where creation gives EOPNOTSUPP.
 *
 * Handlers reach the node and the mount through the request (mount_of), and the
 * namespace's front context through ns_front_ctx. Locking: the state lock (read) is held
 * only to read objects, never while proposing; an open value file's mu guards its write
 * state and is held while a reply points into its snapshot. */
#ifndef QFS_FS_TREE_FUSE_H
#define QFS_FS_TREE_FUSE_H

#include <fuse_lowlevel.h>
#include "fs/mount.h"
#include "fs/state.h"

typedef struct tree_front {
    /* An attribute write (set, or remove when remove is nonzero) of name on o, checked
     * before it is proposed: 0 to propose it (apply checks again), or -errno (config/: EPERM
     * for user.version). The read lock is held. NULL: -ENOTSUP. */
    int (*check_setxattr)(const obj_t *o, const char *name, const void *v, size_t n,
                          int remove);
    /* Whether a read of file o should be noted (read lock held), and the note, made after
     * the lock is released (cache/: a TOUCH the front's sweep proposes). */
    int (*read_touches)(const state_t *st, const obj_t *o);
    void (*note_read)(void *ctx, const char *path);

    /* Control entries: names in a directory that are not objects (config/: `.events`,
     * `.events@rev`, `file@rev`), with inodes from mount_ctl_get keyed by this namespace.
     * ctl_lookup fills e for name in dir or returns -ENOENT; the read lock is held. */
    int (*ctl_lookup)(mount_t *m, const state_t *st, const obj_t *dir, const char *name,
                      struct fuse_entry_param *e);
    /* Nonzero when name is reserved for control entries (unlink/rmdir: EPERM). */
    int (*ctl_name)(const char *name);
    /* Attributes of control entry c (inode ino); the read lock is held. 0 or -errno. */
    int (*ctl_getattr)(const state_t *st, uint64_t ino, const mount_ctl_t *c, struct stat *s);
    /* Opens control entry c for reading, the read lock held: either *text, a blob reference
     * the open serves, or *handle, read through ctl_read and closed by ctl_release (called
     * with no lock held). ctx is the front's context. 0 or -errno. */
    int (*ctl_open)(void *ctx, const state_t *st, const mount_ctl_t *c, int flags,
                    blob_t **text, void **handle);
    void (*ctl_read)(fuse_req_t req, void *handle, size_t size, off_t off);
    /* poll(2) on an open handle: replies with fuse_reply_poll (POLLIN when a read would not
     * block now) and keeps or destroys ph (fuse_pollhandle_destroy) as it likes; a kept ph
     * is notified (fuse_lowlevel_notify_poll) when a read would no longer block, then
     * destroyed. NULL: always readable. */
    void (*ctl_poll)(fuse_req_t req, void *handle, struct fuse_pollhandle *ph);
    void (*ctl_release)(void *handle);
} tree_front_t;

/* The operations mount.c routes to for the inodes of a tree namespace (objects, pending
 * creations, control entries). */
extern const struct fuse_lowlevel_ops tree_fuse_ops;

#endif
