/* fs/config_fuse.c — the front of config/ (FILE-API §5): its files are served by the
 * generic tree front (fs/tree_fuse.h); this adds what is config's: `user.version` is
 * read-only, and the control entries of a directory: `.events` and `.events@rev` (watches,
 * fs/watch.c) and `file@rev` (a version from the file's history). Its context is the node's
 * watch table (fs/watch.h), to which EFF_CONFIG_REV effects are delivered. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include "fs/config.h"
#include "fs/names.h"
#include "fs/tree_fuse.h"
#include "fs/watch.h"

enum { CTL_EVENTS = 1, CTL_HIST };

static int check_setxattr(const obj_t *o, const char *name, const void *v, size_t n,
                          int remove)
{
    return strcmp(name, "user.version") == 0 ? -EPERM : -ENOTSUP;
}

/* Names that start with '.' or hold an '@' are never objects here. */
/* config/'s control names: `.events` and anything with '@' (`.events@rev`, `file@rev`). */
static int ctl_name(const char *name)
{
    return strcmp(name, ".events") == 0 || strchr(name, '@') != NULL;
}

/* `.events`, `.events@rev` (aux = rev + 1) in dir; `file@rev` of a version dir's file has. */
static int ctl_lookup(mount_t *m, const state_t *st, const obj_t *dir, const char *name,
                      struct fuse_entry_param *e)
{
    size_t len = strlen(name), base;
    uint64_t rev;
    mount_ctl_t c = { .ns = NS_CONFIG };
    memset(e, 0, sizeof(*e));
    e->generation = 1;
    if (strcmp(name, ".events") == 0 || strncmp(name, ".events@", 8) == 0) {
        if (name[7] == '@') {
            if (len > 8 && name[len - 1] == '\n')
                return -ENOENT;
            if (names_parse_uint(name + 8, len - 8, INT64_MAX, &rev) < 0)
                return -ENOENT;
            c.aux = rev + 1;
        }
        c.kind = CTL_EVENTS;
        c.obj = dir->id;
        if (!(e->ino = mount_ctl_get(m, &c)))
            return -ENOMEM;
        mount_stat(&e->attr, e->ino, S_IFREG | 0444, 0, 0);
        return 0;
    }
    if (names_split_rev(name, len, &base, &rev) < 0)
        return -ENOENT;
    char file[NAME_MAX_BYTES + 1];
    memcpy(file, name, base);
    file[base] = 0;
    const obj_t *f = tree_child(dir, file);
    blob_t *b = f ? config_sm_version(f, rev) : NULL;
    if (!b)
        return -ENOENT;
    c.kind = CTL_HIST;
    c.obj = f->id;
    c.aux = rev;
    if (!(e->ino = mount_ctl_get(m, &c)))
        return -ENOMEM;
    mount_stat(&e->attr, e->ino, S_IFREG | 0444, b->len, f->mtime_ms);
    return 0;
}

static int ctl_getattr(const state_t *st, uint64_t ino, const mount_ctl_t *c, struct stat *s)
{
    if (c->kind == CTL_EVENTS) {
        mount_stat(s, ino, S_IFREG | 0444, 0, 0);
        return 0;
    }
    const obj_t *o = tree_by_id(st, c->obj);
    blob_t *b = o ? config_sm_version(o, c->aux) : NULL;
    if (!b)
        return -ENOENT;
    mount_stat(s, ino, S_IFREG | 0444, b->len, o->mtime_ms);
    return 0;
}

/* A version is a text the open keeps; a watch starts after the revision of the moment (or
 * the one `.events@rev` names). */
static int ctl_open(void *ctx, const state_t *st, const mount_ctl_t *c, int flags,
                    blob_t **text, void **handle)
{
    const obj_t *o = tree_by_id(st, c->obj);
    if (!o)
        return -ENOENT;
    if (c->kind == CTL_HIST) {
        *text = blob_ref(config_sm_version(o, c->aux));
        return *text ? 0 : -ENOENT;
    }
    char path[TREE_PATH_MAX + 1];
    int rc = tree_path(o, path, sizeof(path));
    if (rc < 0)
        return rc;
    watch_t *w;
    rc = watch_open(ctx, path, c->aux ? c->aux - 1 : WATCH_NOW, !!(flags & O_NONBLOCK), &w);
    if (rc == 0)
        *handle = w;
    return rc;
}

static void ctl_read(fuse_req_t req, void *handle, size_t size, off_t off)
{
    watch_read(req, handle, size, off);
}

static void ctl_poll(fuse_req_t req, void *handle, struct fuse_pollhandle *ph)
{
    watch_poll(req, handle, ph);
}

static void ctl_release(void *handle) { watch_close(handle); }

/* The context is the node's watch table (its interrupt callback finds it by namespace). */
static void *start(node_t *n) { return watch_front.start(n); }
static void stop(void *ctx) { watch_front.stop(ctx); }
static void deliver(void *ctx, effect_t *e) { watch_front.deliver(ctx, e); }

static const tree_front_t config_tree_front = {
    .check_setxattr = check_setxattr,
    .ctl_lookup = ctl_lookup,
    .ctl_name = ctl_name,
    .ctl_getattr = ctl_getattr,
    .ctl_open = ctl_open,
    .ctl_read = ctl_read,
    .ctl_poll = ctl_poll,
    .ctl_release = ctl_release,
};

const ns_front_t config_front = {
    .start = start,
    .stop = stop,
    .deliver = deliver,
    .fuse = &tree_fuse_ops,
    .tree = &config_tree_front,
};
