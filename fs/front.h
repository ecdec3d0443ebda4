/* fs/front.h — small helpers shared by the namespace fronts (fs/ns.h), so that each front
 * does not carry its own copy: the head of a front's per-node context, the stat of a module
 * inode, and the replies every front makes the same way (an attribute or an error, an entry
 * or an error, an xattr value or its size, a slice of an open file's text). */
#ifndef QFS_FS_FRONT_H
#define QFS_FS_FRONT_H

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>

struct node;

/* The head of a front's per-node context (fs/ns.h start/stop): the node, and the mutex that
 * guards the front's tables. A front's context embeds it as its first member. */
typedef struct front_ctx {
    struct node *node;
    pthread_mutex_t mu;
} front_ctx_t;

/* A zeroed context of size bytes (at least sizeof(front_ctx_t), asserted) that begins with
 * a front_ctx_t for node n, its mutex initialized; NULL when out of memory. */
void *front_ctx_new(size_t size, struct node *n);
/* Destroys the mutex of a context front_ctx_new made and frees it (NULL: nothing). What
 * the front's tables still hold is the front's to free before. */
void front_ctx_free(void *ctx);

/* Fills s for a module inode: mode (type and permissions), size, mtime (ms) as all three
 * times, the mount's owner. */
void front_stat(struct stat *s, fuse_ino_t ino, mode_t mode, off_t size, uint64_t mtime_ms);

/* Replies with *s (attribute timeout 0), or with -rc when rc < 0. */
void front_reply_attr(fuse_req_t req, int rc, const struct stat *s);
/* Replies with *e, or with -rc when rc < 0. */
void front_reply_entry(fuse_req_t req, int rc, const struct fuse_entry_param *e);
/* An xattr value text[0..len): its size when size is 0, ERANGE when it does not fit. */
void front_reply_xattr(fuse_req_t req, const char *text, size_t len, size_t size);
/* A read of size bytes at off from text[0..len). The reply is written holding mu: the
 * reader may see it and close before the write returns, so a release that frees text must
 * take mu first. */
void front_reply_text(fuse_req_t req, pthread_mutex_t *mu, const char *text, size_t len,
                      size_t size, off_t off);

#endif
