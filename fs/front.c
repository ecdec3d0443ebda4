/* fs/front.c — helpers shared by the namespace fronts (see front.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cluster/assert.h"
#include "fs/front.h"

void *front_ctx_new(size_t size, struct node *n)
{
    ASSERT(size >= sizeof(front_ctx_t));
    front_ctx_t *c = calloc(1, size);
    if (!c)
        return NULL;
    c->node = n;
    pthread_mutex_init(&c->mu, NULL);
    return c;
}

void front_ctx_free(void *ctx)
{
    front_ctx_t *c = ctx;
    if (!c)
        return;
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void front_stat(struct stat *s, fuse_ino_t ino, mode_t mode, off_t size, uint64_t mtime_ms)
{
    memset(s, 0, sizeof(*s));
    s->st_ino = ino;
    s->st_mode = mode;
    s->st_nlink = S_ISDIR(mode) ? 2 : 1;
    s->st_size = size;
    s->st_blksize = 4096;
    s->st_uid = getuid();
    s->st_gid = getgid();
    s->st_mtim.tv_sec = (time_t)(mtime_ms / 1000);
    s->st_mtim.tv_nsec = (long)(mtime_ms % 1000) * 1000000;
    s->st_ctim = s->st_atim = s->st_mtim;
}

void front_reply_attr(fuse_req_t req, int rc, const struct stat *s)
{
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_attr(req, s, 0);
}

void front_reply_entry(fuse_req_t req, int rc, const struct fuse_entry_param *e)
{
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_entry(req, e);
}

void front_reply_xattr(fuse_req_t req, const char *text, size_t len, size_t size)
{
    if (size == 0)
        fuse_reply_xattr(req, len);
    else if (len > size)
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, text, len);
}

void front_reply_text(fuse_req_t req, pthread_mutex_t *mu, const char *text, size_t len,
                      size_t size, off_t off)
{
    size_t n = off < 0 || (size_t)off >= len ? 0 : len - (size_t)off;
    if (n > size)
        n = size;
    pthread_mutex_lock(mu);
    fuse_reply_buf(req, n ? text + off : NULL, n);
    pthread_mutex_unlock(mu);
}
