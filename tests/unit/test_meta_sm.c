/* tests/unit/test_meta_sm.c — the meta group's state machine (cluster/meta_sm.h,
 * docs/META.md): every command's effect and every refusal code, FOUND proposed twice,
 * determinism (same commands, same snapshot bytes; a restored record snapshots to the same
 * bytes), restore refusing edited and truncated snapshots, random and truncated commands
 * that never crash and never change the record when refused, the change hook firing exactly
 * when the record changed, and readers on another thread during applies. Every apply goes
 * through ap(), which checks the result bytes, the version step, the hook and
 * meta_sm_check. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/bytes.h"
#include "cluster/err.h"
#include "cluster/meta_sm.h"
#include "cluster/snapshot.h"
#include "tests/unit/check.h"

#define BAD_APPLY 9999   /* what ap() returns when apply broke its contract */

static char base[] = "/tmp/test_meta_sm.XXXXXX";

/* ---- fixture: a record and what its change hook saw ---- */

typedef struct fx {
    meta_sm_t *sm;
    int calls;                 /* hook calls */
    uint64_t seen_version;     /* the version the hook's last copy showed */
    int hook_bad;              /* the hook could not copy the record */
} fx_t;

static void on_change(void *arg, const meta_sm_t *sm)
{
    fx_t *f = arg;
    meta_view_t v;
    f->calls++;
    /* The hook runs with no lock held: the read API works from inside it. */
    if (meta_sm_copy(sm, &v) < 0) {
        f->hook_bad++;
        return;
    }
    f->seen_version = v.version;
    meta_view_free(&v);
}

static void fx_init(fx_t *f)
{
    memset(f, 0, sizeof(*f));
    f->sm = meta_sm_new(on_change, f);
}

static bool views_equal(const meta_view_t *a, const meta_view_t *b)
{
    return a->cluster_id == b->cluster_id && a->version == b->version && a->n == b->n &&
           (a->n == 0 || memcmp(a->members, b->members, a->n * sizeof(*a->members)) == 0);
}

/* Applies p[0..len) and returns its code, or BAD_APPLY (after printing why) when apply
 * broke a contract: result data not (version, cluster_id) after the command, the version
 * moved other than by 0 or 1, moved on a refusal, the hook did not fire exactly when it
 * moved, or the record changed without the version moving. */
static int ap_raw(fx_t *f, const void *p, size_t len)
{
    meta_view_t before, after;
    if (meta_sm_copy(f->sm, &before) < 0)
        return BAD_APPLY;
    int calls = f->calls;
    sm_result_t res;
    memset(&res, 0, sizeof(res));
    meta_sm_ops.apply(f->sm, 1, p, len, &res);
    meta_sm_check(f->sm);
    if (meta_sm_copy(f->sm, &after) < 0) {
        meta_view_free(&before);
        return BAD_APPLY;
    }
    const char *why = NULL;
    uint64_t step = after.version - before.version;
    if (res.len != META_RESULT_LEN || le_get64(res.data) != after.version ||
        le_get64(res.data + 8) != after.cluster_id)
        why = "result data";
    else if (step > 1)
        why = "version moved by more than 1";
    else if (step && res.code != 0)
        why = "a refused command changed the record";
    else if (f->calls != calls + (int)step)
        why = "hook calls";
    else if (step && f->seen_version != after.version)
        why = "hook saw another version";
    else if (!step && !views_equal(&before, &after))
        why = "record changed, version did not";
    else if (f->hook_bad)
        why = "hook could not copy";
    meta_view_free(&before);
    meta_view_free(&after);
    if (why) {
        printf("# apply contract broken: %s (code %d)\n", why, res.code);
        return BAD_APPLY;
    }
    return res.code;
}

/* Applies an encoded command (encoder's code rc) and frees it. */
static int ap(fx_t *f, int rc, meta_cmd_t *c)
{
    if (rc < 0) {
        printf("# encoder failed: %d\n", rc);
        return BAD_APPLY;
    }
    rc = ap_raw(f, c->p, c->len);
    meta_cmd_free(c);
    return rc;
}

static int found(fx_t *f, uint64_t cid, uint32_t n, const uint64_t *ids, const char *const *a)
{
    meta_cmd_t c;
    return ap(f, meta_cmd_found(&c, cid, n, ids, a), &c);
}

static int set_layout(fx_t *f, uint32_t shards, uint32_t replicas)
{
    meta_cmd_t c;
    return ap(f, meta_cmd_set_layout(&c, shards, replicas), &c);
}

static int add(fx_t *f, uint64_t id, const char *addr)
{
    meta_cmd_t c;
    return ap(f, meta_cmd_add(&c, id, addr), &c);
}

static int set_state(fx_t *f, uint64_t id, uint8_t state)
{
    meta_cmd_t c;
    return ap(f, meta_cmd_set_state(&c, id, state), &c);
}

static int set_inc(fx_t *f, uint64_t id, uint64_t inc)
{
    meta_cmd_t c;
    return ap(f, meta_cmd_set_incarnation(&c, id, inc), &c);
}

static int drain(fx_t *f, uint64_t id, uint8_t on)
{
    meta_cmd_t c;
    return ap(f, meta_cmd_drain(&c, id, on), &c);
}

static int rm(fx_t *f, uint64_t id)
{
    meta_cmd_t c;
    return ap(f, meta_cmd_remove(&c, id), &c);
}

/* A founded three-member cluster: ids 10, 20, 30 (proposed out of order) at 10.0.0.1..3. */
static const uint64_t IDS3[] = { 30, 10, 20 };
static const char *const ADDRS3[] = { "10.0.0.3:7000", "10.0.0.1:7000", "10.0.0.2:7000" };
#define CID 0xC1C1u

static int found3(fx_t *f)
{
    return found(f, CID, 3, IDS3, ADDRS3);
}

static int member(fx_t *f, uint64_t id, meta_member_t *m)
{
    return meta_sm_get(f->sm, id, m);
}

/* ---- snapshots through real snapshot files ---- */

/* A fresh directory under base. */
static const char *newdir(char *buf, size_t max)
{
    static int seq;
    snprintf(buf, max, "%s/d%d", base, seq++);
    return mkdir(buf, 0700) == 0 ? buf : NULL;
}

/* Snapshots sm into a new directory; returns the state stream (malloc'ed, *len bytes) and
 * the whole file's bytes in *file (malloc'ed, *flen), or NULL. */
static uint8_t *snap(meta_sm_t *sm, size_t *len, uint8_t **file, size_t *flen)
{
    char d[256];
    snap_writer_t *w;
    if (!newdir(d, sizeof(d)) || snapshot_begin(d, 5, 2, &w) < 0)
        return NULL;
    if (meta_sm_ops.snapshot(sm, w) < 0) {
        snapshot_abort(w);
        return NULL;
    }
    if (snapshot_commit(w) < 0)
        return NULL;
    snapshot_info_t info = { 0 };
    char *err = NULL;
    snap_reader_t *r;
    uint8_t *p = NULL;
    if (snapshot_open_read(d, &info, &err) == 0 &&
        snapshot_reader_open(&info, &r, &err) == 0) {
        p = malloc(info.raw_len ? info.raw_len : 1);
        if (snap_reader_get(r, p, info.raw_len) < 0 || snapshot_reader_close(r, &err) < 0) {
            free(p);
            p = NULL;
        }
        *len = info.raw_len;
        if (file) {
            FILE *fp = fopen(info.path, "rb");
            *file = malloc(info.file_size);
            *flen = fp ? fread(*file, 1, info.file_size, fp) : 0;
            if (fp)
                fclose(fp);
        }
    }
    snapshot_info_free(&info);
    free(err);
    return p;
}

/* Writes p[0..n) as the state stream of a snapshot in a new directory and restores sm from
 * it (closing the reader too: its code counts when restore's is 0). What was logged to
 * stderr meanwhile goes to log (max bytes, NUL-terminated). Returns the code. */
static int restore_bytes(meta_sm_t *sm, const void *p, size_t n, char *log, size_t max)
{
    char d[256], path[300];
    snap_writer_t *w;
    log[0] = 0;
    if (!newdir(d, sizeof(d)) || snapshot_begin(d, 7, 3, &w) < 0)
        return BAD_APPLY;
    if (snap_writer_put(w, p, n) < 0) {
        snapshot_abort(w);
        return BAD_APPLY;
    }
    if (snapshot_commit(w) < 0)
        return BAD_APPLY;
    snprintf(path, sizeof(path), "%s/restore.log", d);
    fflush(stderr);
    int saved = dup(2), fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (saved < 0 || fd < 0)
        return BAD_APPLY;
    dup2(fd, 2);
    snapshot_info_t info = { 0 };
    char *err = NULL;
    snap_reader_t *r;
    int rc = snapshot_open_read(d, &info, &err);
    if (rc == 0 && (rc = snapshot_reader_open(&info, &r, &err)) == 0) {
        rc = meta_sm_ops.restore(sm, r);
        int rc2 = snapshot_reader_close(r, &err);
        rc = rc ? rc : rc2;
    }
    snapshot_info_free(&info);
    free(err);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t got = pread(fd, log, max - 1, 0);
    log[got > 0 ? got : 0] = 0;
    close(fd);
    return rc;
}

/* ---- cases ---- */

TEST(addresses_follow_the_rules)
{
    const char *good[] = { "h:1", "10.0.0.1:7000", "node-3.example.org:65535", "[::1]:7000",
                           "[fe80::1%eth0]:80", "a:00080" };
    const char *bad[] = { "", "h", "h:", ":80", "h:0", "h:65536", "h:123456", "h:8a",
                          "a b:80", "h:80 ", "a::1:80", "[]:80", "[::1]x:80", "[::1:80",
                          "h\t:80", "h\x7f:80", "::80" };
    for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
        CHECK(meta_addr_valid(good[i], strlen(good[i])));
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        CHECK(!meta_addr_valid(bad[i], strlen(bad[i])));
    char longa[300];
    memset(longa, 'a', sizeof(longa));
    memcpy(longa + 250, ":7000", 5);
    CHECK(meta_addr_valid(longa, 255));
    memcpy(longa + 251, ":7000", 5);
    CHECK(!meta_addr_valid(longa, 256));
    CHECK(!meta_addr_valid(NULL, 3));
    CHECK(!meta_addr_valid("h:1\0", 4));
}

TEST(found_sets_the_cluster_and_active_members_in_id_order)
{
    fx_t f;
    fx_init(&f);
    meta_view_t v;
    CHECK_EQ(meta_sm_copy(f.sm, &v), 0);
    CHECK(v.cluster_id == 0 && v.version == 0 && v.n == 0 && v.members == NULL);
    CHECK_EQ(found3(&f), 0);
    CHECK_EQ(f.calls, 1);
    CHECK_EQ(meta_sm_copy(f.sm, &v), 0);
    CHECK_EQ(v.cluster_id, CID);
    CHECK_EQ(v.version, 1);
    CHECK_EQ(v.n, 3);
    for (uint32_t i = 0; i < 3; i++) {
        char want[32];
        snprintf(want, sizeof(want), "10.0.0.%u:7000", i + 1);
        CHECK_EQ(v.members[i].id, 10 * (i + 1));
        CHECK(strcmp(v.members[i].addr, want) == 0);
        CHECK_EQ(v.members[i].state, META_ACTIVE);
        CHECK_EQ(v.members[i].incarnation, 0);
        CHECK_EQ(v.members[i].drained, 0);
    }
    meta_view_free(&v);
    CHECK(v.members == NULL && v.n == 0);
    meta_sm_free(f.sm);
}

TEST(found_twice_only_the_first_counts)
{
    fx_t f;
    fx_init(&f);
    CHECK_EQ(found3(&f), 0);
    /* Every founding node proposes FOUND: the later ones are no-ops with -EALREADY, and
     * the result data names the cluster in force. */
    meta_cmd_t c;
    uint64_t ids[] = { 99 };
    const char *addrs[] = { "other:1" };
    CHECK_EQ(meta_cmd_found(&c, 0xBEEF, 1, ids, addrs), 0);
    sm_result_t res;
    memset(&res, 0, sizeof(res));
    meta_sm_ops.apply(f.sm, 2, c.p, c.len, &res);
    CHECK_EQ(res.code, -EALREADY);
    CHECK_EQ(le_get64(res.data + 8), CID);
    CHECK_EQ(le_get64(res.data), 1);
    CHECK_EQ(ap_raw(&f, c.p, c.len), -EALREADY);
    meta_cmd_free(&c);
    CHECK_EQ(found3(&f), -EALREADY);
    CHECK_EQ(f.calls, 1);
    meta_member_t m;
    CHECK_EQ(member(&f, 99, &m), -QERR_NOTFOUND);
    CHECK_EQ(member(&f, 20, &m), 0);
    /* Even after every member but one is gone the cluster stays founded. */
    CHECK_EQ(set_state(&f, 10, META_LEAVING), 0);
    CHECK_EQ(rm(&f, 10), 0);
    CHECK_EQ(set_state(&f, 30, META_LEAVING), 0);
    CHECK_EQ(rm(&f, 30), 0);
    CHECK_EQ(found(&f, 0xBEEF, 1, ids, addrs), -EALREADY);
    meta_sm_free(f.sm);
}

TEST(found_malformed_is_einval)
{
    fx_t f;
    fx_init(&f);
    uint64_t dup_ids[] = { 1, 2, 1 };
    const char *a3[] = { "a:1", "b:1", "c:1" };
    uint64_t ids3[] = { 1, 2, 3 };
    const char *dup_a[] = { "a:1", "b:1", "a:1" };
    uint64_t zero_ids[] = { 1, 0, 3 };
    const char *bad_a[] = { "a:1", "b 1:1", "c:1" };
    CHECK_EQ(found(&f, 0, 3, ids3, a3), -EINVAL);          /* cluster id 0 */
    CHECK_EQ(found(&f, CID, 0, ids3, a3), -EINVAL);        /* no members */
    CHECK_EQ(found(&f, CID, 3, dup_ids, a3), -EINVAL);     /* an id twice */
    CHECK_EQ(found(&f, CID, 3, ids3, dup_a), -EINVAL);     /* an address twice */
    CHECK_EQ(found(&f, CID, 3, zero_ids, a3), -EINVAL);    /* id 0 */
    CHECK_EQ(found(&f, CID, 3, ids3, bad_a), -EINVAL);     /* bad address */
    /* More members than the record holds: the encoder refuses, crafted bytes too. */
    meta_cmd_t c;
    CHECK_EQ(meta_cmd_found(&c, CID, META_MEMBERS_MAX + 1, ids3, a3), -QERR_INVAL);
    CHECK(c.p == NULL);
    uint8_t big[2 + 8 + 4];
    big[0] = META_CMD_VERSION;
    big[1] = META_OP_FOUND;
    le_put64(big + 2, CID);
    le_put32(big + 10, META_MEMBERS_MAX + 1);
    CHECK_EQ(ap_raw(&f, big, sizeof(big)), -EINVAL);
    le_put32(big + 10, UINT32_MAX);
    CHECK_EQ(ap_raw(&f, big, sizeof(big)), -EINVAL);
    /* A count larger than the members that follow, and trailing bytes. */
    CHECK_EQ(meta_cmd_found(&c, CID, 3, ids3, a3), 0);
    uint8_t *p = malloc(c.len + 1);
    memcpy(p, c.p, c.len);
    le_put32(p + 10, 4);
    CHECK_EQ(ap_raw(&f, p, c.len), -EINVAL);
    le_put32(p + 10, 2);
    CHECK_EQ(ap_raw(&f, p, c.len), -EINVAL);
    le_put32(p + 10, 3);
    p[c.len] = 0;
    CHECK_EQ(ap_raw(&f, p, c.len + 1), -EINVAL);
    CHECK_EQ(ap_raw(&f, p, c.len), 0);                     /* the bytes themselves are fine */
    free(p);
    meta_cmd_free(&c);
    CHECK_EQ(f.calls, 1);
    meta_sm_free(f.sm);
}

TEST(add_joins_a_member_with_every_refusal)
{
    fx_t f;
    fx_init(&f);
    CHECK_EQ(add(&f, 5, "n5:7000"), -ENOTCONN);            /* before founding */
    CHECK_EQ(found3(&f), 0);
    CHECK_EQ(add(&f, 15, "10.0.0.15:7000"), 0);
    meta_member_t m;
    CHECK_EQ(member(&f, 15, &m), 0);
    CHECK_EQ(m.state, META_JOINING);
    CHECK_EQ(m.incarnation, 0);
    CHECK_EQ(m.drained, 0);
    CHECK(strcmp(m.addr, "10.0.0.15:7000") == 0);
    CHECK_EQ(add(&f, 15, "10.0.0.99:7000"), -EEXIST);      /* known id */
    CHECK_EQ(add(&f, 10, "10.0.0.99:7000"), -EEXIST);
    CHECK_EQ(add(&f, 16, "10.0.0.2:7000"), -EADDRINUSE);   /* address of member 20 */
    CHECK_EQ(add(&f, 16, "10.0.0.15:7000"), -EADDRINUSE);
    CHECK_EQ(add(&f, 10, "10.0.0.2:7000"), -EEXIST);       /* both: the id is judged first */
    CHECK_EQ(add(&f, 0, "10.0.0.99:7000"), -EINVAL);       /* id 0 */
    CHECK_EQ(add(&f, 17, "no-port"), -EINVAL);
    CHECK_EQ(add(&f, 17, ""), -EINVAL);
    CHECK_EQ(add(&f, 17, "sp ace:1"), -EINVAL);
    meta_cmd_t c;
    char longa[META_ADDR_MAX + 2];
    memset(longa, 'a', sizeof(longa) - 1);
    longa[sizeof(longa) - 1] = 0;
    CHECK_EQ(meta_cmd_add(&c, 17, longa), -QERR_INVAL);    /* cannot be encoded */
    CHECK_EQ(meta_cmd_add(&c, 17, NULL), -QERR_INVAL);
    /* The smallest and largest ids, kept in order. */
    CHECK_EQ(add(&f, 1, "first:1"), 0);
    CHECK_EQ(add(&f, UINT64_MAX, "last:1"), 0);
    meta_view_t v;
    CHECK_EQ(meta_sm_copy(f.sm, &v), 0);
    uint64_t want[] = { 1, 10, 15, 20, 30, UINT64_MAX };
    CHECK_EQ(v.n, 6);
    for (int i = 0; i < 6; i++)
        CHECK(v.members[i].id == want[i]);
    CHECK_EQ(v.version, 4);
    meta_view_free(&v);
    CHECK_EQ(f.calls, 4);
    meta_sm_free(f.sm);
}

TEST(add_refuses_past_the_member_limit)
{
    fx_t f;
    fx_init(&f);
    uint32_t n = META_MEMBERS_MAX;
    uint64_t *ids = malloc(n * sizeof(*ids));
    char **addrs = malloc(n * sizeof(*addrs));
    for (uint32_t i = 0; i < n; i++) {
        ids[i] = (uint64_t)(n - i) * 7;         /* descending: FOUND sorts them */
        addrs[i] = malloc(32);
        snprintf(addrs[i], 32, "host%u:%u", i, 1000 + i % 1000);
    }
    int rc = found(&f, CID, n, ids, (const char *const *)addrs);
    for (uint32_t i = 0; i < n; i++)
        free(addrs[i]);
    free(addrs);
    free(ids);
    CHECK_EQ(rc, 0);
    CHECK_EQ(add(&f, 3, "one-more:1"), -ENOSPC);
    CHECK_EQ(set_state(&f, 7, META_LEAVING), 0);
    CHECK_EQ(rm(&f, 7), 0);
    CHECK_EQ(add(&f, 3, "one-more:1"), 0);
    CHECK_EQ(add(&f, 4, "two-more:1"), -ENOSPC);
    meta_member_t m;
    CHECK_EQ(member(&f, 7ull * n, &m), 0);
    meta_sm_free(f.sm);
}

TEST(set_state_and_its_refusals)
{
    fx_t f;
    fx_init(&f);
    CHECK_EQ(set_state(&f, 10, META_LEAVING), -ENOENT);    /* nobody yet */
    CHECK_EQ(found3(&f), 0);
    CHECK_EQ(set_state(&f, 10, META_LEAVING), 0);
    meta_member_t m;
    CHECK_EQ(member(&f, 10, &m), 0);
    CHECK_EQ(m.state, META_LEAVING);
    CHECK_EQ(set_state(&f, 10, META_JOINING), 0);
    CHECK_EQ(set_state(&f, 10, META_ACTIVE), 0);
    int calls = f.calls;
    CHECK_EQ(set_state(&f, 10, META_ACTIVE), 0);           /* no change: no version, no hook */
    CHECK_EQ(f.calls, calls);
    CHECK_EQ(set_state(&f, 11, META_ACTIVE), -ENOENT);
    CHECK_EQ(set_state(&f, 10, 0), -EINVAL);
    CHECK_EQ(set_state(&f, 10, 4), -EINVAL);
    CHECK_EQ(set_state(&f, 10, 255), -EINVAL);
    CHECK_EQ(set_state(&f, 0, META_ACTIVE), -EINVAL);
    CHECK_EQ(set_state(&f, 11, 9), -EINVAL);               /* malformed is judged first */
    CHECK_EQ(member(&f, 10, &m), 0);
    CHECK_EQ(m.state, META_ACTIVE);
    meta_sm_free(f.sm);
}

TEST(set_incarnation_only_from_zero_or_equal)
{
    fx_t f;
    fx_init(&f);
    CHECK_EQ(found3(&f), 0);
    CHECK_EQ(set_inc(&f, 20, 0), 0);                       /* 0 -> 0: nothing */
    CHECK_EQ(f.calls, 1);
    CHECK_EQ(set_inc(&f, 20, 0xABCDEF0123456789ull), 0);
    meta_member_t m;
    CHECK_EQ(member(&f, 20, &m), 0);
    CHECK(m.incarnation == 0xABCDEF0123456789ull);
    CHECK_EQ(f.calls, 2);
    CHECK_EQ(set_inc(&f, 20, 0xABCDEF0123456789ull), 0);   /* equal: fine, no change */
    CHECK_EQ(f.calls, 2);
    CHECK_EQ(set_inc(&f, 20, 42), -ESTALE);                /* another one */
    CHECK_EQ(set_inc(&f, 20, 0), -ESTALE);                 /* back to 0 */
    CHECK_EQ(member(&f, 20, &m), 0);
    CHECK(m.incarnation == 0xABCDEF0123456789ull);
    CHECK_EQ(set_inc(&f, 21, 1), -ENOENT);
    CHECK_EQ(set_inc(&f, 0, 1), -EINVAL);
    /* Removed and added again: a new member starts from 0. */
    CHECK_EQ(set_state(&f, 20, META_LEAVING), 0);
    CHECK_EQ(rm(&f, 20), 0);
    CHECK_EQ(add(&f, 20, "10.0.0.2:7000"), 0);
    CHECK_EQ(member(&f, 20, &m), 0);
    CHECK_EQ(m.incarnation, 0);
    CHECK_EQ(set_inc(&f, 20, 42), 0);
    meta_sm_free(f.sm);
}

TEST(drain_and_undrain)
{
    fx_t f;
    fx_init(&f);
    CHECK_EQ(found3(&f), 0);
    CHECK(!meta_sm_is_drained(f.sm, 30));
    CHECK_EQ(drain(&f, 30, 1), 0);
    CHECK(meta_sm_is_drained(f.sm, 30));
    CHECK(!meta_sm_is_drained(f.sm, 20));
    CHECK_EQ(f.calls, 2);
    CHECK_EQ(drain(&f, 30, 1), 0);                         /* already */
    CHECK_EQ(f.calls, 2);
    CHECK_EQ(drain(&f, 30, 0), 0);
    CHECK(!meta_sm_is_drained(f.sm, 30));
    CHECK_EQ(drain(&f, 30, 2), -EINVAL);
    CHECK_EQ(drain(&f, 31, 1), -ENOENT);
    CHECK_EQ(drain(&f, 0, 1), -EINVAL);
    CHECK(!meta_sm_is_drained(f.sm, 31));                  /* unknown: not drained */
    CHECK(!meta_sm_is_drained(f.sm, 0));
    meta_sm_free(f.sm);
}

TEST(remove_and_the_last_active_member)
{
    fx_t f;
    fx_init(&f);
    CHECK_EQ(rm(&f, 10), -ENOENT);
    CHECK_EQ(found3(&f), 0);
    CHECK_EQ(add(&f, 40, "10.0.0.4:7000"), 0);
    CHECK_EQ(rm(&f, 40), 0);                               /* a joining member */
    CHECK_EQ(rm(&f, 40), -ENOENT);
    CHECK_EQ(rm(&f, 0), -EINVAL);
    CHECK_EQ(rm(&f, 20), 0);                               /* active, two others left */
    CHECK_EQ(set_state(&f, 10, META_LEAVING), 0);
    CHECK_EQ(rm(&f, 30), -EBUSY);                          /* the last active one */
    meta_member_t m;
    CHECK_EQ(member(&f, 30, &m), 0);
    CHECK_EQ(rm(&f, 10), 0);                               /* leaving: fine */
    CHECK_EQ(rm(&f, 30), -EBUSY);
    /* Its address is free again once a member is gone. */
    CHECK_EQ(add(&f, 21, "10.0.0.2:7000"), 0);
    CHECK_EQ(set_state(&f, 21, META_ACTIVE), 0);
    CHECK_EQ(rm(&f, 30), 0);                               /* 21 is active now */
    meta_view_t v;
    CHECK_EQ(meta_sm_copy(f.sm, &v), 0);
    CHECK_EQ(v.n, 1);
    CHECK_EQ(v.members[0].id, 21);
    CHECK_EQ(v.version, 9);
    meta_view_free(&v);
    meta_sm_free(f.sm);
}

TEST(malformed_commands_are_einval_and_change_nothing)
{
    fx_t f;
    fx_init(&f);
    CHECK_EQ(found3(&f), 0);
    CHECK_EQ(ap_raw(&f, NULL, 0), -EINVAL);
    CHECK_EQ(ap_raw(&f, "", 0), -EINVAL);
    uint8_t b[64];
    /* Every valid command: each of its prefixes, one byte more, another version, another
     * op number. */
    meta_cmd_t cs[6];
    uint64_t ids[] = { 50 };
    const char *addrs[] = { "x:1" };
    CHECK_EQ(meta_cmd_found(&cs[0], CID + 1, 1, ids, addrs), 0);
    CHECK_EQ(meta_cmd_add(&cs[1], 50, "10.0.0.5:7000"), 0);
    CHECK_EQ(meta_cmd_set_state(&cs[2], 20, META_LEAVING), 0);
    CHECK_EQ(meta_cmd_set_incarnation(&cs[3], 20, 77), 0);
    CHECK_EQ(meta_cmd_drain(&cs[4], 20, 1), 0);
    CHECK_EQ(meta_cmd_remove(&cs[5], 20), 0);
    int want[6] = { -EALREADY, 0, 0, 0, 0, 0 };
    for (int i = 0; i < 6; i++) {
        CHECK(cs[i].len < sizeof(b));
        memcpy(b, cs[i].p, cs[i].len);
        for (size_t l = 0; l < cs[i].len; l++)
            CHECK_EQ(ap_raw(&f, b, l), -EINVAL);
        b[cs[i].len] = 0;
        CHECK_EQ(ap_raw(&f, b, cs[i].len + 1), -EINVAL);
        b[0] = META_CMD_VERSION + 1;
        CHECK_EQ(ap_raw(&f, b, cs[i].len), -EINVAL);
        b[0] = 0;
        CHECK_EQ(ap_raw(&f, b, cs[i].len), -EINVAL);
        b[0] = META_CMD_VERSION;
        b[1] = 0;
        CHECK_EQ(ap_raw(&f, b, cs[i].len), -EINVAL);
        b[1] = META_OP_REMOVE + 1;
        CHECK_EQ(ap_raw(&f, b, cs[i].len), -EINVAL);
        b[1] = 0xFF;
        CHECK_EQ(ap_raw(&f, b, cs[i].len), -EINVAL);
        CHECK_EQ(f.calls, 1 + (i > 1 ? i - 1 : 0));        /* nothing changed so far */
        CHECK_EQ(ap_raw(&f, cs[i].p, cs[i].len), want[i]);
        meta_cmd_free(&cs[i]);
    }
    /* An address length beyond the command, and a NUL inside an address. */
    meta_cmd_t c;
    CHECK_EQ(meta_cmd_add(&c, 60, "10.0.0.6:7000"), 0);
    c.p[10]++;
    CHECK_EQ(ap_raw(&f, c.p, c.len), -EINVAL);
    c.p[10] -= 2;
    CHECK_EQ(ap_raw(&f, c.p, c.len), -EINVAL);
    c.p[10]++;
    c.p[13] = 0;
    CHECK_EQ(ap_raw(&f, c.p, c.len), -EINVAL);
    meta_cmd_free(&c);
    meta_member_t m;
    CHECK_EQ(member(&f, 60, &m), -QERR_NOTFOUND);
    meta_sm_free(f.sm);
}

/* A small deterministic generator (xorshift64*). */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

/* A random command, mostly well-formed over a small id space so that every code comes up;
 * into *c (the caller frees). */
static void random_cmd(meta_cmd_t *c)
{
    static const char *const addrs[] = { "a:1", "b:1", "c:1", "d:1", "e:1", "[::1]:2" };
    uint64_t id = rnd() % 7;                 /* 0 is malformed */
    int rc;
    switch (rnd() % 6) {
    case 0: {
        uint64_t ids[3] = { 1 + rnd() % 6, 1 + rnd() % 6, 1 + rnd() % 6 };
        const char *as[3] = { addrs[rnd() % 6], addrs[rnd() % 6], addrs[rnd() % 6] };
        rc = meta_cmd_found(c, rnd() % 3, (uint32_t)(rnd() % 4), ids, as);
        break;
    }
    case 1:
        rc = meta_cmd_add(c, id, addrs[rnd() % 6]);
        break;
    case 2:
        rc = meta_cmd_set_state(c, id, (uint8_t)(rnd() % 5));
        break;
    case 3:
        rc = meta_cmd_set_incarnation(c, id, rnd() % 3);
        break;
    case 4:
        rc = meta_cmd_drain(c, id, (uint8_t)(rnd() % 3));
        break;
    default:
        rc = meta_cmd_remove(c, id);
        break;
    }
    if (rc < 0)
        abort();
}

TEST(random_and_damaged_commands_never_crash_nor_change_on_refusal)
{
    fx_t f;
    fx_init(&f);
    int codes[6] = { 0 };                    /* seen: 0, EINVAL, ENOENT, EEXIST, EBUSY, ESTALE */
    uint8_t buf[600];
    for (int iter = 0; iter < 30000; iter++) {
        meta_cmd_t c;
        size_t len;
        if (rnd() % 8 == 0) {                /* pure noise */
            len = (size_t)(rnd() % 40);
            for (size_t i = 0; i < len; i++)
                buf[i] = (uint8_t)rnd();
            if (len > 1 && rnd() % 2) {
                buf[0] = META_CMD_VERSION;
                buf[1] = (uint8_t)(1 + rnd() % 7);
            }
        } else {
            random_cmd(&c);
            len = c.len;
            memcpy(buf, c.p, len);
            meta_cmd_free(&c);
            switch (rnd() % 6) {
            case 0:                          /* truncated */
                len = (size_t)(rnd() % len);
                break;
            case 1:                          /* one byte flipped */
                buf[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
                break;
            case 2:                          /* trailing bytes */
                for (int k = (int)(1 + rnd() % 4); k > 0; k--)
                    buf[len++] = (uint8_t)rnd();
                break;
            default:                         /* as encoded */
                break;
            }
        }
        /* ap_raw checks that a refusal (-EINVAL included) left the record as it was. */
        int rc = ap_raw(&f, buf, len);
        CHECK(rc != BAD_APPLY);
        codes[0] += rc == 0;
        codes[1] += rc == -EINVAL;
        codes[2] += rc == -ENOENT;
        codes[3] += rc == -EEXIST || rc == -EADDRINUSE;
        codes[4] += rc == -EBUSY;
        codes[5] += rc == -ESTALE;
        /* Now and then the cluster empties out; start over so every code keeps coming. */
        if (iter % 3000 == 2999) {
            meta_sm_free(f.sm);
            fx_init(&f);
        }
    }
    for (int i = 0; i < 6; i++)
        CHECK(codes[i] > 0);
    meta_sm_free(f.sm);
}

/* The same commands on two records. */
static int script(fx_t *f)
{
    static const uint64_t ids[] = { 7, 3, 5 };
    static const char *const addrs[] = { "n7:7000", "n3:7000", "[fd00::5]:7000" };
    int rc = 0;
    rc |= found(f, 0x1234567890ull, 3, ids, addrs);
    rc |= add(f, 9, "n9.example:7100") | add(f, 1, "n1:7000") | add(f, 4, "n4:7000");
    rc |= set_inc(f, 9, 0x1111) | set_inc(f, 3, 0x3333) | set_state(f, 9, META_ACTIVE);
    rc |= drain(f, 5, 1) | set_state(f, 4, META_LEAVING) | rm(f, 4) | drain(f, 1, 1);
    rc |= set_state(f, 1, META_ACTIVE) | drain(f, 1, 0) | set_layout(f, 16, 3);
    return rc;
}

TEST(same_commands_give_the_same_snapshot_bytes)
{
    fx_t a, b, c;
    fx_init(&a);
    fx_init(&b);
    fx_init(&c);
    CHECK_EQ(script(&a), 0);
    CHECK_EQ(script(&b), 0);
    size_t la, lb, lc, fa, fb, fc;
    uint8_t *filea, *fileb, *filec;
    uint8_t *ra = snap(a.sm, &la, &filea, &fa), *rb = snap(b.sm, &lb, &fileb, &fb);
    CHECK(ra && rb);
    CHECK(la == lb && memcmp(ra, rb, la) == 0);
    CHECK(fa == fb && memcmp(filea, fileb, fa) == 0);
    /* The stream is what docs/META.md says: header, then members in id order. */
    CHECK_EQ(le_get32(ra), META_SNAP_VERSION);
    CHECK_EQ(le_get64(ra + 4), 0x1234567890ull);
    CHECK_EQ(le_get64(ra + 12), 14);
    CHECK_EQ(le_get32(ra + 20), 5);
    CHECK_EQ(le_get32(ra + 24), 16);         /* the layout */
    CHECK_EQ(le_get32(ra + 28), 3);
    CHECK_EQ(le_get64(ra + 32), 1);
    /* A restored record: same view, same bytes, and the hook fired once. */
    char log[512];
    CHECK_EQ(restore_bytes(c.sm, ra, la, log, sizeof(log)), 0);
    CHECK_EQ(c.calls, 1);
    CHECK_EQ(c.seen_version, 14);
    meta_view_t vl;
    CHECK_EQ(meta_sm_copy(c.sm, &vl), 0);
    CHECK(vl.shards == 16 && vl.replicas == 3);
    meta_view_free(&vl);
    meta_sm_check(c.sm);
    meta_view_t va, vc;
    CHECK_EQ(meta_sm_copy(a.sm, &va), 0);
    CHECK_EQ(meta_sm_copy(c.sm, &vc), 0);
    CHECK(views_equal(&va, &vc));
    meta_view_free(&va);
    meta_view_free(&vc);
    uint8_t *rc_ = snap(c.sm, &lc, &filec, &fc);
    CHECK(rc_ && lc == la && memcmp(rc_, ra, la) == 0);
    CHECK(fc == fa && memcmp(filec, filea, fa) == 0);
    /* The restored one goes on like the others. */
    CHECK_EQ(add(&a, 2, "n2:1"), 0);
    CHECK_EQ(add(&c, 2, "n2:1"), 0);
    free(ra);
    free(rc_);
    ra = snap(a.sm, &la, NULL, NULL);
    rc_ = snap(c.sm, &lc, NULL, NULL);
    CHECK(ra && rc_ && la == lc && memcmp(ra, rc_, la) == 0);
    /* Restoring an empty record is fine too, and replaces everything. */
    fx_t e;
    fx_init(&e);
    uint8_t *re = snap(e.sm, &lc, NULL, NULL);
    CHECK(re && lc == 32);
    CHECK_EQ(restore_bytes(c.sm, re, lc, log, sizeof(log)), 0);
    CHECK_EQ(c.calls, 3);
    CHECK_EQ(meta_sm_copy(c.sm, &vc), 0);
    CHECK(vc.n == 0 && vc.cluster_id == 0 && vc.version == 0);
    free(re);
    free(ra);
    free(rb);
    free(rc_);
    free(filea);
    free(fileb);
    free(filec);
    meta_sm_free(a.sm);
    meta_sm_free(b.sm);
    meta_sm_free(c.sm);
    meta_sm_free(e.sm);
}

/* An edit of a state stream that restore must refuse. */
typedef struct edit {
    size_t at;
    int width;               /* 1, 4 or 8 bytes, little-endian */
    uint64_t value;
    int code;                /* -QERR_CORRUPT or -QERR_FORMAT */
    const char *why;         /* in the log line */
} edit_t;

TEST(restore_refuses_edited_snapshots)
{
    /* Members 1 (a:1), 2 (b:1), 3 (c:1): each record is 19 + 3 bytes from offset 32. */
    fx_t f;
    fx_init(&f);
    uint64_t ids[] = { 1, 2, 3 };
    const char *addrs[] = { "a:1", "b:1", "c:1" };
    CHECK_EQ(found(&f, CID, 3, ids, addrs), 0);
    size_t n;
    uint8_t *raw = snap(f.sm, &n, NULL, NULL);
    CHECK(raw && n == 32 + 3 * 22);
#define M(i) (32 + 22 * (size_t)(i))
    const edit_t edits[] = {
        { 0, 4, 3, -QERR_FORMAT, "unknown version 3" },
        { 24, 4, 4, -QERR_CORRUPT, "layout out of range" },        /* shards without R */
        { 28, 4, 2, -QERR_CORRUPT, "layout out of range" },        /* R without shards */
        { 0, 4, 0, -QERR_FORMAT, "unknown version 0" },
        { 4, 8, 0, -QERR_CORRUPT, "changes recorded before the cluster was founded" },
        { 12, 8, 0, -QERR_CORRUPT, "a founded cluster at version 0" },
        { 20, 4, META_MEMBERS_MAX + 1, -QERR_CORRUPT, "4097 members" },
        { 20, 4, UINT32_MAX, -QERR_CORRUPT, "members (at most" },
        { M(0), 8, 5, -QERR_CORRUPT, "member ids out of order" },         /* 5, 2, 3 */
        { M(2), 8, 2, -QERR_CORRUPT, "duplicate member id" },             /* 1, 2, 2 */
        { M(1), 8, 0, -QERR_CORRUPT, "member id 0" },
        { M(0), 8, 0, -QERR_CORRUPT, "member id 0" },
        { M(1) + 16, 1, 0, -QERR_CORRUPT, "state out of range" },
        { M(1) + 16, 1, 4, -QERR_CORRUPT, "state out of range" },
        { M(2) + 17, 1, 2, -QERR_CORRUPT, "drained neither 0 nor 1" },
        { M(1) + 19, 1, ' ', -QERR_CORRUPT, "bad address" },
        { M(1) + 19, 1, 0, -QERR_CORRUPT, "bad address" },                /* a NUL in it */
        { M(1) + 21, 1, 'x', -QERR_CORRUPT, "bad address" },             /* port "x" */
        { M(1) + 18, 1, 0, -QERR_CORRUPT, "bad address" },               /* empty */
        { M(2) + 19, 1, 'a', -QERR_CORRUPT, "address used by two members" },
        { M(2) + 18, 1, 200, -QERR_CORRUPT, "truncated at member 2 of 3" },
        { 20, 4, 4, -QERR_CORRUPT, "truncated at member 3 of 4" },
    };
    uint8_t *p = malloc(n);
    char log[1024];
    for (size_t i = 0; i < sizeof(edits) / sizeof(*edits); i++) {
        memcpy(p, raw, n);
        for (int j = 0; j < edits[i].width; j++)
            p[edits[i].at + (size_t)j] = (uint8_t)(edits[i].value >> (8 * j));
        /* Into a record that held something: a refused restore leaves it empty. */
        fx_t d;
        fx_init(&d);
        CHECK_EQ(found3(&d), 0);
        int rc = restore_bytes(d.sm, p, n, log, sizeof(log));
        if (rc != edits[i].code || !strstr(log, "quorumfs: snapshot refused: meta: ") ||
            !strstr(log, edits[i].why)) {
            printf("# edit %zu: restore gave %d, wanted %d \"%s\"; it logged: %s\n", i, rc,
                   edits[i].code, edits[i].why, log);
            CHECK(0);
        }
        meta_sm_check(d.sm);
        meta_view_t v;
        CHECK_EQ(meta_sm_copy(d.sm, &v), 0);
        CHECK(v.n == 0 && v.cluster_id == 0 && v.version == 0);
        CHECK_EQ(d.calls, 1);                               /* FOUND only */
        meta_sm_free(d.sm);
    }
    /* Every truncation is refused; so are bytes after the record (by the reader). */
    for (size_t l = 0; l < n; l++) {
        fx_t d;
        fx_init(&d);
        CHECK_EQ(restore_bytes(d.sm, raw, l, log, sizeof(log)), -QERR_CORRUPT);
        CHECK(strstr(log, "snapshot refused: meta: truncated"));
        CHECK_EQ(d.calls, 0);
        meta_sm_free(d.sm);
    }
    uint8_t *longer = calloc(1, n + 1);
    memcpy(longer, raw, n);
    char log2[512];
    fx_t d;
    fx_init(&d);
    CHECK_EQ(restore_bytes(d.sm, longer, n + 1, log2, sizeof(log2)), -QERR_CORRUPT);
    meta_sm_free(d.sm);
    /* A version 1 stream (no layout) restores, with no layout. */
    uint8_t *v1 = malloc(n - 8);
    memcpy(v1, raw, 24);
    memcpy(v1 + 24, raw + 32, n - 32);
    v1[0] = 1;
    fx_init(&d);
    CHECK_EQ(restore_bytes(d.sm, v1, n - 8, log, sizeof(log)), 0);
    meta_view_t v1v;
    CHECK_EQ(meta_sm_copy(d.sm, &v1v), 0);
    CHECK(v1v.n == 3 && v1v.shards == 0 && v1v.replicas == 0);
    meta_view_free(&v1v);
    meta_sm_free(d.sm);
    free(v1);
    /* The untouched stream restores. */
    fx_init(&d);
    CHECK_EQ(restore_bytes(d.sm, raw, n, log, sizeof(log)), 0);
    CHECK_EQ(d.calls, 1);
    meta_sm_free(d.sm);
#undef M
    free(longer);
    free(p);
    free(raw);
    meta_sm_free(f.sm);
}

/* A reader on another thread copies the record while applies run; every copy it sees is
 * a whole record (sorted, and as many members as the version says for this script). */
typedef struct reader {
    meta_sm_t *sm;
    int stop;                  /* atomic */
    long copies, bad;
} reader_t;

static void *reader_main(void *arg)
{
    reader_t *r = arg;
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
        meta_view_t v;
        if (meta_sm_copy(r->sm, &v) < 0) {
            r->bad++;
            continue;
        }
        for (uint32_t i = 1; i < v.n; i++)
            r->bad += v.members[i - 1].id >= v.members[i].id;
        /* The script: FOUND (1 member, version 1), then ADD/REMOVE pairs. */
        if (v.version && v.n != 1 + (v.version - 1) % 2)
            r->bad++;
        (void)meta_sm_is_drained(r->sm, 2);
        r->copies++;
        meta_view_free(&v);
    }
    return NULL;
}

TEST(readers_on_another_thread_see_whole_records)
{
    fx_t f;
    fx_init(&f);
    reader_t r = { .sm = f.sm };
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, reader_main, &r), 0);
    uint64_t ids[] = { 1 };
    const char *addrs[] = { "one:1" };
    int rc = found(&f, CID, 1, ids, addrs);
    for (int i = 0; i < 2000 && rc == 0; i++)
        rc = add(&f, 2, "two:2") | rm(&f, 2);
    __atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    CHECK_EQ(rc, 0);
    CHECK_EQ(r.bad, 0);
    CHECK_EQ(f.calls, 4001);
    meta_sm_free(f.sm);
}

TEST(apply_without_a_result_and_without_a_hook)
{
    meta_sm_t *sm = meta_sm_new(NULL, NULL);
    meta_cmd_t c;
    uint64_t ids[] = { 8 };
    const char *addrs[] = { "eight:8" };
    CHECK_EQ(meta_cmd_found(&c, CID, 1, ids, addrs), 0);
    meta_sm_ops.apply(sm, 1, c.p, c.len, NULL);     /* replay at start-up: res is NULL */
    meta_cmd_free(&c);
    meta_sm_ops.apply(sm, 2, "junk", 4, NULL);
    meta_sm_check(sm);
    meta_member_t m;
    CHECK_EQ(meta_sm_get(sm, 8, &m), 0);
    CHECK(strcmp(m.addr, "eight:8") == 0);
    CHECK(meta_sm_ops.stamp == NULL);
    meta_sm_free(sm);
    meta_sm_free(NULL);
}

TEST(layout_is_set_once_and_bounds_members_and_leaves)
{
    fx_t f;
    fx_init(&f);
    CHECK_EQ(set_layout(&f, 8, 2), -ENOTCONN);                /* before FOUND */
    CHECK_EQ(found3(&f), 0);
    CHECK_EQ(set_layout(&f, 0, 2), -EINVAL);
    CHECK_EQ(set_layout(&f, 8, 0), -EINVAL);
    CHECK_EQ(set_layout(&f, 8, 17), -EINVAL);
    CHECK_EQ(set_layout(&f, 70000, 2), -EINVAL);
    int calls = f.calls;
    CHECK_EQ(set_layout(&f, 8, 2), 0);
    CHECK_EQ(f.calls, calls + 1);
    CHECK_EQ(set_layout(&f, 8, 2), 0);                        /* the same: no change */
    CHECK_EQ(f.calls, calls + 1);
    CHECK_EQ(set_layout(&f, 8, 3), -EALREADY);                /* fixed at founding */
    CHECK_EQ(set_layout(&f, 16, 2), -EALREADY);
    /* 3 active, R = 2: one may leave, not two (in log order, whoever asked) */
    CHECK_EQ(set_state(&f, IDS3[0], META_LEAVING), 0);
    CHECK_EQ(set_state(&f, IDS3[1], META_LEAVING), -EBUSY);
    CHECK_EQ(set_state(&f, IDS3[1], META_JOINING), -EBUSY);   /* not active either */
    /* a joining member may leave whatever the count */
    CHECK_EQ(add(&f, 40, "n40:1"), 0);
    CHECK_EQ(set_state(&f, 40, META_LEAVING), 0);
    CHECK_EQ(set_state(&f, IDS3[0], META_ACTIVE), 0);         /* back */
    CHECK_EQ(set_state(&f, IDS3[1], META_LEAVING), 0);
    /* at most 16 members with a layout */
    char a[32];
    for (uint64_t id = 100; id < 100 + 16; id++) {
        snprintf(a, sizeof(a), "m%llu:1", (unsigned long long)id);
        int rc = add(&f, id, a);
        meta_view_t v;
        CHECK_EQ(meta_sm_copy(f.sm, &v), 0);
        uint32_t n = v.n;
        meta_view_free(&v);
        CHECK_EQ(rc, n - (rc == 0) < 16 ? 0 : -ENOSPC);
    }
    meta_view_t v;
    CHECK_EQ(meta_sm_copy(f.sm, &v), 0);
    CHECK_EQ(v.n, 16);
    meta_view_free(&v);
    meta_sm_check(f.sm);
    meta_sm_free(f.sm);
}

int main(void)
{
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(addresses_follow_the_rules);
    RUN(found_sets_the_cluster_and_active_members_in_id_order);
    RUN(found_twice_only_the_first_counts);
    RUN(found_malformed_is_einval);
    RUN(add_joins_a_member_with_every_refusal);
    RUN(add_refuses_past_the_member_limit);
    RUN(set_state_and_its_refusals);
    RUN(set_incarnation_only_from_zero_or_equal);
    RUN(drain_and_undrain);
    RUN(remove_and_the_last_active_member);
    RUN(malformed_commands_are_einval_and_change_nothing);
    RUN(random_and_damaged_commands_never_crash_nor_change_on_refusal);
    RUN(same_commands_give_the_same_snapshot_bytes);
    RUN(restore_refuses_edited_snapshots);
    RUN(readers_on_another_thread_see_whole_records);
    RUN(apply_without_a_result_and_without_a_hook);
    RUN(layout_is_set_once_and_bounds_members_and_leaves);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", base);
    return CHECK_DONE();
}
