/* tests/unit/test_state.c — the mount's state machine driven by commands, without FUSE:
 * tree operations and their errnos, cache TTL/sliding/LRU eviction, config revisions,
 * history and events, the command time decided at apply (never backwards, continued after a
 * restore), the effects handed to the delivery hook after the lock is released, and
 * determinism (the same log gives byte-identical snapshots; a snapshot restores to the same
 * state). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cluster/snapshot.h"
#include "fs/cache.h"
#include "fs/cmd.h"
#include "fs/config.h"
#include "fs/ns_sm.h"
#include "fs/session_sm.h"
#include "fs/state.h"
#include "tests/unit/check.h"
#include "tests/unit/statesnap.h"

static uint64_t idx;

static int apply(state_t *st, cmdbuf_t *b)
{
    sm_result_t res;
    memset(&res, 0, sizeof(res));
    state_sm_ops.apply(st, ++idx, b->p, b->len, &res);
    free(b->p);
    ns_sm_check(st);
    return res.code;
}

static int put(state_t *st, int ns, const char *path, const char *val, uint8_t flags,
               uint64_t now)
{
    cmdbuf_t b;
    cmd_begin(&b, CMD_PUT, (uint8_t)ns, now);
    cmd_str(&b, path);
    cmd_u8(&b, flags);
    cmd_bytes(&b, val, strlen(val));
    return apply(st, &b);
}

static int path_op(state_t *st, uint8_t op, int ns, const char *path, uint64_t now)
{
    cmdbuf_t b;
    cmd_begin(&b, op, (uint8_t)ns, now);
    cmd_str(&b, path);
    return apply(st, &b);
}

static int ren(state_t *st, int ns, const char *from, const char *to)
{
    cmdbuf_t b;
    cmd_begin(&b, CMD_RENAME, (uint8_t)ns, 1);
    cmd_str(&b, from);
    cmd_str(&b, to);
    cmd_u8(&b, 0);
    return apply(st, &b);
}

static int setx(state_t *st, const char *path, const char *name, const char *val, uint64_t now)
{
    cmdbuf_t b;
    cmd_begin(&b, CMD_SETXATTR, NS_CACHE, now);
    cmd_str(&b, path);
    cmd_str(&b, name);
    cmd_bytes(&b, val, strlen(val));
    return apply(st, &b);
}

static const char *val(state_t *st, int ns, const char *path)
{
    static char buf[4096];
    obj_t *o = state_resolve(st, ns, path, strlen(path));
    if (!o || o->type != OBJ_FILE)
        return NULL;
    memcpy(buf, o->val->data, o->val->len);
    buf[o->val->len] = 0;
    return buf;
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
    CHECK_EQ(put(st, NS_CACHE, ".hidden", "x", C, 3), -EINVAL);
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
    CHECK(state_resolve(st, NS_CACHE, "d2/e", 4) != NULL);
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
    cmd_begin(&b, CMD_PUT, NS_CACHE, 1);
    cmd_str(&b, path);
    cmd_u8(&b, CMD_PUT_CREATE | CMD_PUT_ID);
    cmd_u64(&b, id);
    cmd_bytes(&b, "v", 1);
    return apply(st, &b);
}

TEST(proposer_picked_ids)
{
    state_t *st = state_new(1 << 20);
    CHECK_EQ(put_id(st, "a", STATE_PID_FIRST + 5), 0);
    CHECK_EQ(state_resolve(st, NS_CACHE, "a", 1)->id, STATE_PID_FIRST + 5);
    CHECK_EQ(st->next_pid, STATE_PID_FIRST + 6);
    /* an id already in use, or outside the range, is replaced by one of apply's own */
    CHECK_EQ(put_id(st, "b", STATE_PID_FIRST + 5), 0);
    CHECK(state_resolve(st, NS_CACHE, "b", 1)->id < STATE_PID_FIRST);
    CHECK_EQ(put_id(st, "c", 12345), 0);
    CHECK(state_resolve(st, NS_CACHE, "c", 1)->id != 12345);
    CHECK_EQ(put_id(st, "d", STATE_PID_END), 0);
    CHECK(state_resolve(st, NS_CACHE, "d", 1)->id < STATE_PID_FIRST);
    /* an existing file keeps its id; the value is replaced */
    CHECK_EQ(put_id(st, "a", STATE_PID_FIRST + 9), 0);
    CHECK_EQ(state_resolve(st, NS_CACHE, "a", 1)->id, STATE_PID_FIRST + 5);
    CHECK_EQ(st->next_pid, STATE_PID_FIRST + 6);
    state_free(st);
}

static int wr(state_t *st, const char *path, uint8_t flags, uint64_t off, const char *data)
{
    cmdbuf_t b;
    cmd_begin(&b, CMD_WRITE, NS_CACHE, 1);
    cmd_str(&b, path);
    cmd_u8(&b, flags);
    cmd_u64(&b, off);
    cmd_bytes(&b, data, strlen(data));
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
    obj_t *o = state_resolve(st, NS_CACHE, "w", 1);
    CHECK_EQ(o->val->len, 6);
    CHECK(memcmp(o->val->data, "new\0\0z", 6) == 0);
    CHECK_EQ(wr(st, "w", CMD_WRITE_SETLEN, 2, ""), 0);            /* truncate */
    CHECK(strcmp(val(st, NS_CACHE, "w"), "ne") == 0);
    CHECK_EQ(wr(st, "w", CMD_WRITE_SETLEN, 2, "data"), -EINVAL);
    CHECK_EQ(wr(st, "w", 0, (1u << 20), "x"), -EFBIG);
    CHECK(strcmp(val(st, NS_CACHE, "w"), "ne") == 0);
    CHECK_EQ(st->cache_bytes, 2);
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
    obj_t *a = state_resolve(st, NS_CACHE, "s/a", 3);
    CHECK_EQ(a->u.cache.expires_ms, 12000);       /* the directory's default TTL */
    CHECK(state_cache_live(a, 11999));
    CHECK(!state_cache_live(a, 12000));
    /* The sweeper collects due keys only. */
    cmdbuf_t body = { 0 };
    CHECK_EQ(cache_collect_expired(st, 11999, &body, 100), 0);
    CHECK_EQ(cache_collect_expired(st, 12000, &body, 100), 1);
    free(body.p);
    /* An EXPIRE for a version that was rewritten since is a no-op. */
    CHECK_EQ(put(st, NS_CACHE, "s/a", "y", 0, 5000), 0);   /* expires now 15000 */
    cmdbuf_t b;
    cmd_begin(&b, CMD_EXPIRE, NS_CACHE, 13000);
    cmd_u32(&b, 1);
    cmd_str(&b, "s/a");
    cmd_u64(&b, 12000);
    CHECK_EQ(apply(st, &b), 0);
    CHECK(state_resolve(st, NS_CACHE, "s/a", 3) != NULL);
    cmd_begin(&b, CMD_EXPIRE, NS_CACHE, 15000);
    cmd_u32(&b, 1);
    cmd_str(&b, "s/a");
    cmd_u64(&b, 15000);
    CHECK_EQ(apply(st, &b), 0);
    CHECK(state_resolve(st, NS_CACHE, "s/a", 3) == NULL);
    CHECK_EQ(st->cache_keys, 0);
    CHECK_EQ(st->cache_bytes, 0);
    /* A key past its expiry is gone for apply too, before any EXPIRE: an exclusive create
     * or a mkdir of its name succeeds, and a new key does not inherit its TTL. */
    CHECK_EQ(put(st, NS_CACHE, "s/b", "x", C, 20000), 0);        /* expires 30000 */
    CHECK_EQ(setx(st, "s/b", "user.ttl", "1", 20000), 0);          /* expires 21000 */
    CHECK_EQ(put(st, NS_CACHE, "s/b", "y", C | CMD_PUT_EXCL, 21000), 0);
    CHECK_EQ(state_resolve(st, NS_CACHE, "s/b", 3)->u.cache.ttl_s, 10);
    CHECK_EQ(state_resolve(st, NS_CACHE, "s/b", 3)->u.cache.expires_ms, 31000);
    CHECK_EQ(put(st, NS_CACHE, "s/c", "z", C, 40000), 0);
    CHECK_EQ(path_op(st, CMD_MKDIR, NS_CACHE, "s/c", 50000), 0);   /* s/c expired at 50000 */
    CHECK(state_resolve(st, NS_CACHE, "s/c", 3)->type == OBJ_DIR);
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
    cmdbuf_t b;
    cmd_begin(&b, CMD_TOUCH, NS_CACHE, 4000);
    cmd_u32(&b, 1);
    cmd_str(&b, "sess/u1");
    CHECK_EQ(apply(st, &b), 0);
    CHECK_EQ(state_resolve(st, NS_CACHE, "sess/u1", 7)->u.cache.expires_ms, 9000);
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
    CHECK_EQ(st->cache_bytes, 1000);
    /* a read of k0 (TOUCH) makes k1 the least recently used */
    cmdbuf_t b;
    cmd_begin(&b, CMD_TOUCH, NS_CACHE, 10);
    cmd_u32(&b, 1);
    cmd_str(&b, "k0");
    CHECK_EQ(apply(st, &b), 0);
    CHECK_EQ(put(st, NS_CACHE, "k5", v, C, 11), 0);
    CHECK(val(st, NS_CACHE, "k0") != NULL);
    CHECK(val(st, NS_CACHE, "k1") == NULL);
    CHECK(val(st, NS_CACHE, "k5") != NULL);
    CHECK(st->cache_bytes <= 1000);
    CHECK_EQ(st->cache_evictions, 1);
    /* Lowering the (replicated) cap evicts from the cold end at once. */
    cmd_begin(&b, CMD_SETCAP, NS_CACHE, 12);
    cmd_u64(&b, 400);
    CHECK_EQ(apply(st, &b), 0);
    CHECK_EQ(st->cache_max_bytes, 400);
    CHECK(st->cache_bytes <= 400);
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
    obj_t *db = state_resolve(st, NS_CONFIG, "app/db", 6);
    CHECK_EQ(db->u.config.rev, 12);
    CHECK(state_config_version(db, 1) == NULL);   /* only the last 10 are kept */
    CHECK(state_config_version(db, 2) == NULL);
    CHECK(state_config_version(db, 3) != NULL);
    CHECK(memcmp(state_config_version(db, 12)->data, "v12", 3) == 0);
    CHECK_EQ(state_resolve(st, NS_CONFIG, "app", 3)->u.config.rev, 12);
    CHECK_EQ(path_op(st, CMD_UNLINK, NS_CONFIG, "app/db", 14), 0);
    CHECK_EQ(st->config_rev, 14);
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
    obj_t *o = state_resolve(st, NS_CONFIG, path, strlen(path));
    return o ? o->u.config.rev : 0;
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
    state_free(a);
    state_free(b);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
    CHECK_EQ(system(cmd), 0);
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
    CHECK(a->cache_evictions > 0);           /* the cap was hit: eviction is in the log */
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
    CHECK_EQ(c->cache_keys, a->cache_keys);
    CHECK_EQ(c->config_rev, a->config_rev);
    free(sa);
    free(sb);
    free(sc);
    state_free(a);
    state_free(b);
    state_free(c);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf %s %s %s", d1, d2, d3);
    CHECK_EQ(system(cmd), 0);
}

/* Opens a session at now (lease 10 s); returns its id, or 0. */
static uint64_t sess_open(state_t *st, uint64_t now)
{
    cmdbuf_t b;
    sm_result_t res;
    memset(&res, 0, sizeof(res));
    cmd_begin(&b, SOP_OPEN, SESSION_CMD_NS, now);
    cmd_str(&b, "n1");
    cmd_u32(&b, 1);
    cmd_u64(&b, 10000);
    state_sm_ops.apply(st, ++idx, b.p, b.len, &res);
    free(b.p);
    uint64_t sid = 0;
    if (res.code == 0)
        memcpy(&sid, res.data, 8);
    return sid;
}

static int sess_cmd(state_t *st, uint8_t op, uint64_t sid, uint64_t now)
{
    cmdbuf_t b;
    cmd_begin(&b, op, SESSION_CMD_NS, now);
    cmd_u64(&b, sid);
    if (op == SOP_RENEW)
        cmd_u64(&b, 10000);
    else
        cmd_u8(&b, 1);              /* SOP_END only if expired */
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
    CHECK_EQ(state_resolve(st, NS_CACHE, "d", 1)->mtime_ms, 50000);
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
    state_free(st);
    state_free(r);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
    CHECK_EQ(system(cmd), 0);
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
    return CHECK_DONE();
}
