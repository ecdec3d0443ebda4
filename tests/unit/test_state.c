/* tests/unit/test_state.c — the mount's state machine driven by commands, without FUSE:
 * tree operations and their errnos, cache TTL/sliding/LRU eviction, config revisions,
 * history and events, the command time decided at apply (never backwards, continued after a
 * restore), the effects handed to the delivery hook after the lock is released,
 * determinism (the same log gives byte-identical snapshots; a snapshot restores to the same
 * state), two shards in one process, commands applied whole or not at all, and the
 * invariant checks (run after every apply) and restore refusing broken states. Every
 * command is built with the modules' encoders. */
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
#include "fs/session_sm.h"
#include "fs/state.h"
#include "tests/unit/check.h"
#include "tests/unit/smrun.h"
#include "tests/unit/statesnap.h"

static uint64_t idx;

/* Applies b (and frees it), then asserts every invariant (ns_sm_check). */
static int apply(state_t *st, cmdbuf_t *b) { return smrun_apply(st, &idx, b, NULL); }

static int put(state_t *st, int ns, const char *path, const char *val, uint8_t flags,
               uint64_t now)
{
    cmdbuf_t b;
    tree_cmd_put(&b, now, ns, path, flags, 0, val, strlen(val));
    return apply(st, &b);
}

static int path_op(state_t *st, uint8_t op, int ns, const char *path, uint64_t now)
{
    cmdbuf_t b;
    tree_cmd_path(&b, op, now, ns, path);
    return apply(st, &b);
}

static int ren(state_t *st, int ns, const char *from, const char *to)
{
    cmdbuf_t b;
    tree_cmd_rename(&b, 1, ns, from, to, 0);
    return apply(st, &b);
}

static int setx(state_t *st, const char *path, const char *name, const char *val, uint64_t now)
{
    cmdbuf_t b;
    tree_cmd_setxattr(&b, now, NS_CACHE, path, name, val, strlen(val));
    return apply(st, &b);
}

static int expire(state_t *st, const char *path, uint64_t exp, uint64_t now)
{
    cmdbuf_t b;
    cache_cmd_expire(&b, now);
    cache_cmd_expire_add(&b, path, exp);
    return apply(st, &b);
}

static int touch(state_t *st, const char *path, uint64_t now)
{
    cmdbuf_t b;
    cache_cmd_touch(&b, now);
    cache_cmd_touch_add(&b, path);
    return apply(st, &b);
}

static const char *val(state_t *st, int ns, const char *path)
{
    static char buf[4096];
    obj_t *o = tree_resolve(st, ns, path, strlen(path));
    if (!o || o->type != OBJ_FILE)
        return NULL;
    memcpy(buf, o->val->data, o->val->len);
    buf[o->val->len] = 0;
    return buf;
}

static cache_stats_t stats(const state_t *st)
{
    cache_stats_t cs;
    cache_sm_stats(st, &cs);
    return cs;
}

static obj_t *obj(state_t *st, int ns, const char *path)
{
    return tree_resolve(st, ns, path, strlen(path));
}

#define C CMD_PUT_CREATE

TEST(tree_ops_and_errnos)
{
    state_t *st = state_new(1 << 20);
    CHECK_EQ(put(st, NS_CACHE, "k", "v1", C, 1), 0);
    CHECK(strcmp(val(st, NS_CACHE, "k"), "v1") == 0);
    CHECK_EQ(put(st, NS_CACHE, "k", "v2", 0, 2), 0);
    CHECK(strcmp(val(st, NS_CACHE, "k"), "v2") == 0);
    CHECK_EQ(put(st, NS_CACHE, "k", "x", C | CMD_PUT_EXCL, 3), -EEXIST);
    CHECK_EQ(put(st, NS_CACHE, "k", "x", C | CMD_PUT_KEEP, 3), 0);
    CHECK(strcmp(val(st, NS_CACHE, "k"), "v2") == 0);
    CHECK_EQ(put(st, NS_CACHE, "missing", "x", 0, 3), -ENOENT);
    CHECK_EQ(put(st, NS_CACHE, "nodir/k", "x", C, 3), -ENOENT);
    CHECK_EQ(put(st, NS_CACHE, "k/sub", "x", C, 3), -ENOTDIR);
    CHECK_EQ(put(st, NS_CACHE, "..", "x", C, 3), -EINVAL);
    CHECK_EQ(path_op(st, CMD_MKDIR, NS_CACHE, "d", 4), 0);
    CHECK_EQ(path_op(st, CMD_MKDIR, NS_CACHE, "d", 4), -EEXIST);
    CHECK_EQ(put(st, NS_CACHE, "d", "x", C, 3), -EISDIR);
    CHECK_EQ(put(st, NS_CACHE, "d/a", "1", C, 5), 0);
    CHECK_EQ(path_op(st, CMD_RMDIR, NS_CACHE, "d", 6), -ENOTEMPTY);
    CHECK_EQ(path_op(st, CMD_UNLINK, NS_CACHE, "d", 6), -EISDIR);
    CHECK_EQ(path_op(st, CMD_RMDIR, NS_CACHE, "k", 6), -ENOTDIR);
    CHECK_EQ(path_op(st, CMD_UNLINK, NS_CACHE, "", 6), -EPERM);
    CHECK_EQ(path_op(st, CMD_RMDIR, NS_CACHE, "", 6), -EPERM);
    /* rename over an existing key is atomic replacement */
    CHECK_EQ(ren(st, NS_CACHE, "d/a", "k"), 0);
    CHECK(strcmp(val(st, NS_CACHE, "k"), "1") == 0);
    CHECK(val(st, NS_CACHE, "d/a") == NULL);
    CHECK_EQ(path_op(st, CMD_MKDIR, NS_CACHE, "d/e", 7), 0);
    CHECK_EQ(ren(st, NS_CACHE, "d", "d/e/f"), -EINVAL);
    CHECK_EQ(ren(st, NS_CACHE, "k", "d"), -EISDIR);
    CHECK_EQ(ren(st, NS_CACHE, "d", "k"), -ENOTDIR);
    /* no object may end up with a path over 4000 bytes, not even by moving a directory */
    char deep[4100];
    memset(deep, 'a', 200);
    deep[200] = 0;
    for (int i = 0; i < 19; i++) {               /* d/e/aaa.../aaa... : about 3800 bytes */
        char p2[4100];
        snprintf(p2, sizeof(p2), "d/e%s", "");
        size_t l = strlen(p2);
        for (int k = 0; k <= i; k++) {
            p2[l++] = '/';
            memcpy(p2 + l, deep, 200);
            l += 200;
        }
        p2[l] = 0;
        CHECK_EQ(path_op(st, CMD_MKDIR, NS_CACHE, p2, 7), 0);
    }
    CHECK_EQ(path_op(st, CMD_MKDIR, NS_CACHE, "long-name-of-a-directory-x", 7), 0);
    char to[300];
    memset(to, 'b', 250);
    to[250] = 0;
    char full[400];
    snprintf(full, sizeof(full), "long-name-of-a-directory-x/%s", to);
    CHECK_EQ(ren(st, NS_CACHE, "d/e", full), -ENAMETOOLONG);
    CHECK_EQ(ren(st, NS_CACHE, "d", "d2"), 0);
    CHECK(tree_resolve(st, NS_CACHE, "d2/e", 4) != NULL);
    CHECK_EQ(ren(st, NS_CACHE, "d2/e", "deep"), 0);
    CHECK_EQ(path_op(st, CMD_RMDIR, NS_CACHE, "d2/e", 8), -ENOENT);
    CHECK_EQ(path_op(st, CMD_RMDIR, NS_CACHE, "d2", 8), 0);
    /* oversized values are refused and the old value kept */
    char *big = malloc((1 << 20) + 2);
    memset(big, 'b', (1 << 20) + 1);
    big[(1 << 20) + 1] = 0;
    CHECK_EQ(put(st, NS_CACHE, "k", big, 0, 9), -EFBIG);
    free(big);
    CHECK(strcmp(val(st, NS_CACHE, "k"), "1") == 0);
    /* malformed commands are refused, not crashed on */
    uint8_t junk[] = { 1, CMD_PUT, NS_CACHE, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff };
    sm_result_t res = { 0 };
    state_sm_ops.apply(st, ++idx, junk, sizeof(junk), &res);
    CHECK_EQ(res.code, -EINVAL);
    uint8_t badver[] = { 9, CMD_PUT, NS_CACHE };
    state_sm_ops.apply(st, ++idx, badver, sizeof(badver), &res);
    CHECK_EQ(res.code, -EINVAL);
    state_free(st);
}

static int put_id(state_t *st, const char *path, uint64_t id)
{
    cmdbuf_t b;
    tree_cmd_put(&b, 1, NS_CACHE, path, CMD_PUT_CREATE, id, "v", 1);
    return apply(st, &b);
}

TEST(proposer_picked_ids)
{
    state_t *st = state_new(1 << 20);
    CHECK_EQ(put_id(st, "a", STATE_PID_FIRST + 5), 0);
    CHECK_EQ(tree_resolve(st, NS_CACHE, "a", 1)->id, STATE_PID_FIRST + 5);
    CHECK_EQ(st->tree.next_pid, STATE_PID_FIRST + 6);
    /* an id already in use, or outside the range, is replaced by one of apply's own */
    CHECK_EQ(put_id(st, "b", STATE_PID_FIRST + 5), 0);
    CHECK(tree_resolve(st, NS_CACHE, "b", 1)->id < STATE_PID_FIRST);
    CHECK_EQ(put_id(st, "c", 12345), 0);
    CHECK(tree_resolve(st, NS_CACHE, "c", 1)->id != 12345);
    CHECK_EQ(put_id(st, "d", STATE_PID_END), 0);
    CHECK(tree_resolve(st, NS_CACHE, "d", 1)->id < STATE_PID_FIRST);
    /* an existing file keeps its id; the value is replaced */
    CHECK_EQ(put_id(st, "a", STATE_PID_FIRST + 9), 0);
    CHECK_EQ(tree_resolve(st, NS_CACHE, "a", 1)->id, STATE_PID_FIRST + 5);
    CHECK_EQ(st->tree.next_pid, STATE_PID_FIRST + 6);
    state_free(st);
}

static int wr(state_t *st, const char *path, uint8_t flags, uint64_t off, const char *data)
{
    cmdbuf_t b;
    tree_cmd_write(&b, 1, NS_CACHE, path, flags, 0, off, data, strlen(data));
    return apply(st, &b);
}

/* CMD_WRITE applies one write() request to the value as it is at apply time. */
TEST(ranged_writes)
{
    state_t *st = state_new(1 << 20);
    CHECK_EQ(wr(st, "w", 0, 0, "x"), -ENOENT);
    CHECK_EQ(wr(st, "w", CMD_PUT_CREATE, 0, "hello world"), 0);
    CHECK(strcmp(val(st, NS_CACHE, "w"), "hello world") == 0);
    CHECK_EQ(wr(st, "w", 0, 0, "J"), 0);                          /* patch in place */
    CHECK(strcmp(val(st, NS_CACHE, "w"), "Jello world") == 0);
    CHECK_EQ(wr(st, "w", CMD_WRITE_APPEND, 0, "!"), 0);           /* offset ignored */
    CHECK(strcmp(val(st, NS_CACHE, "w"), "Jello world!") == 0);
    CHECK_EQ(wr(st, "w", CMD_WRITE_TRUNC, 0, "new"), 0);          /* pending O_TRUNC */
    CHECK(strcmp(val(st, NS_CACHE, "w"), "new") == 0);
    CHECK_EQ(wr(st, "w", 0, 5, "z"), 0);                          /* a hole reads as NULs */
    obj_t *o = tree_resolve(st, NS_CACHE, "w", 1);
    CHECK_EQ(o->val->len, 6);
    CHECK(memcmp(o->val->data, "new\0\0z", 6) == 0);
    CHECK_EQ(wr(st, "w", CMD_WRITE_SETLEN, 2, ""), 0);            /* truncate */
    CHECK(strcmp(val(st, NS_CACHE, "w"), "ne") == 0);
    CHECK_EQ(wr(st, "w", CMD_WRITE_SETLEN, 2, "data"), -EINVAL);
    CHECK_EQ(wr(st, "w", 0, (1u << 20), "x"), -EFBIG);
    CHECK(strcmp(val(st, NS_CACHE, "w"), "ne") == 0);
    CHECK_EQ(stats(st).bytes, 2);
    state_free(st);
}

TEST(cache_ttl_and_expiry)
{
    state_t *st = state_new(1 << 20);
    CHECK_EQ(path_op(st, CMD_MKDIR, NS_CACHE, "s", 1000), 0);
    CHECK_EQ(setx(st, "s", "user.ttl", "10", 1000), 0);
    CHECK_EQ(setx(st, "s", "user.ttl", "abc", 1000), -EINVAL);
    CHECK_EQ(setx(st, "s", "user.ttl", "-1", 1000), -EINVAL);
    CHECK_EQ(setx(st, "s", "user.nope", "1", 1000), -ENOTSUP);
    CHECK_EQ(put(st, NS_CACHE, "s/a", "x", C, 2000), 0);
    obj_t *a = tree_resolve(st, NS_CACHE, "s/a", 3);
    CHECK_EQ(a->u.cache.expires_ms, 12000);       /* the directory's default TTL */
    CHECK(cache_sm_live(a, 11999));
    CHECK(!cache_sm_live(a, 12000));
    /* The sweeper collects due keys only. */
    cmdbuf_t b;
    cache_cmd_expire(&b, 12000);
    CHECK_EQ(cache_sm_collect_expired(st, 11999, &b, 100), 0);
    CHECK_EQ(cache_sm_collect_expired(st, 12000, &b, 100), 1);
    CHECK_EQ(cache_cmd_count(&b), 1);
    free(b.p);
    /* An EXPIRE for a version that was rewritten since is a no-op. */
    CHECK_EQ(put(st, NS_CACHE, "s/a", "y", 0, 5000), 0);   /* expires now 15000 */
    CHECK_EQ(expire(st, "s/a", 12000, 13000), 0);
    CHECK(tree_resolve(st, NS_CACHE, "s/a", 3) != NULL);
    CHECK_EQ(expire(st, "s/a", 15000, 15000), 0);
    CHECK(tree_resolve(st, NS_CACHE, "s/a", 3) == NULL);
    CHECK_EQ(stats(st).keys, 0);
    CHECK_EQ(stats(st).bytes, 0);
    /* A key past its expiry is gone for apply too, before any EXPIRE: an exclusive create
     * or a mkdir of its name succeeds, and a new key does not inherit its TTL. */
    CHECK_EQ(put(st, NS_CACHE, "s/b", "x", C, 20000), 0);        /* expires 30000 */
    CHECK_EQ(setx(st, "s/b", "user.ttl", "1", 20000), 0);          /* expires 21000 */
    CHECK_EQ(put(st, NS_CACHE, "s/b", "y", C | CMD_PUT_EXCL, 21000), 0);
    CHECK_EQ(tree_resolve(st, NS_CACHE, "s/b", 3)->u.cache.ttl_s, 10);
    CHECK_EQ(tree_resolve(st, NS_CACHE, "s/b", 3)->u.cache.expires_ms, 31000);
    CHECK_EQ(put(st, NS_CACHE, "s/c", "z", C, 40000), 0);
    CHECK_EQ(path_op(st, CMD_MKDIR, NS_CACHE, "s/c", 50000), 0);   /* s/c expired at 50000 */
    CHECK(tree_resolve(st, NS_CACHE, "s/c", 3)->type == OBJ_DIR);
    state_free(st);
}

TEST(cache_sliding_ttl)
{
    state_t *st = state_new(1 << 20);
    CHECK_EQ(path_op(st, CMD_MKDIR, NS_CACHE, "sess", 0), 0);
    CHECK_EQ(setx(st, "sess", "user.ttl", "5", 0), 0);
    CHECK_EQ(setx(st, "sess", "user.ttl_sliding", "2", 0), -EINVAL);
    CHECK_EQ(setx(st, "sess", "user.ttl_sliding", "1", 0), 0);
    CHECK_EQ(put(st, NS_CACHE, "sess/u1", "x", C, 1000), 0);
    CHECK_EQ(touch(st, "sess/u1", 4000), 0);
    CHECK_EQ(tree_resolve(st, NS_CACHE, "sess/u1", 7)->u.cache.expires_ms, 9000);
    state_free(st);
}

TEST(cache_lru_eviction)
{
    state_t *st = state_new(1000);
    char k[16], v[201];
    memset(v, 'v', 200);
    v[200] = 0;
    for (int i = 0; i < 5; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        CHECK_EQ(put(st, NS_CACHE, k, v, C, (uint64_t)i), 0);
    }
    CHECK_EQ(stats(st).bytes, 1000);
    /* a read of k0 (TOUCH) makes k1 the least recently used */
    CHECK_EQ(touch(st, "k0", 10), 0);
    CHECK_EQ(put(st, NS_CACHE, "k5", v, C, 11), 0);
    CHECK(val(st, NS_CACHE, "k0") != NULL);
    CHECK(val(st, NS_CACHE, "k1") == NULL);
    CHECK(val(st, NS_CACHE, "k5") != NULL);
    CHECK(stats(st).bytes <= 1000);
    CHECK_EQ(stats(st).evictions, 1);
    /* Lowering the (replicated) cap evicts from the cold end at once. */
    cmdbuf_t b;
    cache_cmd_setcap(&b, 12, 400);
    CHECK_EQ(apply(st, &b), 0);
    CHECK_EQ(stats(st).cap, 400);
    CHECK(stats(st).bytes <= 400);
    CHECK(val(st, NS_CACHE, "k5") != NULL);
    CHECK(val(st, NS_CACHE, "k2") == NULL);
    state_free(st);
}

TEST(config_revisions_history_events)
{
    state_t *st = state_new(1 << 20);
    CHECK_EQ(path_op(st, CMD_MKDIR, NS_CONFIG, "app", 1), 0);
    CHECK_EQ(path_op(st, CMD_MKDIR, NS_CONFIG, "web", 1), 0);
    CHECK_EQ(put(st, NS_CONFIG, "app/db@1", "x", C, 1), -EINVAL);
    char v[16];
    for (int i = 1; i <= 12; i++) {
        snprintf(v, sizeof(v), "v%d", i);
        CHECK_EQ(put(st, NS_CONFIG, "app/db", v, C, (uint64_t)i), 0);
    }
    CHECK_EQ(put(st, NS_CONFIG, "web/port", "80", C, 13), 0);
    obj_t *db = tree_resolve(st, NS_CONFIG, "app/db", 6);
    CHECK_EQ(config_sm_obj_rev(db), 12);
    CHECK(config_sm_version(db, 1) == NULL);   /* only the last 10 are kept */
    CHECK(config_sm_version(db, 2) == NULL);
    CHECK(config_sm_version(db, 3) != NULL);
    CHECK(memcmp(config_sm_version(db, 12)->data, "v12", 3) == 0);
    CHECK_EQ(config_sm_obj_rev(obj(st, NS_CONFIG, "app")), 12);
    CHECK_EQ(path_op(st, CMD_UNLINK, NS_CONFIG, "app/db", 14), 0);
    CHECK_EQ(config_sm_rev(st), 14);
    char buf[4096];
    uint64_t cur = 11;
    int n = config_read_events(st, "app", &cur, buf, sizeof(buf));
    CHECK(n > 0);
    buf[n] = 0;
    CHECK(strcmp(buf, "12 put config/app/db\n14 delete config/app/db\n") == 0);
    CHECK_EQ(cur, 14);
    cur = 0;
    n = config_read_events(st, "web", &cur, buf, sizeof(buf));
    buf[n] = 0;
    CHECK(strcmp(buf, "13 put config/web/port\n") == 0);
    /* Rename: a delete at the old path and a put at the new one. */
    CHECK_EQ(ren(st, NS_CONFIG, "web/port", "app/port"), 0);
    cur = 14;
    n = config_read_events(st, "", &cur, buf, sizeof(buf));
    buf[n] = 0;
    CHECK(strcmp(buf, "15 delete config/web/port\n16 put config/app/port\n") == 0);
    state_free(st);
}

TEST(config_events_compaction_gives_estale)
{
    state_t *st = state_new(1 << 20);
    for (int i = 0; i < CONFIG_EVENTS_KEPT + 5; i++)
        CHECK_EQ(put(st, NS_CONFIG, "k", "v", C, 1), 0);
    char buf[256];
    uint64_t cur = 2;
    CHECK_EQ(config_read_events(st, "", &cur, buf, sizeof(buf)), -ESTALE);
    cur = 5;   /* events after 5 start at 6, the oldest kept */
    CHECK(config_read_events(st, "", &cur, buf, sizeof(buf)) > 0);
    state_free(st);
}

/* Removes the test's temp directories (a NULL ends the list) and frees its shards. */
static int cleanup(state_t *const *shards, const char *const *dirs)
{
    for (; *shards; shards++)
        state_free(*shards);
    int rc = 0;
    for (; *dirs; dirs++) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", *dirs);
        rc |= system(cmd);
    }
    return rc;
}

/* Snapshots src into dir and restores that into dst. Returns 0 or a negative code. */
static int copy_by_snapshot(state_t *src, state_t *dst, const char *dir)
{
    size_t len;
    char *bytes = snap_bytes(src, dir, &len);
    if (!bytes)
        return -1;
    free(bytes);
    return restore_dir(dst, dir);
}

static uint64_t rev_of(state_t *st, const char *path)
{
    obj_t *o = obj(st, NS_CONFIG, path);
    return o ? config_sm_obj_rev(o) : 0;
}

/* A replica restored from a snapshot and one that applied the log must give a directory
 * move the same revisions (children are walked in name order, not hash order). */
TEST(config_rename_is_deterministic_after_restore)
{
    char d[] = "/tmp/qfs-test-state-XXXXXX";
    CHECK(mkdtemp(d));
    state_t *a = state_new(1 << 20), *b = state_new(1 << 20);
    CHECK_EQ(path_op(a, CMD_MKDIR, NS_CONFIG, "d", 1), 0);
    CHECK_EQ(put(a, NS_CONFIG, "d/b", "1", C, 1), 0);
    CHECK_EQ(put(a, NS_CONFIG, "d/a", "2", C, 1), 0);
    CHECK_EQ(put(a, NS_CONFIG, "d/c", "3", C, 1), 0);
    CHECK_EQ(copy_by_snapshot(a, b, d), 0);
    CHECK_EQ(ren(a, NS_CONFIG, "d", "e"), 0);
    CHECK_EQ(ren(b, NS_CONFIG, "d", "e"), 0);
    CHECK_EQ(rev_of(a, "e/a"), rev_of(b, "e/a"));
    CHECK_EQ(rev_of(a, "e/b"), rev_of(b, "e/b"));
    CHECK_EQ(rev_of(a, "e/c"), rev_of(b, "e/c"));
    CHECK(rev_of(a, "e/a") < rev_of(a, "e/b"));   /* name order */
    CHECK_EQ(cleanup((state_t *[]){ a, b, NULL }, (const char *[]){ d, NULL }), 0);
}

static void build_log(state_t *st)
{
    CHECK_EQ(path_op(st, CMD_MKDIR, NS_CACHE, "s", 0), 0);
    CHECK_EQ(setx(st, "s", "user.ttl", "60", 0), 0);
    char k[32];
    for (int i = 0; i < 300; i++) {
        snprintf(k, sizeof(k), i % 2 ? "s/key%d" : "key%d", i);
        put(st, NS_CACHE, k, "some value of medium length", C, (uint64_t)i);
    }
    CHECK_EQ(put_id(st, "picked", STATE_PID_FIRST + 77), 0);
    CHECK_EQ(path_op(st, CMD_MKDIR, NS_CONFIG, "app", 1), 0);
    for (int i = 0; i < 30; i++)
        put(st, NS_CONFIG, i % 3 ? "app/a" : "app/b", i % 2 ? "x" : "yy", C, 1000);
}

TEST(determinism_and_snapshot_round_trip)
{
    char d1[] = "/tmp/qfs-test-state-XXXXXX", d2[] = "/tmp/qfs-test-state-XXXXXX",
         d3[] = "/tmp/qfs-test-state-XXXXXX";
    CHECK(mkdtemp(d1) && mkdtemp(d2) && mkdtemp(d3));
    state_t *a = state_new(8000), *b = state_new(8000), *c = state_new(8000);
    idx = 0;
    build_log(a);
    idx = 0;
    build_log(b);
    CHECK(stats(a).evictions > 0);           /* the cap was hit: eviction is in the log */
    size_t la, lb, lc;
    char *sa = snap_bytes(a, d1, &la), *sb = snap_bytes(b, d2, &lb);
    CHECK(sa && sb);
    CHECK_EQ(la, lb);
    CHECK(memcmp(sa, sb, la) == 0);
    /* Restore a's snapshot into c, and c snapshots to the same bytes. */
    CHECK_EQ(restore_dir(c, d1), 0);
    char *sc = snap_bytes(c, d3, &lc);
    CHECK(sc);
    CHECK_EQ(lc, la);
    CHECK(memcmp(sa, sc, la) == 0);
    CHECK_EQ(stats(c).keys, stats(a).keys);
    CHECK_EQ(config_sm_rev(c), config_sm_rev(a));
    free(sa);
    free(sb);
    free(sc);
    CHECK_EQ(cleanup((state_t *[]){ a, b, c, NULL }, (const char *[]){ d1, d2, d3, NULL }), 0);
}

/* Opens a session at now (lease 10 s); returns its id, or 0. */
static uint64_t sess_open(state_t *st, uint64_t now)
{
    cmdbuf_t b;
    sm_result_t res;
    session_cmd_open(&b, now, "n1", 1, 10000);
    uint64_t sid = 0;
    if (smrun_apply(st, &idx, &b, &res) == 0)
        memcpy(&sid, res.data, 8);
    return sid;
}

static int sess_cmd(state_t *st, uint8_t op, uint64_t sid, uint64_t now)
{
    cmdbuf_t b;
    if (op == SOP_RENEW)
        session_cmd_renew(&b, now, sid, 10000);
    else
        session_cmd_end(&b, now, sid, 1);     /* SOP_END only if expired */
    return apply(st, &b);
}

TEST(time_never_goes_backwards_in_the_log)
{
    char d[] = "/tmp/qfs-test-state-XXXXXX";
    CHECK(mkdtemp(d));
    idx = 0;
    state_t *st = state_new(1 << 20), *r = state_new(1 << 20);
    uint64_t sid = sess_open(st, 50000);           /* lease ends at 60000 */
    CHECK(sid);
    CHECK_EQ(st->now_ms, 50000);
    /* A proposer whose clock is behind cannot shorten the lease: the renewal applies at
     * 50000, not 1000, so the lease still ends at 60000, and a mkdir's mtime is 50000. */
    CHECK_EQ(sess_cmd(st, SOP_RENEW, sid, 1000), 0);
    CHECK_EQ(st->sessions.head->expires_ms, 60000);
    CHECK_EQ(path_op(st, CMD_MKDIR, NS_CACHE, "d", 2), 0);
    CHECK_EQ(tree_resolve(st, NS_CACHE, "d", 1)->mtime_ms, 50000);
    CHECK_EQ(st->now_ms, 50000);
    /* An expiry decided by a clock that is behind is judged at the log's time. */
    CHECK_EQ(sess_cmd(st, SOP_END, sid, 59999), -EAGAIN);
    /* A malformed command does not move time. */
    uint8_t junk[3] = { 9, 9, 9 };
    sm_result_t res;
    state_sm_ops.apply(st, ++idx, junk, sizeof(junk), &res);
    CHECK_EQ(res.code, -EINVAL);
    CHECK_EQ(st->now_ms, 59999);
    /* The stamp is in the snapshot: a restored replica continues from it. */
    size_t len;
    char *snap = snap_bytes(st, d, &len);
    CHECK(snap);
    free(snap);
    CHECK_EQ(restore_dir(r, d), 0);
    CHECK_EQ(r->now_ms, 59999);
    CHECK(r->sessions.head && r->sessions.head->id == sid);
    CHECK_EQ(sess_cmd(r, SOP_END, sid, 3), -EAGAIN);   /* at 59999: still renewed */
    CHECK_EQ(sess_cmd(r, SOP_END, sid, 60000), 0);
    CHECK(!r->sessions.head);
    CHECK_EQ(cleanup((state_t *[]){ st, r, NULL }, (const char *[]){ d, NULL }), 0);
}

/* The delivery hook runs after the write lock was released (it can take the lock itself),
 * once per effect, in order, and the effects are gone afterwards. */
static int hook_calls, hook_lock_free;
static uint64_t hook_revs[8];

static void hook(void *arg, effect_t *e)
{
    state_t *st = arg;
    if (pthread_rwlock_trywrlock(&st->lock) == 0) {
        hook_lock_free++;
        pthread_rwlock_unlock(&st->lock);
    }
    if (e->kind == EFF_CONFIG_REV && hook_calls < 8)
        hook_revs[hook_calls] = e->u.config.rev;
    hook_calls++;
}

TEST(effects_are_delivered_after_the_lock_is_released)
{
    idx = 0;
    state_t *st = state_new(1 << 20);
    st->deliver = hook;
    st->deliver_arg = st;
    CHECK_EQ(put(st, NS_CONFIG, "a", "1", C, 1), 0);
    CHECK_EQ(put(st, NS_CONFIG, "b", "2", C, 2), 0);
    CHECK_EQ(put(st, NS_CACHE, "c", "3", C, 3), 0);       /* no config change: no effect */
    CHECK_EQ(put(st, NS_CONFIG, "a/x", "4", C, 4), -ENOTDIR);
    CHECK_EQ(hook_calls, 2);
    CHECK_EQ(hook_lock_free, 2);
    CHECK(hook_revs[0] == 1 && hook_revs[1] == 2);
    CHECK(!st->outbox.head && st->outbox.n == 0);
    state_free(st);
}

/* A restore wakes config/.events watchers (a node that caught up by snapshot install had its
 * parked reads left blocked): one EFF_CONFIG_REV with the restored revision, delivered after
 * the lock like apply's. */
static int cfg_wakes, cfg_wakes_lock_free;
static uint64_t cfg_wake_rev;
static void cfg_hook(void *arg, effect_t *e)
{
    if (e->kind != EFF_CONFIG_REV || e->ns != NS_CONFIG)
        return;                  /* other namespaces' restores wake their own waiters */
    state_t *st = arg;
    if (pthread_rwlock_trywrlock(&st->lock) == 0) {
        cfg_wakes_lock_free++;
        pthread_rwlock_unlock(&st->lock);
    }
    cfg_wake_rev = e->u.config.rev;
    cfg_wakes++;
}

TEST(restore_wakes_config_watchers)
{
    idx = 0;
    state_t *src = state_new(1 << 20), *dst = state_new(1 << 20);
    CHECK_EQ(put(src, NS_CONFIG, "a", "1", C, 1), 0);
    CHECK_EQ(put(src, NS_CONFIG, "b", "2", C, 2), 0);
    dst->deliver = cfg_hook;
    dst->deliver_arg = dst;
    char dir[] = "/tmp/qfs-test-restore-wake-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    size_t len;
    char *bytes = snap_bytes(src, dir, &len);
    CHECK(bytes != NULL);
    free(bytes);
    CHECK_EQ(restore_dir(dst, dir), 0);
    CHECK_EQ(cfg_wakes, 1);
    CHECK_EQ(cfg_wakes_lock_free, 1);
    CHECK(cfg_wake_rev == 2);
    const char *const dirs[] = { dir, NULL };
    state_t *const shards[] = { src, dst, NULL };
    CHECK_EQ(cleanup(shards, dirs), 0);
}

/* Two shards in one process share nothing: values, revisions, LRU order, TTLs, time and
 * snapshots of one are unaffected by traffic on the other. */
TEST(two_shards_are_independent)
{
    char d1[] = "/tmp/qfs-test-state-XXXXXX", d2[] = "/tmp/qfs-test-state-XXXXXX",
         d3[] = "/tmp/qfs-test-state-XXXXXX";
    CHECK(mkdtemp(d1) && mkdtemp(d2) && mkdtemp(d3));
    state_t *a = state_new(1000), *b = state_new(1 << 20);
    CHECK_EQ(put(a, NS_CACHE, "k", "from-a", C, 1000), 0);
    CHECK_EQ(put(b, NS_CACHE, "k", "from-b", C, 5000), 0);
    CHECK_EQ(setx(a, "k", "user.ttl", "10", 1000), 0);
    CHECK_EQ(put(a, NS_CONFIG, "x", "1", C, 1000), 0);
    CHECK_EQ(put(a, NS_CONFIG, "x", "2", C, 1000), 0);
    CHECK_EQ(put(b, NS_CONFIG, "y", "1", C, 5000), 0);
    /* b's snapshot, before a sees more traffic */
    size_t lb1, lb2, la, lc;
    char *sb1 = snap_bytes(b, d1, &lb1);
    CHECK(sb1);
    /* a: fill past its cap (evictions), expire its key, more config revisions */
    char k[16], v[301];
    memset(v, 'v', 300);
    v[300] = 0;
    for (int i = 0; i < 5; i++) {
        snprintf(k, sizeof(k), "f%d", i);
        CHECK_EQ(put(a, NS_CACHE, k, v, C, 2000 + (uint64_t)i), 0);
        CHECK_EQ(touch(a, "k", 2000 + (uint64_t)i), 0);      /* k stays the hottest */
    }
    CHECK_EQ(put(a, NS_CONFIG, "x", "3", C, 3000), 0);
    cmdbuf_t e;
    cache_cmd_expire(&e, 20000);
    CHECK_EQ(cache_sm_collect_expired(b, 20000, &e, 10), 0);   /* b's key has no TTL */
    free(e.p);
    CHECK_EQ(expire(a, "k", 11000, 20000), 0);
    /* a changed, b did not */
    CHECK(val(a, NS_CACHE, "k") == NULL);
    CHECK(strcmp(val(b, NS_CACHE, "k"), "from-b") == 0);
    CHECK_EQ(obj(b, NS_CACHE, "k")->u.cache.expires_ms, 0);
    CHECK(stats(a).evictions > 0 && stats(a).expirations == 1);
    CHECK(stats(b).evictions == 0 && stats(b).expirations == 0 && stats(b).keys == 1);
    CHECK_EQ(stats(a).cap, 1000);
    CHECK_EQ(stats(b).cap, 1 << 20);
    CHECK_EQ(config_sm_rev(a), 3);
    CHECK_EQ(config_sm_rev(b), 1);
    CHECK(obj(a, NS_CONFIG, "y") == NULL && obj(b, NS_CONFIG, "x") == NULL);
    CHECK_EQ(a->now_ms, 20000);
    CHECK_EQ(b->now_ms, 5000);
    /* b snapshots to the same bytes as before; a restored elsewhere leaves b alone */
    char *sb2 = snap_bytes(b, d2, &lb2);
    CHECK(sb2);
    CHECK_EQ(lb1, lb2);
    CHECK(memcmp(sb1, sb2, lb1) == 0);
    char *sa = snap_bytes(a, d3, &la);
    CHECK(sa);
    state_t *c = state_new(1 << 20);
    CHECK_EQ(restore_dir(c, d3), 0);
    char *sc = snap_bytes(c, d3, &lc);
    CHECK(sc && lc == la && memcmp(sa, sc, la) == 0);
    free(sc);
    sc = snap_bytes(b, d2, &lc);
    CHECK(sc && lc == lb1 && memcmp(sb1, sc, lb1) == 0);
    free(sc);
    free(sa);
    free(sb1);
    free(sb2);
    CHECK_EQ(cleanup((state_t *[]){ a, b, c, NULL }, (const char *[]){ d1, d2, d3, NULL }), 0);
}

/* A command is applied whole or not at all: a batch with a malformed tail changes nothing,
 * and a write that would create a file and then not fit creates nothing. */
TEST(commands_are_all_or_nothing)
{
    state_t *st = state_new(600);
    char v[201];
    memset(v, 'v', 200);
    v[200] = 0;
    CHECK_EQ(put(st, NS_CACHE, "k0", v, C, 1), 0);
    CHECK_EQ(put(st, NS_CACHE, "k1", v, C, 2), 0);
    CHECK_EQ(put(st, NS_CACHE, "k2", v, C, 3), 0);
    CHECK_EQ(setx(st, "k2", "user.ttl", "1", 3), 0);          /* k2 expires at 1003 */
    /* TOUCH k0 (would make k1 the coldest), then a cut-off second path: refused whole */
    cmdbuf_t b;
    cache_cmd_touch(&b, 4);
    cache_cmd_touch_add(&b, "k0");
    cache_cmd_touch_add(&b, "k1");
    b.len -= 1;
    CHECK_EQ(apply(st, &b), -EINVAL);
    CHECK_EQ(put(st, NS_CACHE, "k3", v, C, 5), 0);            /* evicts the coldest: k0 */
    CHECK(val(st, NS_CACHE, "k0") == NULL);
    CHECK(val(st, NS_CACHE, "k1") != NULL);
    /* EXPIRE of a due key followed by a short entry: refused, the key stays */
    cache_cmd_expire(&b, 2000);
    cache_cmd_expire_add(&b, "k2", 1003);
    cache_cmd_expire_add(&b, "k1", 0);
    b.len -= 3;
    CHECK_EQ(apply(st, &b), -EINVAL);
    CHECK_EQ(stats(st).expirations, 0);
    CHECK(obj(st, NS_CACHE, "k2") != NULL);
    /* a write at an offset past the limit into a file it would create */
    cmdbuf_t w;
    tree_cmd_write(&w, 2000, NS_CONFIG, "new", CMD_PUT_CREATE, STATE_PID_FIRST + 1,
                   TREE_VALUE_MAX, "x", 1);
    CHECK_EQ(apply(st, &w), -EFBIG);
    CHECK(obj(st, NS_CONFIG, "new") == NULL);
    CHECK_EQ(config_sm_rev(st), 0);
    CHECK_EQ(st->tree.next_pid, STATE_PID_FIRST);
    state_free(st);
}

/* The invariant checks catch a broken state (each verify names what broke), and restore
 * refuses a snapshot of one, or of another format version, leaving an empty valid shard. */
static int write_raw_snapshot(const char *dir, const void *p, size_t n)
{
    snap_writer_t *w;
    int rc = snapshot_begin(dir, 2, 1, &w);
    if (rc == 0 && (rc = snap_writer_put(w, p, n)) < 0) {
        snapshot_abort(w);
        return rc;
    }
    return rc == 0 ? snapshot_commit(w) : rc;
}

static int refused(state_t *src, const char *dir)
{
    size_t len;
    char *bytes = snap_bytes(src, dir, &len);
    free(bytes);
    state_t *dst = state_new(1 << 20);
    int rc = restore_dir(dst, dir);
    ns_sm_check(dst);                           /* left empty and valid */
    if (tree_root(dst, NS_CACHE)->nchildren || config_sm_rev(dst))
        rc = 0;
    state_free(dst);
    return rc;
}

TEST(checks_and_restore_refuse_broken_states)
{
    char d[] = "/tmp/qfs-test-state-XXXXXX";
    CHECK(mkdtemp(d));
    state_t *st = state_new(1 << 20);
    CHECK_EQ(path_op(st, CMD_MKDIR, NS_CACHE, "dir", 1), 0);
    CHECK_EQ(put(st, NS_CACHE, "dir/k", "12345", C, 1), 0);
    CHECK_EQ(put(st, NS_CONFIG, "c", "v", C, 1), 0);
    CHECK(!tree_sm_verify(st) && !cache_sm_verify(st) && !config_sm_verify(st));
    /* the tree: a count that does not match the children */
    obj_t *dir = obj(st, NS_CACHE, "dir");
    dir->nchildren++;
    CHECK(tree_sm_verify(st) != NULL);
    dir->nchildren--;
    /* cache/: a key whose bytes are not those the LRU list counts */
    obj_t *k = obj(st, NS_CACHE, "dir/k");
    blob_t *old = k->val;
    k->val = blob_new("1", 1);
    CHECK(cache_sm_verify(st) != NULL);
    blob_unref(k->val);
    k->val = old;
    /* cache/: a key with the sliding flag only a directory may have */
    k->u.cache.sliding = 1;
    CHECK(cache_sm_verify(st) != NULL);
    CHECK_EQ(refused(st, d), -QERR_CORRUPT);
    k->u.cache.sliding = 0;
    /* config/: a revision above the counter */
    obj_t *c = obj(st, NS_CONFIG, "c");
    c->u.config.rev = 99;
    CHECK(config_sm_verify(st) != NULL);
    CHECK_EQ(refused(st, d), -QERR_CORRUPT);
    c->u.config.rev = 1;
    CHECK(!tree_sm_verify(st) && !cache_sm_verify(st) && !config_sm_verify(st));
    CHECK_EQ(refused(st, d), 0);                /* the repaired state restores */
    /* another format version (2, before the namespace sections) */
    uint8_t v2[] = { 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
    CHECK_EQ(write_raw_snapshot(d, v2, sizeof(v2)), 0);
    state_t *dst = state_new(1 << 20);
    CHECK_EQ(restore_dir(dst, d), -QERR_FORMAT);
    ns_sm_check(dst);
    state_free(dst);
    CHECK_EQ(cleanup((state_t *[]){ st, NULL }, (const char *[]){ d, NULL }), 0);
}

int main(void)
{
    RUN(tree_ops_and_errnos);
    RUN(proposer_picked_ids);
    RUN(ranged_writes);
    RUN(cache_ttl_and_expiry);
    RUN(cache_sliding_ttl);
    RUN(cache_lru_eviction);
    RUN(config_revisions_history_events);
    RUN(config_events_compaction_gives_estale);
    RUN(determinism_and_snapshot_round_trip);
    RUN(config_rename_is_deterministic_after_restore);
    RUN(time_never_goes_backwards_in_the_log);
    RUN(effects_are_delivered_after_the_lock_is_released);
    RUN(restore_wakes_config_watchers);
    RUN(two_shards_are_independent);
    RUN(commands_are_all_or_nothing);
    RUN(checks_and_restore_refuse_broken_states);
    return CHECK_DONE();
}
