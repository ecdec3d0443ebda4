/* tests/unit/test_tree.c — the object tree's POSIX metadata, symbolic links and the commands
 * of issue 8, driven through the encoders without FUSE: the owner and times creations take,
 * directory link counts, CMD_SETATTR (chmod, chown, utimensat, its errors, a cache/ TTL
 * restarted by an mtime), CMD_SYMLINK and what the namespaces do with links, CMD_PUT_IFID,
 * version 1 commands of an older log, config/ history kept across a rename over a file,
 * and snapshots: a round trip keeps every new field, restore refuses bad ones. Every apply
 * is followed by ns_sm_check (tests/unit/smrun.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cluster/err.h"
#include "cluster/snapshot.h"
#include "fs/cache_sm.h"
#include "fs/cmd.h"
#include "fs/config_sm.h"
#include "fs/ns_sm.h"
#include "fs/state.h"
#include "tests/unit/check.h"
#include "tests/unit/smrun.h"
#include "tests/unit/statesnap.h"

#define MS 1000000ll   /* ns in a ms */
#define C CMD_PUT_CREATE

static uint64_t idx;
static sm_result_t last;

static int apply(state_t *st, cmdbuf_t *b) { return smrun_apply(st, &idx, b, &last); }

static uint64_t last_id(void)
{
    uint64_t id = 0;
    if (last.len >= 8)
        memcpy(&id, last.data, 8);
    return id;
}

static obj_t *obj(state_t *st, int ns, const char *path)
{
    return tree_resolve(st, ns, path, strlen(path));
}

static int mkdir_(state_t *st, int ns, const char *path, uint32_t mode, uint32_t uid,
                  uint32_t gid, uint64_t now)
{
    cmdbuf_t b;
    tree_cmd_mkdir(&b, now, ns, path, mode, uid, gid);
    return apply(st, &b);
}

static int create(state_t *st, int ns, const char *path, const char *v, uint32_t mode,
                  uint32_t uid, uint32_t gid, uint64_t now)
{
    cmdbuf_t b;
    tree_cmd_create(&b, now, ns, path, 0, 0, mode, uid, gid, v, strlen(v));
    return apply(st, &b);
}

static int put(state_t *st, int ns, const char *path, const char *v, uint8_t flags,
               uint64_t now)
{
    cmdbuf_t b;
    tree_cmd_put(&b, now, ns, path, flags, 0, v, strlen(v));
    return apply(st, &b);
}

static int put_ifid(state_t *st, int ns, const char *path, const char *v, uint8_t flags,
                    uint64_t ifid, uint64_t now)
{
    cmdbuf_t b;
    tree_cmd_put_full(&b, now, ns, path, flags, 0, ifid, 0600, 7, 8, v, strlen(v));
    return apply(st, &b);
}

static int path_op(state_t *st, uint8_t op, int ns, const char *path, uint64_t now)
{
    cmdbuf_t b;
    tree_cmd_path(&b, op, now, ns, path);
    return apply(st, &b);
}

static int ren(state_t *st, int ns, const char *from, const char *to, uint64_t now)
{
    cmdbuf_t b;
    tree_cmd_rename(&b, now, ns, from, to, 0);
    return apply(st, &b);
}

static int symlink_(state_t *st, int ns, const char *path, const char *target, uint64_t now)
{
    cmdbuf_t b;
    tree_cmd_symlink(&b, now, ns, path, target, 5, 6);
    return apply(st, &b);
}

static int setattr(state_t *st, int ns, const char *path, uint64_t ifid, uint8_t mask,
                   uint32_t mode, uint32_t uid, uint32_t gid, int64_t at, int64_t mt,
                   uint64_t now)
{
    cmdbuf_t b;
    tree_cmd_setattr(&b, now, ns, path, ifid, mask, mode, uid, gid, at, mt);
    return apply(st, &b);
}

static const char *val(state_t *st, int ns, const char *path)
{
    static char buf[4096];
    obj_t *o = obj(st, ns, path);
    if (!o || o->type == OBJ_DIR)
        return NULL;
    memcpy(buf, o->val->data, o->val->len);
    buf[o->val->len] = 0;
    return buf;
}

/* The .events lines of config/ after revision `after`. */
static const char *events(state_t *st, uint64_t after)
{
    static char buf[8192];
    uint64_t cur = after;
    int n = config_read_events(st, "", &cur, buf, sizeof(buf) - 1);
    buf[n < 0 ? 0 : n] = 0;
    return buf;
}

TEST(creations_carry_owner_and_times)
{
    state_t *st = smrun_state(NULL, NULL);
    CHECK_EQ(mkdir_(st, NS_CACHE, "d", 0750, 1000, 100, 5), 0);
    obj_t *d = obj(st, NS_CACHE, "d");
    CHECK(d && d->id == last_id());
    CHECK_EQ(d->mode, 0750);
    CHECK_EQ(d->uid, 1000);
    CHECK_EQ(d->gid, 100);
    CHECK_EQ(d->atime_ns, 5 * MS);
    CHECK_EQ(d->mtime_ns, 5 * MS);
    CHECK_EQ(d->ctime_ns, 5 * MS);
    CHECK_EQ(d->mtime_ms, 5);
    /* a creation changes the parent's mtime and ctime, not its atime */
    obj_t *root = tree_root(st, NS_CACHE);
    CHECK_EQ(root->mtime_ns, 5 * MS);
    CHECK_EQ(root->ctime_ns, 5 * MS);
    CHECK_EQ(root->atime_ns, 0);
    /* bits above 07777 are dropped by the encoder; apply refuses them in a raw command */
    CHECK_EQ(create(st, NS_CACHE, "d/f", "v", 0100644 | 04000, 1000, 100, 7), 0);
    obj_t *f = obj(st, NS_CACHE, "d/f");
    CHECK_EQ(f->mode, 04644);
    CHECK_EQ(f->uid, 1000);
    CHECK_EQ(f->ctime_ns, 7 * MS);
    CHECK_EQ(tree_nlink(f), 1);
    CHECK_EQ(d->mtime_ns, 7 * MS);
    cmdbuf_t b;
    cmd_begin(&b, CMD_MKDIR, NS_CACHE, 8);
    cmd_str(&b, "bad");
    cmd_u32(&b, 010000);
    cmd_u32(&b, 0);
    cmd_u32(&b, 0);
    CHECK_EQ(apply(st, &b), -EINVAL);
    CHECK(!obj(st, NS_CACHE, "bad"));
    CHECK_EQ(mkdir_(st, NS_CACHE, "bad", 0755, UINT32_MAX, 0, 8), -EINVAL);
    /* the encoders without an owner give the defaults */
    CHECK_EQ(path_op(st, CMD_MKDIR, NS_CACHE, "plain", 9), 0);
    CHECK_EQ(obj(st, NS_CACHE, "plain")->mode, TREE_MODE_DIR);
    CHECK_EQ(obj(st, NS_CACHE, "plain")->uid, 0);
    CHECK_EQ(put(st, NS_CONFIG, "k", "x", C, 9), 0);
    CHECK_EQ(obj(st, NS_CONFIG, "k")->mode, TREE_MODE_FILE);
    /* a rewrite keeps the owner and mode, moves mtime and ctime */
    CHECK_EQ(put(st, NS_CACHE, "d/f", "w", 0, 12), 0);
    CHECK_EQ(f->mode, 04644);
    CHECK_EQ(f->uid, 1000);
    CHECK_EQ(f->mtime_ns, 12 * MS);
    CHECK_EQ(f->ctime_ns, 12 * MS);
    CHECK_EQ(f->atime_ns, 7 * MS);    /* noatime */
    state_free(st);
}

TEST(directory_link_counts)
{
    state_t *st = smrun_state(NULL, NULL);
    obj_t *root = tree_root(st, NS_CACHE);
    CHECK_EQ(tree_nlink(root), 2);
    CHECK_EQ(path_op(st, CMD_MKDIR, NS_CACHE, "a", 1), 0);
    CHECK_EQ(path_op(st, CMD_MKDIR, NS_CACHE, "b", 1), 0);
    CHECK_EQ(path_op(st, CMD_MKDIR, NS_CACHE, "a/x", 1), 0);
    CHECK_EQ(put(st, NS_CACHE, "a/file", "v", C, 1), 0);
    CHECK_EQ(symlink_(st, NS_CACHE, "a/link", "file", 1), 0);
    CHECK_EQ(tree_nlink(root), 4);
    CHECK_EQ(tree_nlink(obj(st, NS_CACHE, "a")), 3);    /* files and links do not count */
    CHECK_EQ(tree_nlink(obj(st, NS_CACHE, "b")), 2);
    CHECK_EQ(ren(st, NS_CACHE, "a/x", "b/x", 2), 0);      /* a subdirectory moves */
    CHECK_EQ(tree_nlink(obj(st, NS_CACHE, "a")), 2);
    CHECK_EQ(tree_nlink(obj(st, NS_CACHE, "b")), 3);
    CHECK_EQ(obj(st, NS_CACHE, "a")->mtime_ns, 2 * MS);
    CHECK_EQ(obj(st, NS_CACHE, "b/x")->ctime_ns, 2 * MS);   /* the moved one changed */
    CHECK_EQ(path_op(st, CMD_MKDIR, NS_CACHE, "a/y", 3), 0);
    CHECK_EQ(ren(st, NS_CACHE, "b/x", "a/y", 3), 0);      /* over an empty directory */
    CHECK_EQ(tree_nlink(obj(st, NS_CACHE, "a")), 3);
    CHECK_EQ(tree_nlink(obj(st, NS_CACHE, "b")), 2);
    CHECK_EQ(path_op(st, CMD_RMDIR, NS_CACHE, "a/y", 4), 0);
    CHECK_EQ(tree_nlink(obj(st, NS_CACHE, "a")), 2);
    CHECK_EQ(ren(st, NS_CACHE, "a", "b/a", 5), 0);
    CHECK_EQ(tree_nlink(root), 3);
    CHECK_EQ(tree_nlink(obj(st, NS_CACHE, "b")), 3);
    /* the counter is verified */
    obj(st, NS_CACHE, "b")->nsubdirs++;
    CHECK(tree_sm_verify(st) != NULL);
    obj(st, NS_CACHE, "b")->nsubdirs--;
    CHECK(tree_sm_verify(st) == NULL);
    state_free(st);
}

TEST(setattr_chmod_chown_utimes)
{
    state_t *st = smrun_state(NULL, NULL);
    CHECK_EQ(create(st, NS_CONFIG, "f", "v", 0644, 1, 1, 10), 0);
    obj_t *f = obj(st, NS_CONFIG, "f");
    uint64_t rev = config_sm_rev(st);
    CHECK_EQ(setattr(st, NS_CONFIG, "f", 0, CMD_SETATTR_MODE, 04755, 0, 0, 0, 0, 20), 0);
    CHECK_EQ(f->mode, 04755);
    CHECK_EQ(f->ctime_ns, 20 * MS);
    CHECK_EQ(f->mtime_ns, 10 * MS);
    CHECK_EQ(config_sm_rev(st), rev);               /* metadata is not a new revision */
    CHECK_EQ(setattr(st, NS_CONFIG, "f", 0, CMD_SETATTR_UID | CMD_SETATTR_GID, 0, 42, 43, 0,
                     0, 21), 0);
    CHECK_EQ(f->uid, 42);
    CHECK_EQ(f->gid, 43);
    CHECK_EQ(f->mode, 04755);
    /* explicit times to the ns, also before 1970 */
    CHECK_EQ(setattr(st, NS_CONFIG, "f", f->id, CMD_SETATTR_ATIME | CMD_SETATTR_MTIME, 0, 0, 0,
                     -1500000001ll, 981173106123456789ll, 22), 0);
    CHECK_EQ(f->atime_ns, -1500000001ll);
    CHECK_EQ(f->mtime_ns, 981173106123456789ll);
    CHECK_EQ(f->mtime_ms, 981173106123ull);
    CHECK_EQ(f->ctime_ns, 22 * MS);
    CHECK_EQ(setattr(st, NS_CONFIG, "f", 0, CMD_SETATTR_ATIME_NOW | CMD_SETATTR_MTIME_NOW, 0,
                     0, 0, 5, 5, 23), 0);
    CHECK_EQ(f->atime_ns, 23 * MS);
    CHECK_EQ(f->mtime_ns, 23 * MS);
    /* an empty mask changes the ctime only */
    CHECK_EQ(setattr(st, NS_CONFIG, "f", 0, 0, 0, 0, 0, 0, 0, 24), 0);
    CHECK_EQ(f->ctime_ns, 24 * MS);
    CHECK_EQ(f->mtime_ns, 23 * MS);
    /* refused whole: nothing changes */
    CHECK_EQ(setattr(st, NS_CONFIG, "f", 0, CMD_SETATTR_MODE, 010000, 0, 0, 0, 0, 30), -EINVAL);
    CHECK_EQ(setattr(st, NS_CONFIG, "f", 0, CMD_SETATTR_ATIME | CMD_SETATTR_ATIME_NOW, 0, 0, 0,
                     0, 0, 30), -EINVAL);
    CHECK_EQ(setattr(st, NS_CONFIG, "f", 0, CMD_SETATTR_MTIME | CMD_SETATTR_MTIME_NOW, 0, 0, 0,
                     0, 0, 30), -EINVAL);
    CHECK_EQ(setattr(st, NS_CONFIG, "f", 0, 128, 0, 0, 0, 0, 0, 30), -EINVAL);
    CHECK_EQ(setattr(st, NS_CONFIG, "f", 0, CMD_SETATTR_UID | CMD_SETATTR_MODE, 0600,
                     UINT32_MAX, 0, 0, 0, 30), -EINVAL);
    CHECK_EQ(setattr(st, NS_CONFIG, "f", f->id + 1, CMD_SETATTR_MODE, 0600, 0, 0, 0, 0, 30),
             -ESTALE);
    CHECK_EQ(setattr(st, NS_CONFIG, "nope", 0, CMD_SETATTR_MODE, 0600, 0, 0, 0, 0, 30), -ENOENT);
    CHECK_EQ(f->mode, 04755);
    CHECK_EQ(f->uid, 42);
    CHECK_EQ(f->ctime_ns, 24 * MS);
    /* a namespace root may be changed (`chmod 1777 cache`, tar restoring ".") */
    CHECK_EQ(setattr(st, NS_CACHE, "", NS_ROOT_ID(NS_CACHE), CMD_SETATTR_MODE | CMD_SETATTR_UID,
                     01777, 3, 0, 0, 0, 31), 0);
    CHECK_EQ(tree_root(st, NS_CACHE)->mode, 01777);
    CHECK_EQ(tree_root(st, NS_CACHE)->uid, 3);
    state_free(st);
}

/* `touch` of a cache/ file restarts its TTL and makes it the most recent, as SETMTIME did;
 * an explicit mtime (touch -d, tar, rsync) too. */
TEST(setattr_mtime_restarts_a_cache_ttl)
{
    state_t *st = smrun_state(NULL, NULL);
    CHECK_EQ(put(st, NS_CACHE, "k", "v", C, 1000), 0);
    cmdbuf_t b;
    tree_cmd_setxattr(&b, 1000, NS_CACHE, "k", "user.ttl", "10", 2);
    CHECK_EQ(apply(st, &b), 0);
    obj_t *k = obj(st, NS_CACHE, "k");
    CHECK_EQ(k->u.cache.expires_ms, 11000);
    CHECK_EQ(k->ctime_ns, 1000 * MS);                  /* an xattr change is a change */
    CHECK_EQ(setattr(st, NS_CACHE, "k", 0, CMD_SETATTR_MTIME_NOW, 0, 0, 0, 0, 0, 5000), 0);
    CHECK_EQ(k->u.cache.expires_ms, 15000);
    CHECK_EQ(setattr(st, NS_CACHE, "k", 0, CMD_SETATTR_MTIME, 0, 0, 0, 0, 42, 9000), 0);
    CHECK_EQ(k->u.cache.expires_ms, 19000);
    CHECK_EQ(k->mtime_ns, 42);
    /* a chmod alone does not */
    CHECK_EQ(setattr(st, NS_CACHE, "k", 0, CMD_SETATTR_MODE, 0600, 0, 0, 0, 0, 12000), 0);
    CHECK_EQ(k->u.cache.expires_ms, 19000);
    /* the version 1 SETMTIME still applies */
    CHECK_EQ(path_op(st, CMD_SETMTIME, NS_CACHE, "k", 13000), 0);
    CHECK_EQ(k->u.cache.expires_ms, 23000);
    CHECK_EQ(k->mtime_ns, 13000 * MS);
    state_free(st);
}

TEST(symlinks)
{
    state_t *st = smrun_state(NULL, NULL);
    CHECK_EQ(path_op(st, CMD_MKDIR, NS_CACHE, "d", 1), 0);
    CHECK_EQ(symlink_(st, NS_CACHE, "d/l", "../target with spaces", 2), 0);
    obj_t *l = obj(st, NS_CACHE, "d/l");
    CHECK(l && l->type == OBJ_LINK && l->id == last_id());
    CHECK(strcmp(val(st, NS_CACHE, "d/l"), "../target with spaces") == 0);
    CHECK_EQ(l->mode, TREE_MODE_LINK);
    CHECK_EQ(l->uid, 5);
    CHECK_EQ(l->gid, 6);
    CHECK_EQ(l->ctime_ns, 2 * MS);
    CHECK_EQ(obj(st, NS_CACHE, "d")->mtime_ns, 2 * MS);
    /* cache/: a link has no TTL and no LRU place */
    cache_stats_t cs;
    cache_sm_stats(st, &cs);
    CHECK_EQ(cs.keys, 0);
    CHECK_EQ(cs.bytes, 0);
    /* errors */
    CHECK_EQ(symlink_(st, NS_CACHE, "d/l", "x", 3), -EEXIST);
    CHECK_EQ(symlink_(st, NS_CACHE, "d/e", "", 3), -ENOENT);
    char longt[TREE_LINK_MAX + 2];
    memset(longt, 'a', sizeof(longt) - 1);
    longt[sizeof(longt) - 1] = 0;
    CHECK_EQ(symlink_(st, NS_CACHE, "d/e", longt, 3), -ENAMETOOLONG);
    longt[TREE_LINK_MAX] = 0;
    CHECK_EQ(symlink_(st, NS_CACHE, "d/max", longt, 3), 0);
    cmdbuf_t b;
    cmd_begin(&b, CMD_SYMLINK, NS_CACHE, 3);
    cmd_str(&b, "d/nul");
    cmd_bytes(&b, "a\0b", 3);
    cmd_u32(&b, 0);
    cmd_u32(&b, 0);
    CHECK_EQ(apply(st, &b), -EINVAL);
    CHECK_EQ(symlink_(st, NS_CACHE, "nodir/l", "x", 3), -ENOENT);
    /* a value is never written through a link, nor a link's attributes */
    CHECK_EQ(put(st, NS_CACHE, "d/l", "v", C, 4), -ELOOP);
    CHECK_EQ(put(st, NS_CACHE, "d/l", "v", C | CMD_PUT_EXCL, 4), -EEXIST);
    tree_cmd_setxattr(&b, 4, NS_CACHE, "d/l", "user.ttl", "5", 1);
    CHECK_EQ(apply(st, &b), -EPERM);
    CHECK_EQ(setattr(st, NS_CACHE, "d/l", 0, CMD_SETATTR_MODE, 0600, 0, 0, 0, 0, 4),
             -EOPNOTSUPP);
    CHECK_EQ(setattr(st, NS_CACHE, "d/l", 0, CMD_SETATTR_UID | CMD_SETATTR_MTIME, 0, 9, 0, 0,
                     77, 4), 0);                      /* lchown, lutimes */
    CHECK_EQ(l->uid, 9);
    CHECK_EQ(l->mtime_ns, 77);
    CHECK_EQ(path_op(st, CMD_RMDIR, NS_CACHE, "d/l", 4), -ENOTDIR);
    CHECK(strcmp(val(st, NS_CACHE, "d/l"), "../target with spaces") == 0);
    /* mv and rm */
    CHECK_EQ(ren(st, NS_CACHE, "d/l", "l2", 5), 0);
    CHECK(obj(st, NS_CACHE, "l2")->type == OBJ_LINK);
    CHECK_EQ(path_op(st, CMD_UNLINK, NS_CACHE, "l2", 6), 0);
    CHECK(!obj(st, NS_CACHE, "l2"));
    state_free(st);
}

/* config/: links take revisions and events, but keep no history. */
TEST(config_links_have_events_but_no_history)
{
    state_t *st = smrun_state(NULL, NULL);
    CHECK_EQ(path_op(st, CMD_MKDIR, NS_CONFIG, "app", 1), 0);
    CHECK_EQ(symlink_(st, NS_CONFIG, "app/cur", "v1", 2), 0);
    uint64_t r1 = config_sm_rev(st);
    CHECK_EQ(r1, 1);
    obj_t *l = obj(st, NS_CONFIG, "app/cur");
    CHECK_EQ(config_sm_obj_rev(l), 1);
    CHECK(config_sm_version(l, 1) == NULL);
    CHECK(l->u.config.hist == NULL);
    CHECK_EQ(ren(st, NS_CONFIG, "app/cur", "app/now", 3), 0);
    CHECK_EQ(path_op(st, CMD_UNLINK, NS_CONFIG, "app/now", 4), 0);
    CHECK(strcmp(events(st, 0), "1 put config/app/cur\n2 delete config/app/cur\n"
                                "3 put config/app/now\n4 delete config/app/now\n") == 0);
    state_free(st);
}

TEST(put_if_id)
{
    state_t *st = smrun_state(NULL, NULL);
    CHECK_EQ(put(st, NS_CACHE, "f", "one", C, 1), 0);
    uint64_t id = obj(st, NS_CACHE, "f")->id;
    CHECK_EQ(put_ifid(st, NS_CACHE, "f", "two", 0, id, 2), 0);
    CHECK(strcmp(val(st, NS_CACHE, "f"), "two") == 0);
    CHECK_EQ(last_id(), id);
    CHECK_EQ(put_ifid(st, NS_CACHE, "f", "three", C, id + 1, 3), -ESTALE);
    /* replaced by a rename: a save through the old open must not overwrite the new file */
    CHECK_EQ(put(st, NS_CACHE, "tmp", "new", C, 4), 0);
    CHECK_EQ(ren(st, NS_CACHE, "tmp", "f", 5), 0);
    CHECK_EQ(put_ifid(st, NS_CACHE, "f", "stale", 0, id, 6), -ESTALE);
    CHECK(strcmp(val(st, NS_CACHE, "f"), "new") == 0);
    /* removed: nor resurrect it */
    CHECK_EQ(path_op(st, CMD_UNLINK, NS_CACHE, "f", 7), 0);
    CHECK_EQ(put_ifid(st, NS_CACHE, "f", "stale", 0, id, 8), -ESTALE);
    CHECK(!obj(st, NS_CACHE, "f"));
    CHECK_EQ(put_ifid(st, NS_CACHE, "gone/f", "stale", 0, id, 8), -ESTALE);
    /* with CMD_PUT_CREATE: the path free, or holding ifid */
    CHECK_EQ(put_ifid(st, NS_CACHE, "f", "created", C, id, 9), 0);
    obj_t *f = obj(st, NS_CACHE, "f");
    CHECK(f && f->mode == 0600 && f->uid == 7 && f->gid == 8);
    /* WRITE honours it too */
    cmdbuf_t b;
    tree_cmd_write_full(&b, 10, NS_CACHE, "f", 0, 0, f->id + 5, 0, 0, 0, 0, "x", 1);
    CHECK_EQ(apply(st, &b), -ESTALE);
    tree_cmd_write_full(&b, 10, NS_CACHE, "f", CMD_WRITE_APPEND, 0, f->id, 0, 0, 0, 0, "!", 1);
    CHECK_EQ(apply(st, &b), 0);
    CHECK(strcmp(val(st, NS_CACHE, "f"), "created!") == 0);
    state_free(st);
}

/* Commands of an older log (version 1) still apply, with the default owner. */
TEST(version_1_commands_decode)
{
    state_t *st = smrun_state(NULL, NULL);
    cmdbuf_t b;
    cmd_begin(&b, CMD_MKDIR, NS_CACHE, 3);
    cmd_str(&b, "d");
    b.p[0] = 1;
    CHECK_EQ(apply(st, &b), 0);
    obj_t *d = obj(st, NS_CACHE, "d");
    CHECK(d && d->mode == TREE_MODE_DIR && d->uid == 0 && d->mtime_ns == 3 * MS);
    cmd_begin(&b, CMD_PUT, NS_CACHE, 4);
    cmd_str(&b, "d/f");
    cmd_u8(&b, CMD_PUT_CREATE);
    cmd_bytes(&b, "v1", 2);
    b.p[0] = 1;
    CHECK_EQ(apply(st, &b), 0);
    CHECK(strcmp(val(st, NS_CACHE, "d/f"), "v1") == 0);
    CHECK_EQ(obj(st, NS_CACHE, "d/f")->mode, TREE_MODE_FILE);
    /* the same bytes as version 2 lack the owner: refused whole */
    cmd_begin(&b, CMD_PUT, NS_CACHE, 4);
    cmd_str(&b, "d/g");
    cmd_u8(&b, CMD_PUT_CREATE);
    cmd_bytes(&b, "v1", 2);
    CHECK_EQ(apply(st, &b), -EINVAL);
    CHECK(!obj(st, NS_CACHE, "d/g"));
    /* versions outside [1, CMD_VERSION] are refused */
    cmd_begin(&b, CMD_MKDIR, NS_CACHE, 5);
    cmd_str(&b, "e");
    b.p[0] = CMD_VERSION + 1;
    CHECK_EQ(apply(st, &b), -EINVAL);
    CHECK(!obj(st, NS_CACHE, "e"));
    state_free(st);
}

/* `mv tmp db` over db: db keeps its history (the rename is one new revision of it), tmp's
 * goes with its path; .events has a delete of tmp and one put of db. */
TEST(config_history_kept_across_rename)
{
    state_t *st = smrun_state(NULL, NULL);
    CHECK_EQ(path_op(st, CMD_MKDIR, NS_CONFIG, "app", 1), 0);
    CHECK_EQ(put(st, NS_CONFIG, "app/db", "a", C, 2), 0);          /* rev 1 */
    CHECK_EQ(put(st, NS_CONFIG, "app/db", "b", 0, 3), 0);          /* rev 2 */
    CHECK_EQ(put(st, NS_CONFIG, "app/tmp", "t1", C, 4), 0);        /* rev 3 */
    CHECK_EQ(put(st, NS_CONFIG, "app/tmp", "c", 0, 5), 0);         /* rev 4 */
    uint64_t before = config_sm_rev(st);
    CHECK_EQ(ren(st, NS_CONFIG, "app/tmp", "app/db", 6), 0);        /* revs 5 (delete), 6 */
    obj_t *db = obj(st, NS_CONFIG, "app/db");
    CHECK(strcmp(val(st, NS_CONFIG, "app/db"), "c") == 0);
    CHECK_EQ(config_sm_obj_rev(db), 6);
    CHECK(config_sm_version(db, 1) && memcmp(config_sm_version(db, 1)->data, "a", 1) == 0);
    CHECK(config_sm_version(db, 2) && memcmp(config_sm_version(db, 2)->data, "b", 1) == 0);
    CHECK(config_sm_version(db, 6) && memcmp(config_sm_version(db, 6)->data, "c", 1) == 0);
    CHECK(config_sm_version(db, 3) == NULL);       /* tmp's own history went with its path */
    CHECK(config_sm_version(db, 4) == NULL);
    CHECK_EQ(db->u.config.nhist, 3);
    CHECK(strcmp(events(st, before), "5 delete config/app/tmp\n6 put config/app/db\n") == 0);
    /* the ring stays bounded: ten more versions push the oldest out */
    for (int i = 0; i < 10; i++)
        CHECK_EQ(put(st, NS_CONFIG, "app/db", "x", 0, 7), 0);
    CHECK(config_sm_version(db, 1) == NULL);
    CHECK_EQ(db->u.config.nhist, CONFIG_HISTORY);
    /* a moved file without a target to replace keeps its own history, as before */
    CHECK_EQ(put(st, NS_CONFIG, "app/w", "w1", C, 8), 0);
    uint64_t wr = config_sm_rev(st);
    CHECK_EQ(ren(st, NS_CONFIG, "app/w", "app/w2", 9), 0);
    CHECK(config_sm_version(obj(st, NS_CONFIG, "app/w2"), wr) != NULL);
    state_free(st);
}

static int refused(state_t *src, const char *dir)
{
    size_t len;
    free(snap_bytes(src, dir, &len));
    state_t *dst = state_new(1 << 20);
    int rc = restore_dir(dst, dir);
    ns_sm_check(dst);
    state_free(dst);
    return rc;
}

static void rm_dir(const char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", d);
}

/* The new fields survive a snapshot (same bytes again), and restore refuses bad ones. */
/* An exclusive create of an empty config/ file takes no revision; the save that follows
 * (a PUT) takes the first. In cache/ it is an ordinary put. Snapshots keep such a file. */
TEST(config_exclusive_create_takes_no_revision)
{
    state_t *st = smrun_state(NULL, NULL);
    CHECK_EQ(path_op(st, CMD_MKDIR, NS_CONFIG, "d", 1), 0);
    uint64_t before = config_sm_rev(st);
    CHECK_EQ(put(st, NS_CONFIG, "d/new", "", C | CMD_PUT_EXCL, 2), 0);
    obj_t *o = obj(st, NS_CONFIG, "d/new");
    CHECK(o != NULL);
    CHECK_EQ(config_sm_rev(st), before);
    CHECK_EQ(config_sm_obj_rev(o), 0);
    CHECK(strcmp(events(st, before), "") == 0);
    CHECK_EQ(put(st, NS_CONFIG, "d/new", "", C | CMD_PUT_EXCL, 3), -EEXIST);
    ns_sm_check(st);
    /* it survives a snapshot round trip before its first save */
    char dir[] = "/tmp/qfs-test-tree-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    size_t len;
    free(snap_bytes(st, dir, &len));
    state_t *cp = state_new(1 << 20);
    CHECK_EQ(restore_dir(cp, dir), 0);
    ns_sm_check(cp);
    CHECK(obj(cp, NS_CONFIG, "d/new") != NULL);
    state_free(cp);
    rm_dir(dir);
    /* the save publishes the first revision */
    CHECK_EQ(put(st, NS_CONFIG, "d/new", "v", 0, 4), 0);
    CHECK_EQ(config_sm_obj_rev(o), before + 1);
    CHECK(strcmp(events(st, before), "1 put config/d/new\n") == 0);
    ns_sm_check(st);
    /* a non-empty exclusive create, and any cache/ one, take their revision or put at once */
    CHECK_EQ(put(st, NS_CONFIG, "d/full", "x", C | CMD_PUT_EXCL, 5), 0);
    CHECK_EQ(config_sm_obj_rev(obj(st, NS_CONFIG, "d/full")), before + 2);
    CHECK_EQ(put(st, NS_CACHE, "k", "", C | CMD_PUT_EXCL, 6), 0);
    CHECK(obj(st, NS_CACHE, "k") != NULL);
    ns_sm_check(st);
    state_free(st);
}

TEST(snapshot_round_trip_and_refusals)
{
    char d1[] = "/tmp/qfs-test-tree-XXXXXX", d2[] = "/tmp/qfs-test-tree-XXXXXX";
    CHECK(mkdtemp(d1) && mkdtemp(d2));
    state_t *st = smrun_state(NULL, NULL);
    CHECK_EQ(mkdir_(st, NS_CONFIG, "app", 0700, 11, 12, 2), 0);
    CHECK_EQ(mkdir_(st, NS_CONFIG, "app/sub", 0711, 11, 12, 2), 0);
    CHECK_EQ(create(st, NS_CONFIG, "app/f", "v", 0640, 11, 12, 3), 0);
    CHECK_EQ(symlink_(st, NS_CONFIG, "app/l", "f", 4), 0);
    CHECK_EQ(symlink_(st, NS_CACHE, "cl", "/abs/x", 4), 0);
    CHECK_EQ(setattr(st, NS_CONFIG, "app/f", 0, CMD_SETATTR_ATIME | CMD_SETATTR_MTIME, 0, 0, 0,
                     -7, 123456789, 5), 0);
    size_t l1, l2;
    char *b1 = snap_bytes(st, d1, &l1);
    state_t *cp = state_new(1 << 20);
    CHECK(b1 && restore_dir(cp, d1) == 0);
    ns_sm_check(cp);
    obj_t *f = obj(cp, NS_CONFIG, "app/f"), *lk = obj(cp, NS_CONFIG, "app/l");
    CHECK(f && f->mode == 0640 && f->uid == 11 && f->gid == 12);
    CHECK_EQ(f->atime_ns, -7);
    CHECK_EQ(f->mtime_ns, 123456789);
    CHECK_EQ(f->mtime_ms, 123);
    CHECK_EQ(f->ctime_ns, 5 * MS);
    CHECK(lk && lk->type == OBJ_LINK && strcmp(val(cp, NS_CONFIG, "app/l"), "f") == 0);
    CHECK_EQ(tree_nlink(obj(cp, NS_CONFIG, "app")), 3);
    CHECK_EQ(obj(cp, NS_CONFIG, "app")->mode, 0700);
    char *b2 = snap_bytes(cp, d2, &l2);
    CHECK(b2 && l1 == l2 && memcmp(b1, b2, l1) == 0);
    free(b1);
    free(b2);
    state_free(cp);
    /* a mode above 07777 */
    f = obj(st, NS_CONFIG, "app/f");
    f->mode = 010644;
    CHECK(tree_sm_verify(st) != NULL);
    CHECK_EQ(refused(st, d1), -QERR_CORRUPT);
    f->mode = 0640;
    /* a link target with a NUL byte, or empty; a link whose mode is not 0777 */
    lk = obj(st, NS_CONFIG, "app/l");
    blob_t *old = lk->val;
    lk->val = blob_new("a\0b", 3);
    CHECK(tree_sm_verify(st) != NULL);
    CHECK_EQ(refused(st, d1), -QERR_CORRUPT);
    blob_unref(lk->val);
    lk->val = blob_new("", 0);
    CHECK_EQ(refused(st, d1), -QERR_CORRUPT);
    blob_unref(lk->val);
    lk->val = old;
    lk->mode = 0755;
    CHECK_EQ(refused(st, d1), -QERR_CORRUPT);
    lk->mode = TREE_MODE_LINK;
    /* a link with a history (config/), or in the LRU list's place (cache/: a TTL) */
    obj_t *cl = obj(st, NS_CACHE, "cl");
    cl->u.cache.ttl_s = 5;
    CHECK(cache_sm_verify(st) != NULL);
    CHECK_EQ(refused(st, d1), -QERR_CORRUPT);
    cl->u.cache.ttl_s = 0;
    /* a ctime after the shard's time */
    f->ctime_ns = 99 * MS;
    CHECK(tree_sm_verify(st) != NULL);
    CHECK_EQ(refused(st, d1), -QERR_CORRUPT);
    f->ctime_ns = 5 * MS;
    CHECK(tree_sm_verify(st) == NULL && cache_sm_verify(st) == NULL);
    CHECK_EQ(refused(st, d1), 0);                 /* repaired, it restores */
    state_free(st);
    rm_dir(d1);
    rm_dir(d2);
}

/* A file replaced by a rename stays findable by id (tree_replaced: its value and the path it
 * had) for a front serving the version a path walk found; an unlink keeps nothing; the list
 * keeps the newest TREE_REPLACED_KEEP; a restore empties it. */
TEST(replaced_files_kept_for_fronts)
{
    state_t *st = smrun_state(NULL, NULL);
    CHECK_EQ(path_op(st, CMD_MKDIR, NS_CACHE, "d", 1), 0);
    CHECK_EQ(put(st, NS_CACHE, "d/t", "old", C, 2), 0);
    CHECK_EQ(put(st, NS_CACHE, "d/tmp", "new", C, 3), 0);
    uint64_t old_id = obj(st, NS_CACHE, "d/t")->id;
    CHECK(tree_replaced(st, old_id) == NULL);
    CHECK_EQ(ren(st, NS_CACHE, "d/tmp", "d/t", 4), 0);
    const obj_t *r = tree_replaced(st, old_id);
    CHECK(r != NULL);
    CHECK(r && strcmp(r->name, "d/t") == 0 && r->val->len == 3 &&
          memcmp(r->val->data, "old", 3) == 0 && r->parent == NULL);
    CHECK(tree_by_id(st, old_id) == NULL);
    CHECK(strcmp(val(st, NS_CACHE, "d/t"), "new") == 0);
    /* an unlink is no replace */
    uint64_t new_id = obj(st, NS_CACHE, "d/t")->id;
    CHECK_EQ(path_op(st, CMD_UNLINK, NS_CACHE, "d/t", 5), 0);
    CHECK(tree_replaced(st, new_id) == NULL);
    /* bounded: the oldest goes first */
    uint64_t first = 0;
    for (int i = 0; i < TREE_REPLACED_KEEP + 1; i++) {
        CHECK_EQ(put(st, NS_CACHE, "d/t", "v", C, 6), 0);
        CHECK_EQ(put(st, NS_CACHE, "d/tmp", "w", C, 6), 0);
        if (i == 0)
            first = obj(st, NS_CACHE, "d/t")->id;
        uint64_t last = obj(st, NS_CACHE, "d/t")->id;
        CHECK_EQ(ren(st, NS_CACHE, "d/tmp", "d/t", 7), 0);
        CHECK(tree_replaced(st, last) != NULL);
    }
    CHECK(tree_replaced(st, first) == NULL);
    CHECK_EQ(st->tree.nreplaced, TREE_REPLACED_KEEP);
    /* not part of the state: a restore (here, of st's own snapshot into st) empties it */
    char dir[] = "/tmp/qfs-test-tree-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    size_t len;
    free(snap_bytes(st, dir, &len));
    CHECK_EQ(restore_dir(st, dir), 0);
    CHECK_EQ(st->tree.nreplaced, 0);
    CHECK(strcmp(val(st, NS_CACHE, "d/t"), "w") == 0);
    rm_dir(dir);
    state_free(st);
}

int main(void)
{
    RUN(creations_carry_owner_and_times);
    RUN(directory_link_counts);
    RUN(setattr_chmod_chown_utimes);
    RUN(setattr_mtime_restarts_a_cache_ttl);
    RUN(symlinks);
    RUN(config_links_have_events_but_no_history);
    RUN(put_if_id);
    RUN(version_1_commands_decode);
    RUN(config_history_kept_across_rename);
    RUN(replaced_files_kept_for_fronts);
    RUN(config_exclusive_create_takes_no_revision);
    RUN(snapshot_round_trip_and_refusals);
    return CHECK_DONE();
}
