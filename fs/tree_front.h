/* fs/tree_front.h — internal to the generic tree front (fs/tree_fuse.h): what its two
 * halves share. fs/tree_fuse.c serves names, attributes, directories, renames and extended
 * attributes; fs/tree_file.c serves open value files (open, read, the save protocol, flush,
 * fsync, release, create, truncate) and control entries. Not for other modules. */
#ifndef QFS_FS_TREE_FRONT_H
#define QFS_FS_TREE_FRONT_H

#include <sys/stat.h>
#include "fs/mount.h"
#include "fs/node.h"
#include "fs/ns.h"
#include "fs/tree_fuse.h"

/* What a handler works on: the request's mount, node and shard (the one holding what the
 * request names: fs/mount.h mount_shard_of). */
typedef struct treq {
    fuse_req_t req;
    mount_t *m;
    node_t *node;
    uint32_t shard;
    state_t *st;
} treq_t;

/* For a request on shard k. */
static inline treq_t treq_shard(fuse_req_t req, uint32_t k)
{
    treq_t t = { .req = req, .m = mount_of(req), .shard = k };
    t.node = mount_node(t.m);
    t.st = node_state(t.node, k);
    return t;
}

/* For a request on inode ino, or on its child name when name is not NULL. */
static inline treq_t treq_at(fuse_req_t req, uint64_t ino, const char *name)
{
    mount_t *m = mount_of(req);
    return treq_shard(req, mount_shard_of(m, ino, name));
}

/* The namespace's additions (NULL for a namespace not built yet). */
static inline const tree_front_t *tf_of(int ns)
{
    return ns > NS_NONE && ns < NS__COUNT && ns_fronts[ns] ? ns_fronts[ns]->tree : NULL;
}

/* ---- fs/tree_fuse.c ---- */

/* The object with id ino if readers see it now; read lock held. */
obj_t *tf_live_obj(const treq_t *t, uint64_t ino);
void tf_obj_stat(const obj_t *o, struct stat *s);
/* Attributes of inode ino (object, pending creation or control entry). 0 or -errno. */
int tf_getattr(const treq_t *t, uint64_t ino, struct stat *s);
/* Resolves (parent inode, name) into the namespace and the namespace-relative path of the
 * child, checking that parent is a directory where objects may be created (and, with
 * check_name, the name). 0 or -errno. */
int tf_child_path(const treq_t *t, uint64_t parent, const char *name, int *ns, char *path,
                  size_t size, int check_name);
/* Namespace-relative path of an existing object inode (and its type, if type). */
int tf_obj_path(const treq_t *t, uint64_t ino, int *ns, char *path, size_t size, int *type);
/* The owner of a new entry of directory parent, as on ext4 without -o grpid: in a
 * set-group-ID directory it takes the directory's group (*gid), a new directory (is_dir)
 * is set-group-ID too, and a file asking for S_ISGID|S_IXGRP loses S_ISGID when the caller
 * (not root) is not in that group. *mode and *gid come in as the caller asked. */
void tf_new_owner(const treq_t *t, uint64_t parent, int is_dir, uint32_t *mode,
                  uint32_t *gid);
/* The object id a tree command's result carries (0 if none). */
uint64_t tf_result_id(const sm_result_t *res);

/* ---- fs/tree_file.c: the file operations of tree_fuse_ops ---- */

void tfile_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void tfile_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                struct fuse_file_info *fi);
void tfile_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                 struct fuse_file_info *fi);
void tfile_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void tfile_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void tfile_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void tfile_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                  struct fuse_file_info *fi);
/* mknod(2) of a regular file (tar --xattrs -x and cpio make files so): an exclusive create
 * whose empty value is published at once; other types get EPERM (FILE-API §1). */
void tfile_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                 dev_t rdev);
void tfile_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                struct fuse_pollhandle *ph);
/* setattr's parts that touch a file's value: saves in progress and pending creations are
 * published first (through fi's open if it comes with one; see tree_file.c), then a size
 * change (truncate, ftruncate). fi may be NULL; times: the setattr sets atime or mtime.
 * 0 or -errno. */
int tfile_settle_pending(const treq_t *t, uint64_t ino, struct fuse_file_info *fi, int times);
int tfile_truncate(const treq_t *t, uint64_t ino, off_t size, struct fuse_file_info *fi);
/* Attributes of inode ino known only to its open files: a creation not yet published, or
 * an object removed or replaced (by rename) while open, which then has st_nlink 0. 0, or
 * -ENOENT when no open file knows ino. For getattr of an inode the tree has not got. */
int tfile_open_stat(const treq_t *t, uint64_t ino, struct stat *s);
/* A getattr that came through open file fi (lseek SEEK_END, for one): the size of fi's
 * save in progress, if it has one, so the writer sees its own writes. */
void tfile_adjust_stat(struct fuse_file_info *fi, struct stat *s);
/* A getattr without an open file (stat, fstat: FUSE does not say which descriptor): when
 * the calling process has a save in progress on ino through this mount, the size and mtime
 * of its newest one, so a writer's fstat follows its own writes. Other processes and other
 * mounts see the published value until the save is published (FILE-API §1 Saves). */
void tfile_adjust_stat_caller(const treq_t *t, uint64_t ino, struct stat *s);

#endif
