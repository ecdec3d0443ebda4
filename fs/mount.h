/* fs/mount.h — the FUSE low-level glue: maps kernel inodes to state objects and control
 * files, turns file operations into proposals, and answers blocking reads asynchronously. */
#ifndef QFS_FS_MOUNT_H
#define QFS_FS_MOUNT_H

#include <sys/types.h>
#include "fs/node.h"

struct fuse_args;

/* Mounts at mountpoint and serves until unmounted or signalled (SIGTERM, SIGINT, SIGHUP,
 * `fusermount3 -u`). ready, if not NULL, is called once the mount is live.
 * Returns 0 on a clean unmount, or -1 after printing why the mount failed. */
int mount_serve(node_t *node, const char *mountpoint, struct fuse_args *args,
                void (*ready)(void *arg), void *ready_arg);

/* Nonzero when process pid still holds a descriptor on inode ino of this mount (from
 * /proc/<pid>/fdinfo; nothing is sent to the mount). Answers yes when it cannot tell.
 * flush handlers use it to tell a close() that ends a process's use of an open file from
 * a shell's dup2()+close() before it writes. */
int mount_still_open_by(pid_t pid, uint64_t ino);

#endif
