/* fs/mount.h — the FUSE session of a node: the mount root and `.cluster/`, routing of every
 * other request to the front of the namespace that owns its inode (fs/ns.h), and the inode
 * numbers that are not objects yet: control entries counted by kernel lookups, and files a
 * proposer created but whose creation has not committed. Its per-node context (mount_t) is
 * the session's userdata, so handlers reach it, the node and the fronts' contexts from a
 * request (mount_of, ns_front_ctx); there is no process-wide mount state. */
#ifndef QFS_FS_MOUNT_H
#define QFS_FS_MOUNT_H

#include <fuse_lowlevel.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include "fs/node.h"

struct fuse_args;
typedef struct mount mount_t;

/* Mounts at mountpoint and serves until unmounted or signalled (SIGTERM, SIGINT,
 * `fusermount3 -u`). SIGHUP does not stop it: a cluster node reloads its TLS certificates
 * for new connections (transport_reload_tls), the embedded node logs that it ignores it. ready, if not NULL, is called once the mount is live.
 * Returns 0 on a clean unmount, or -1 after printing why the mount failed. */
int mount_serve(node_t *node, const char *mountpoint, struct fuse_args *args,
                void (*ready)(void *arg), void *ready_arg);

/* The mount serving req, and its node. */
mount_t *mount_of(fuse_req_t req);
node_t *mount_node(const mount_t *m);
/* The session serving the mount's requests (for the kernel notifications of libfuse:
 * fuse_lowlevel_notify_*; valid while requests are served, until node_quiesce returns). */
struct fuse_session *mount_session(const mount_t *m);
/* The shard that holds what an operation on inode ino names (on its child name, when name is
 * not NULL): a namespace root's child by route (node_shard_of), a tree object or control
 * entry by its object, a pending creation by its path, a module inode by its shard bits.
 * 0 for a namespace root itself (which spans every shard: its listings visit each) and for
 * what no shard holds. */
uint32_t mount_shard_of(mount_t *m, uint64_t ino, const char *name);

/* Fills s for any inode of the mount: mode (type and permissions), size, mtime (ms) as all
 * three times, the mount's owner. */
void mount_stat(struct stat *s, uint64_t ino, mode_t mode, off_t size, uint64_t mtime_ms);

/* Answers an open (e NULL) or a create (e: the new entry) with the handle fh, as direct_io
 * (the kernel caches no file data), or with -rc when rc < 0. Returns nonzero when fh was
 * not handed to the kernel (an error answer, or a reply that failed): the caller frees it. */
int mount_reply_open(fuse_req_t req, int rc, void *fh, struct fuse_file_info *fi,
                     const struct fuse_entry_param *e);

/* How many descriptors process pid holds on inode ino of this mount (from
 * /proc/<pid>/fdinfo; nothing is sent to the mount), or -1 when it cannot tell. flags < 0
 * counts any descriptor; otherwise only descriptors whose access mode and O_APPEND are
 * those of flags. flush handlers use it to tell a close() that ends a process's use of an
 * open file description from a shell's dup2()+close() before it writes (a dup has the
 * description's flags; another description opened otherwise, such as `exec 6>>f` beside
 * `: > f`, does not count). */
int mount_open_count(const mount_t *m, pid_t pid, uint64_t ino, int flags);
/* Transitional (fs/queues_fuse.c): the same for the mount this process made last. */
int mount_still_open_by(pid_t pid, uint64_t ino);

/* ---- control entries: inodes of names that are not objects (config/'s `.events` and
 * `file@rev`), numbered by the mount and counted by kernel lookups. A front keys them by
 * (kind, obj, aux) as it likes; requests on them are routed to the front of ns. ---- */

typedef struct mount_ctl {
    uint8_t ns;
    uint64_t kind, obj, aux;
} mount_ctl_t;

/* Nonzero for the inode of a control entry. */
int mount_is_ctl(uint64_t ino);
/* The inode of control entry c, created on first use; counts one kernel lookup. Returns 0
 * when out of memory. */
uint64_t mount_ctl_get(mount_t *m, const mount_ctl_t *c);
/* The entry of inode ino: 0 and *out, or -ENOENT (forgotten). */
int mount_ctl_find(mount_t *m, uint64_t ino, mount_ctl_t *out);
/* The kernel dropped n lookups (or a reply carrying the inode failed: n = 1). */
void mount_ctl_forget(mount_t *m, uint64_t ino, uint64_t n);

/* ---- pending creations: a file created without O_EXCL is committed by its first write (or
 * at release), but the kernel needs its inode number at create. The node picks the id the
 * object will have (CMD_PUT_ID) and answers with it; until the creation commits, the id is
 * found here, so getattr and lookup work and requests on it reach the namespace's front.
 * Entries live only that long. ---- */

/* A fresh proposer-picked id (never handed out before by this mount), or 0 when the range
 * is used up. */
uint64_t mount_pending_id(mount_t *m);
/* Records the creation of ns/path with id. 0 or -ENOMEM. */
int mount_pending_add(mount_t *m, uint64_t id, uint8_t ns, const char *path);
void mount_pending_del(mount_t *m, uint64_t id);
/* Copies the pending creation with this id (ns and path): 0 or -ENOENT. */
int mount_pending_find(mount_t *m, uint64_t id, uint8_t *ns, char *path, size_t size);
/* The id of the pending creation at ns/path, or 0. */
uint64_t mount_pending_by_path(mount_t *m, uint8_t ns, const char *path);

#endif
