/* tests/unit/test_logs.c — the logs/ state machine (fs/logs_sm.c) driven through its
 * encoders, with logs_sm_check after every apply: records and their offsets, the refusals
 * (EPERM off the end, ESTALE, EFBIG, reserved names), malformed commands that change
 * nothing, sealing into lz4 block files read back by offset, retention by bytes and by the
 * command's time (offsets stable, ESPIPE below the start), unlink, snapshot round trips
 * (same bytes, into another directory), a large log restored in chunks (memory does not
 * grow with it), replay after a snapshot giving the same state and files, restore
 * refusing damaged bytes, and file errors at apply breaking a log on one node only.
 *
 * The module is driven directly (init, bind, apply, snapshot and restore of its own
 * section), so the test does not depend on logs/ being in the shard's registry
 * (fs/ns_sm.c); when it is, the shard has initialized it and the test uses that. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/err.h"
#include "cluster/snapshot.h"
#include "fs/cmd.h"
#include "fs/logs_sm.h"
#include "fs/ns_sm.h"
#include "fs/state.h"
#include "tests/unit/check.h"

/* ---------------------------------------------------------------- harness */

typedef struct shard {
    state_t *st;
    uint64_t idx;
    char dir[256];         /* its segment directory */
    int grew;              /* EFF_LOG_GREW effects seen */
    uint64_t last_grew;
} shard_t;

static char root[] = "/tmp/test_logs.XXXXXX";
static int ndirs;

static shard_t *fresh(void)
{
    shard_t *sh = calloc(1, sizeof(*sh));
    sh->st = state_new(1 << 20);
    if (!sh->st)
        abort();
    if (!sh->st->ns_state[NS_LOGS])     /* not in the registry yet: init it here */
        logs_sm.init(sh->st);
    snprintf(sh->dir, sizeof(sh->dir), "%s/shard%d/logs/0", root, ++ndirs);
    if (logs_sm_bind(sh->st, sh->dir) < 0)
        abort();
    return sh;
}

static void done(shard_t *sh)
{
    logs_sm_unbind(sh->st);
    if (!ns_sms[NS_LOGS])
        logs_sm.free(sh->st);
    state_free(sh->st);
    free(sh);
}

/* Applies b at the next index with the module's apply under the write lock, as sm_apply
 * does (time = max(previous, header)), frees b->p, counts the effects, then checks. */
static int apply(shard_t *sh, cmdbuf_t *b, sm_result_t *res)
{
    sm_result_t local;
    if (!res)
        res = &local;
    memset(res, 0, sizeof(*res));
    state_t *st = sh->st;
    cmdrd_t r;
    cmd_hdr_t h;
    int rc = -EINVAL;
    pthread_rwlock_wrlock(&st->lock);
    if (cmd_read_hdr(&r, b->p, b->len, &h) == 0) {
        if (h.now_ms < st->now_ms)
            h.now_ms = st->now_ms;
        st->now_ms = h.now_ms;
        rc = h.ns == NS_LOGS ? logs_sm.apply(st, &h, &r, res, &st->outbox) : -ENOTSUP;
    }
    st->applied_index = ++sh->idx;
    effects_t fx = effects_take(&st->outbox);
    pthread_rwlock_unlock(&st->lock);
    for (effect_t *e = fx.head; e; e = e->next)
        if (e->kind == EFF_LOG_GREW && e->ns == NS_LOGS) {
            sh->grew++;
            sh->last_grew = e->u.qready.qid;
        }
    effects_clear(&fx);
    free(b->p);
    memset(b, 0, sizeof(*b));
    logs_sm_check(st);
    res->code = rc;
    return rc;
}

static uint64_t res_u64(const sm_result_t *res)
{
    uint64_t v = 0;
    memcpy(&v, res->data, 8);
    return v;
}

static int create(shard_t *sh, uint64_t now, const char *name, int excl, uint64_t *id)
{
    cmdbuf_t b = { 0 };
    sm_result_t res;
    logs_cmd_create(&b, now, name, excl);
    int rc = apply(sh, &b, &res);
    if (rc == 0 && id)
        *id = res_u64(&res);
    return rc;
}

static int append(shard_t *sh, uint64_t now, const char *name, uint64_t id, uint64_t at,
                  const void *p, size_t n, uint64_t *off)
{
    cmdbuf_t b = { 0 };
    sm_result_t res;
    logs_cmd_append(&b, now, name, id, at, p, n);
    int rc = apply(sh, &b, &res);
    if (rc == 0 && off)
        *off = res_u64(&res);
    return rc;
}

static int set(shard_t *sh, uint64_t now, const char *name, uint8_t which, uint64_t v)
{
    cmdbuf_t b = { 0 };
    logs_cmd_set(&b, now, name, which, v);
    return apply(sh, &b, NULL);
}

static long rd(shard_t *sh, uint64_t id, uint64_t off, void *buf, size_t n)
{
    pthread_rwlock_rdlock(&sh->st->lock);
    long r = logs_sm_read(sh->st, id, off, buf, n);
    pthread_rwlock_unlock(&sh->st->lock);
    return r;
}

static log_view_t view(shard_t *sh, const char *name)
{
    log_view_t v;
    memset(&v, 0, sizeof(v));
    pthread_rwlock_rdlock(&sh->st->lock);
    if (logs_sm_get(sh->st, name, strlen(name), &v) < 0)
        v.id = 0;
    pthread_rwlock_unlock(&sh->st->lock);
    return v;
}

/* Record i of a test log: a line of its number and some filler (compressible), n bytes. */
static size_t record(uint64_t i, char *buf, size_t n)
{
    int k = snprintf(buf, n, "record %llu ", (unsigned long long)i);
    for (size_t j = (size_t)k; j + 1 < n; j++)
        buf[j] = (char)('a' + (i + j) % 26);
    buf[n - 1] = '\n';
    return n;
}

/* Writes the state's time and the logs section of sh's state as a snapshot (index idx) into dir. 0 or < 0. */
static int snap_logs(shard_t *sh, const char *dir, uint64_t idx)
{
    mkdir(dir, 0755);
    snap_writer_t *w;
    int rc = snapshot_begin(dir, idx, 1, &w);
    if (rc < 0)
        return rc;
    snapout_t *o = calloc(1, sizeof(*o));
    o->w = w;
    pthread_rwlock_rdlock(&sh->st->lock);
    so_u64(o, sh->st->now_ms);           /* as the shard's snapshot does before sections */
    logs_sm.snapshot(sh->st, o);
    pthread_rwlock_unlock(&sh->st->lock);
    rc = so_flush(o);
    free(o);
    if (rc < 0) {
        snapshot_abort(w);
        return rc;
    }
    return snapshot_commit(w);
}

/* The state stream of the newest snapshot in dir (malloc'ed; NULL on error). */
static uint8_t *raw_stream(const char *dir, size_t *len)
{
    snapshot_info_t info = { 0 };
    char *err = NULL;
    snap_reader_t *r;
    uint8_t *p = NULL;
    if (snapshot_open_read(dir, &info, &err) == 0 &&
        snapshot_reader_open(&info, &r, &err) == 0) {
        p = malloc(info.raw_len ? info.raw_len : 1);
        if (snap_reader_get(r, p, info.raw_len) < 0) {
            free(p);
            p = NULL;
        }
        snapshot_reader_close(r, &err);
        *len = info.raw_len;
    }
    snapshot_info_free(&info);
    free(err);
    return p;
}

/* Replaces sh's time and logs state by the newest snapshot in dir (free, init, restore,
 * as the shard's restore does). Returns restore's code. */
static int restore_logs(shard_t *sh, const char *dir)
{
    snapshot_info_t info = { 0 };
    char *err = NULL;
    snap_reader_t *r;
    int rc = snapshot_open_read(dir, &info, &err);
    if (rc == 0 && (rc = snapshot_reader_open(&info, &r, &err)) == 0) {
        snapin_t in = { .r = r };
        pthread_rwlock_wrlock(&sh->st->lock);
        sh->st->now_ms = si_u64(&in);
        logs_sm.free(sh->st);
        logs_sm.init(sh->st);
        rc = logs_sm.restore(sh->st, &in);
        if (rc < 0) {
            logs_sm.free(sh->st);
            logs_sm.init(sh->st);
        }
        effects_t fx = effects_take(&sh->st->outbox);   /* counted as apply's */
        pthread_rwlock_unlock(&sh->st->lock);
        for (effect_t *e = fx.head; e; e = e->next)
            if (e->kind == EFF_LOG_GREW && e->ns == NS_LOGS) {
                sh->grew++;
                sh->last_grew = e->u.qready.qid;
            }
        effects_clear(&fx);
        int rc2 = snapshot_reader_close(r, &err);
        rc = rc ? rc : rc2;
    }
    snapshot_info_free(&info);
    free(err);
    logs_sm_check(sh->st);
    return rc;
}

/* Writes p[0..n) as a snapshot stream into dir and restores sh from it. */
static int restore_raw(shard_t *sh, const char *dir, const void *p, size_t n)
{
    mkdir(dir, 0755);
    snap_writer_t *w;
    int rc = snapshot_begin(dir, 7, 1, &w);
    if (rc == 0 && (rc = snap_writer_put(w, p, n)) < 0)
        snapshot_abort(w);
    if (rc == 0)
        rc = snapshot_commit(w);
    if (rc == 0) {
        fflush(stderr);
        int saved = dup(2);
        FILE *devnull = fopen("/dev/null", "w");
        dup2(fileno(devnull), 2);       /* restore explains its refusals on stderr */
        rc = restore_logs(sh, dir);
        fflush(stderr);
        dup2(saved, 2);
        close(saved);
        fclose(devnull);
    }
    return rc;
}

static int count_files(const char *dir, const char *suffix)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "find '%s' -type f -name '*%s' | wc -l", dir, suffix);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (f && fscanf(f, "%d", &n) != 1)
        n = -1;
    if (f)
        pclose(f);
    return n;
}

static int same_reads(shard_t *a, shard_t *b, uint64_t id, uint64_t start, uint64_t end)
{
    static char x[65536], y[65536];
    for (uint64_t off = start; off < end; off += sizeof(x)) {
        long na = rd(a, id, off, x, sizeof(x)), nb = rd(b, id, off, y, sizeof(y));
        if (na <= 0 || na != nb || memcmp(x, y, (size_t)na))
            return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------- cases */

TEST(records_offsets_and_refusals)
{
    shard_t *sh = fresh();
    uint64_t id = 0, id2 = 0, off = 0;
    CHECK_EQ(create(sh, 1000, "app", 0, &id), 0);
    CHECK(id > 0);
    CHECK_EQ(create(sh, 1001, "app", 0, &id2), 0);       /* >> of an existing log */
    CHECK_EQ(id2, id);
    CHECK_EQ(create(sh, 1002, "app", 1, NULL), -EEXIST);
    CHECK_EQ(create(sh, 1003, LOGS_FOLLOW, 0, NULL), -EINVAL);
    CHECK_EQ(create(sh, 1003, "a/b", 0, NULL), -EINVAL);
    CHECK_EQ(append(sh, 1004, "app", id, LOGS_AT_END, "one\n", 4, &off), 0);
    CHECK_EQ(off, 0);
    CHECK_EQ(sh->grew, 1);
    CHECK_EQ(sh->last_grew, id);
    CHECK_EQ(append(sh, 1005, "app", 0, LOGS_AT_END, "two\n", 4, &off), 0);
    CHECK_EQ(off, 4);
    CHECK_EQ(append(sh, 1006, "app", 0, 8, "three\n", 6, &off), 0);   /* at the end */
    CHECK_EQ(off, 8);
    int before = sh->grew;
    CHECK_EQ(append(sh, 1007, "app", 0, 3, "x", 1, NULL), -EPERM);    /* not at the end */
    CHECK_EQ(append(sh, 1007, "app", 0, 15, "x", 1, NULL), -EPERM);   /* past it */
    CHECK_EQ(append(sh, 1007, "app", id + 7, LOGS_AT_END, "x", 1, NULL), -ESTALE);
    CHECK_EQ(append(sh, 1007, "nope", 0, LOGS_AT_END, "x", 1, NULL), -ENOENT);
    CHECK_EQ(append(sh, 1007, "app", 0, LOGS_AT_END, "", 0, NULL), -EINVAL);
    static char big[LOGS_RECORD_MAX + 1];
    CHECK_EQ(append(sh, 1007, "app", 0, LOGS_AT_END, big, sizeof(big), NULL), -EFBIG);
    CHECK_EQ(append(sh, 1007, "app", 0, LOGS_AT_END, big, LOGS_RECORD_MAX, &off), 0);
    CHECK_EQ(off, 14);
    CHECK_EQ(sh->grew, before + 1);
    log_view_t v = view(sh, "app");
    CHECK_EQ(v.end, 14 + LOGS_RECORD_MAX);
    CHECK_EQ(v.records, 4);
    CHECK_EQ(v.start, 0);
    CHECK_EQ(v.mtime_ms, 1007);
    CHECK_EQ(v.ctime_ms, 1000);
    CHECK_EQ(set(sh, 1500, "app", LGSET_RETENTION_S, 0), 0);
    CHECK_EQ(view(sh, "app").mtime_ms, 1007);                 /* a setting is not an append */
    char buf[64];
    CHECK_EQ(rd(sh, id, 0, buf, 14), 14);
    CHECK(!memcmp(buf, "one\ntwo\nthree\n", 14));
    CHECK_EQ(rd(sh, id, 4, buf, 4), 4);
    CHECK(!memcmp(buf, "two\n", 4));
    CHECK_EQ(rd(sh, id, v.end, buf, 4), 0);
    CHECK_EQ(rd(sh, id, v.end - 2, buf, 64), 2);
    CHECK_EQ(rd(sh, id + 5, 0, buf, 4), -ENOENT);
    done(sh);
}

TEST(settings_are_checked)
{
    shard_t *sh = fresh();
    CHECK_EQ(create(sh, 1000, "s", 0, NULL), 0);
    CHECK_EQ(set(sh, 1001, "s", LGSET_SEGMENT_BYTES, LOGS_SEGMENT_MIN - 1), -EINVAL);
    CHECK_EQ(set(sh, 1001, "s", LGSET_SEGMENT_BYTES, LOGS_SEGMENT_MAX + 1), -EINVAL);
    CHECK_EQ(set(sh, 1001, "s", LGSET_RETENTION_BYTES, LOGS_RETENTION_BYTES_MAX + 1), -EINVAL);
    CHECK_EQ(set(sh, 1001, "s", LGSET_RETENTION_S, LOGS_RETENTION_S_MAX + 1), -EINVAL);
    CHECK_EQ(set(sh, 1001, "s", 9, 1), -EINVAL);
    CHECK_EQ(set(sh, 1001, "nope", LGSET_RETENTION_S, 5), -ENOENT);
    log_view_t v = view(sh, "s");
    CHECK_EQ(v.segment_bytes, LOGS_SEGMENT_DEFAULT);
    CHECK_EQ(v.retention_bytes, 0);
    CHECK_EQ(v.retention_s, 0);
    CHECK_EQ(set(sh, 1002, "s", LGSET_SEGMENT_BYTES, 8192), 0);
    CHECK_EQ(set(sh, 1002, "s", LGSET_RETENTION_BYTES, 1 << 20), 0);
    CHECK_EQ(set(sh, 1002, "s", LGSET_RETENTION_S, 3600), 0);
    v = view(sh, "s");
    CHECK_EQ(v.segment_bytes, 8192);
    CHECK_EQ(v.retention_bytes, 1 << 20);
    CHECK_EQ(v.retention_s, 3600);
    done(sh);
}

/* Every prefix of every kind of command, and unknown opcodes, are refused and change
 * nothing: the snapshot stays byte for byte the same. */
TEST(malformed_commands_change_nothing)
{
    shard_t *sh = fresh();
    uint64_t id;
    CHECK_EQ(create(sh, 1000, "m", 0, &id), 0);
    CHECK_EQ(set(sh, 1000, "m", LGSET_SEGMENT_BYTES, 4096), 0);
    char rec[1000];
    for (int i = 0; i < 10; i++)
        CHECK_EQ(append(sh, 1000 + i, "m", 0, LOGS_AT_END, rec, record(i, rec, 1000), NULL), 0);
    char d1[300], d2[300];
    snprintf(d1, sizeof(d1), "%s/mal1", root);
    snprintf(d2, sizeof(d2), "%s/mal2", root);
    CHECK_EQ(snap_logs(sh, d1, 1), 0);
    size_t n1, n2;
    uint8_t *before = raw_stream(d1, &n1);
    CHECK(before);
    cmdbuf_t full[6] = { 0 };
    logs_cmd_create(&full[0], 1000, "new", 1);
    logs_cmd_append(&full[1], 1000, "m", id, LOGS_AT_END, "abc", 3);
    logs_cmd_unlink(&full[2], 1000, "m");
    logs_cmd_set(&full[3], 1000, "m", LGSET_RETENTION_BYTES, 1);
    logs_cmd_trim(&full[4], 1000, "m");
    logs_cmd_create(&full[5], 1000, "new", 0);
    full[5].p[1] = 77;                                   /* unknown opcode */
    for (int k = 0; k < 6; k++) {
        size_t max = k == 5 ? full[k].len + 1 : full[k].len;
        for (size_t cut = CMD_HDR_LEN; cut < max; cut++) {
            cmdbuf_t b = { 0 };
            b.p = malloc(full[k].len);
            memcpy(b.p, full[k].p, full[k].len);
            b.len = cut < full[k].len ? cut : full[k].len;
            int rc = apply(sh, &b, NULL);
            CHECK(rc < 0);
        }
        free(full[k].p);
    }
    CHECK_EQ(snap_logs(sh, d2, 1), 0);
    uint8_t *after = raw_stream(d2, &n2);
    CHECK(after);
    CHECK_EQ(n1, n2);
    CHECK(!memcmp(before, after, n1));
    free(before);
    free(after);
    done(sh);
}

TEST(sealing_into_lz4_files)
{
    shard_t *sh = fresh();
    uint64_t id;
    CHECK_EQ(create(sh, 1000, "s", 0, &id), 0);
    CHECK_EQ(set(sh, 1000, "s", LGSET_SEGMENT_BYTES, 4096), 0);
    char rec[700];
    uint64_t off, expect = 0;
    for (int i = 0; i < 100; i++) {
        size_t n = record(i, rec, 100 + (size_t)(i * 37) % 600);
        CHECK_EQ(append(sh, 1000 + i, "s", 0, LOGS_AT_END, rec, n, &off), 0);
        CHECK_EQ(off, expect);
        expect += n;
    }
    log_view_t v = view(sh, "s");
    CHECK_EQ(v.end, expect);
    CHECK(v.sealed >= 8);
    CHECK_EQ(v.segments, v.sealed + 1);
    CHECK_EQ(count_files(sh->dir, ".lz4"), (int)v.sealed);
    CHECK(count_files(sh->dir, ".seg") <= 1);
    CHECK_EQ(count_files(sh->dir, ".tmp"), 0);
    /* every record back, by its offset, also across segment boundaries */
    uint64_t at = 0;
    char got[700];
    for (int i = 0; i < 100; i++) {
        size_t n = record(i, rec, 100 + (size_t)(i * 37) % 600);
        CHECK_EQ(rd(sh, id, at, got, n), (long)n);
        CHECK(!memcmp(got, rec, n));
        at += n;
    }
    char *all = malloc(expect), *again = malloc(expect);
    CHECK_EQ(rd(sh, id, 0, all, expect), (long)expect);
    for (uint64_t o = 0; o < expect; o += 999) {        /* odd-sized reads */
        size_t n = expect - o < 999 ? expect - o : 999;
        CHECK_EQ(rd(sh, id, o, again + o, 999), (long)n);
    }
    CHECK(!memcmp(all, again, expect));
    free(all);
    free(again);
    /* sealed files are smaller than their bytes (the records are compressible) */
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "du -sb --apparent-size '%s' | cut -f1", sh->dir);
    FILE *f = popen(cmd, "r");
    unsigned long long disk = 0;
    CHECK(f && fscanf(f, "%llu", &disk) == 1);
    pclose(f);
    CHECK(disk < expect);
    done(sh);
}

TEST(retention_by_bytes_and_time)
{
    shard_t *sh = fresh();
    uint64_t id;
    CHECK_EQ(create(sh, 1000, "r", 0, &id), 0);
    CHECK_EQ(set(sh, 1000, "r", LGSET_SEGMENT_BYTES, 4096), 0);
    char rec[512];
    for (int i = 0; i < 80; i++)                  /* 40 KiB: about 10 segments */
        CHECK_EQ(append(sh, 1000, "r", 0, LOGS_AT_END, rec, record(i, rec, 512), NULL), 0);
    log_view_t v = view(sh, "r");
    CHECK_EQ(v.start, 0);
    uint32_t sealed = v.sealed;
    CHECK(sealed >= 9);
    CHECK_EQ(set(sh, 1001, "r", LGSET_RETENTION_BYTES, 10000), 0);
    v = view(sh, "r");
    CHECK(v.start > 0);
    CHECK(v.end - v.start >= 10000);
    CHECK(v.end - v.start < 10000 + 4096 + 512);
    CHECK_EQ(v.end, 80 * 512);
    CHECK_EQ(count_files(sh->dir, ".lz4"), (int)v.sealed);
    /* offsets did not move: record i is still at i * 512 */
    char got[512];
    CHECK_EQ(rd(sh, id, v.start - 1, got, 1), -ESPIPE);
    CHECK_EQ(rd(sh, id, 0, got, 1), -ESPIPE);
    uint64_t i0 = v.start / 512;
    CHECK_EQ(v.start % 512, 0);
    CHECK_EQ(rd(sh, id, v.start, got, 512), 512);
    record(i0, rec, 512);
    CHECK(!memcmp(got, rec, 512));
    /* time: a segment goes once its last record is retention_s old, by the command's time */
    CHECK_EQ(set(sh, 1002, "r", LGSET_RETENTION_BYTES, 0), 0);
    CHECK_EQ(set(sh, 1002, "r", LGSET_RETENTION_S, 10), 0);
    uint64_t start = view(sh, "r").start;
    uint32_t before_trim = view(sh, "r").sealed;
    pthread_rwlock_rdlock(&sh->st->lock);
    int due_early = logs_sm_trim_due(sh->st, id, 10999);
    int due_late = logs_sm_trim_due(sh->st, id, 11000);
    pthread_rwlock_unlock(&sh->st->lock);
    CHECK(!due_early);
    CHECK(due_late);
    cmdbuf_t b = { 0 };
    sm_result_t res;
    logs_cmd_trim(&b, 10999, "r");
    CHECK_EQ(apply(sh, &b, &res), 0);
    CHECK_EQ(view(sh, "r").start, start);
    logs_cmd_trim(&b, 11000, "r");
    CHECK_EQ(apply(sh, &b, &res), 0);
    uint32_t dropped;
    memcpy(&dropped, res.data, 4);
    CHECK_EQ(dropped, before_trim);
    v = view(sh, "r");
    CHECK_EQ(v.sealed, 0);                        /* all sealed ones were older */
    CHECK_EQ(v.segments, 1);                      /* the active one stays */
    CHECK_EQ(count_files(sh->dir, ".lz4"), 0);
    CHECK_EQ(rd(sh, id, v.start, got, 1), v.end > v.start ? 1 : 0);
    /* appending continues at the same end */
    uint64_t off;
    CHECK_EQ(append(sh, 11001, "r", 0, LOGS_AT_END, "z", 1, &off), 0);
    CHECK_EQ(off, 80 * 512);
    done(sh);
}

TEST(unlink_removes_files)
{
    shard_t *sh = fresh();
    uint64_t id, id2;
    CHECK_EQ(create(sh, 1000, "u", 0, &id), 0);
    CHECK_EQ(set(sh, 1000, "u", LGSET_SEGMENT_BYTES, 4096), 0);
    char rec[1000];
    for (int i = 0; i < 20; i++)
        CHECK_EQ(append(sh, 1000, "u", 0, LOGS_AT_END, rec, record(i, rec, 1000), NULL), 0);
    CHECK(count_files(sh->dir, "") > 1);
    int before = sh->grew;
    cmdbuf_t b = { 0 };
    logs_cmd_unlink(&b, 1001, "u");
    CHECK_EQ(apply(sh, &b, NULL), 0);
    CHECK_EQ(sh->grew, before + 1);               /* followers hear of the removal */
    CHECK_EQ(sh->last_grew, id);
    CHECK_EQ(count_files(sh->dir, ""), 0);
    CHECK_EQ(view(sh, "u").id, 0);
    logs_cmd_unlink(&b, 1001, "u");
    CHECK_EQ(apply(sh, &b, NULL), -ENOENT);
    CHECK_EQ(create(sh, 1002, "u", 1, &id2), 0);  /* a new log under the old name */
    CHECK(id2 != id);
    CHECK_EQ(append(sh, 1003, "u", id, LOGS_AT_END, "x", 1, NULL), -ESTALE);
    CHECK_EQ(view(sh, "u").end, 0);
    done(sh);
}

/* A shard with several logs, snapshotted, restored into another shard with its own
 * directory: the same snapshot bytes, the same reads, the files in place. */
TEST(snapshot_round_trip_same_bytes)
{
    shard_t *a = fresh(), *b = fresh();
    uint64_t ids[3];
    const char *names[3] = { "alpha", "beta", "gamma" };
    char rec[3000];
    for (int k = 0; k < 3; k++) {
        CHECK_EQ(create(a, 1000, names[k], 0, &ids[k]), 0);
        CHECK_EQ(set(a, 1000, names[k], LGSET_SEGMENT_BYTES, 4096 * (k + 1)), 0);
    }
    CHECK_EQ(set(a, 1000, "beta", LGSET_RETENTION_BYTES, 20000), 0);
    CHECK_EQ(set(a, 1000, "gamma", LGSET_RETENTION_S, 100), 0);
    for (int i = 0; i < 150; i++)
        CHECK_EQ(append(a, 1000 + i, names[i % 3], 0, LOGS_AT_END, rec,
                        record(i, rec, 10 + (size_t)(i * 131) % 2900), NULL), 0);
    char d1[300], d2[300];
    snprintf(d1, sizeof(d1), "%s/rt1", root);
    snprintf(d2, sizeof(d2), "%s/rt2", root);
    CHECK_EQ(snap_logs(a, d1, 1), 0);
    int grew0 = b->grew;
    CHECK_EQ(restore_logs(b, d1), 0);
    /* a restore wakes every follower of the shard: one EFF_LOG_GREW for all its logs */
    CHECK_EQ(b->grew, grew0 + 1);
    CHECK_EQ(b->last_grew, (uint64_t)LOGS_ALL_IDS);
    CHECK_EQ(snap_logs(b, d2, 1), 0);
    size_t n1, n2;
    uint8_t *s1 = raw_stream(d1, &n1), *s2 = raw_stream(d2, &n2);
    CHECK(s1 && s2);
    CHECK_EQ(n1, n2);
    CHECK(!memcmp(s1, s2, n1));
    free(s1);
    free(s2);
    for (int k = 0; k < 3; k++) {
        log_view_t va = view(a, names[k]), vb = view(b, names[k]);
        CHECK_EQ(va.id, vb.id);
        CHECK_EQ(va.start, vb.start);
        CHECK_EQ(va.end, vb.end);
        CHECK_EQ(va.sealed, vb.sealed);
        CHECK(same_reads(a, b, va.id, va.start, va.end));
    }
    CHECK_EQ(count_files(a->dir, ".lz4"), count_files(b->dir, ".lz4"));
    CHECK_EQ(count_files(b->dir, ".tmp"), 0);
    /* both go on identically */
    uint64_t oa, ob;
    CHECK_EQ(append(a, 5000, "beta", 0, LOGS_AT_END, "same", 4, &oa), 0);
    CHECK_EQ(append(b, 5000, "beta", 0, LOGS_AT_END, "same", 4, &ob), 0);
    CHECK_EQ(oa, ob);
    done(a);
    done(b);
}

/* Snapshot at index k, more commands (with seals and drops) on a; b restores the snapshot
 * and replays the same commands: the same snapshot bytes and reads (pwrite at fixed offsets,
 * seals at fixed points). Replaying twice over a restored state gives the same again. */
TEST(replay_after_snapshot_is_identical)
{
    shard_t *a = fresh(), *b = fresh();
    uint64_t id;
    char rec[2000];
    CHECK_EQ(create(a, 1000, "p", 0, &id), 0);
    CHECK_EQ(set(a, 1000, "p", LGSET_SEGMENT_BYTES, 8192), 0);
    CHECK_EQ(set(a, 1000, "p", LGSET_RETENTION_BYTES, 30000), 0);
    for (int i = 0; i < 20; i++)
        CHECK_EQ(append(a, 1000 + i, "p", 0, LOGS_AT_END, rec, record(i, rec, 777), NULL), 0);
    char d1[300], d2[300], d3[300];
    snprintf(d1, sizeof(d1), "%s/rp1", root);
    snprintf(d2, sizeof(d2), "%s/rp2", root);
    snprintf(d3, sizeof(d3), "%s/rp3", root);
    CHECK_EQ(snap_logs(a, d1, 1), 0);
    cmdbuf_t later[60];
    for (int i = 0; i < 60; i++) {
        memset(&later[i], 0, sizeof(later[i]));
        logs_cmd_append(&later[i], 2000 + i, "p", 0, LOGS_AT_END, rec,
                        record(100 + i, rec, 100 + (size_t)i * 31));
    }
    for (int round = 0; round < 2; round++) {
        CHECK_EQ(restore_logs(b, d1), 0);
        for (int i = 0; i < 60; i++) {
            cmdbuf_t c = { 0 };
            c.p = malloc(later[i].len);
            memcpy(c.p, later[i].p, later[i].len);
            c.len = later[i].len;
            CHECK_EQ(apply(b, &c, NULL), 0);
        }
    }
    for (int i = 0; i < 60; i++)
        CHECK_EQ(apply(a, &later[i], NULL), 0);
    CHECK(view(a, "p").start > 0);                /* retention dropped some meanwhile */
    CHECK_EQ(snap_logs(a, d2, 1), 0);
    CHECK_EQ(snap_logs(b, d3, 1), 0);
    size_t n1, n2;
    uint8_t *s1 = raw_stream(d2, &n1), *s2 = raw_stream(d3, &n2);
    CHECK(s1 && s2);
    CHECK_EQ(n1, n2);
    CHECK(!memcmp(s1, s2, n1));
    free(s1);
    free(s2);
    log_view_t v = view(a, "p");
    CHECK(same_reads(a, b, id, v.start, v.end));
    done(a);
    done(b);
}

static long max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* A 48 MiB log (1 MiB segments, incompressible records) is snapshotted and restored while
 * the process's peak memory grows by far less than the log: bytes go through in chunks. */
TEST(large_log_streams_in_chunks)
{
    shard_t *a = fresh(), *b = fresh();
    uint64_t id;
    CHECK_EQ(create(a, 1000, "big", 0, &id), 0);
    CHECK_EQ(set(a, 1000, "big", LGSET_SEGMENT_BYTES, 1 << 20), 0);
    char *rec = malloc(LOGS_RECORD_MAX);
    uint64_t x = 88172645463325252ull;
    const int nrec = 48 * 8;                      /* 384 records of 128 KiB */
    for (int i = 0; i < nrec; i++) {
        for (size_t j = 0; j < LOGS_RECORD_MAX; j += 8) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            memcpy(rec + j, &x, 8);
        }
        CHECK_EQ(append(a, 1000 + i, "big", 0, LOGS_AT_END, rec, LOGS_RECORD_MAX, NULL), 0);
    }
    free(rec);
    log_view_t v = view(a, "big");
    CHECK_EQ(v.end, (uint64_t)nrec * LOGS_RECORD_MAX);
    CHECK(v.sealed >= 40);
    char d1[300], d2[300];
    snprintf(d1, sizeof(d1), "%s/big1", root);
    snprintf(d2, sizeof(d2), "%s/big2", root);
    long rss0 = max_rss_kb();
    CHECK_EQ(snap_logs(a, d1, 1), 0);
    CHECK_EQ(restore_logs(b, d1), 0);
    long grown = max_rss_kb() - rss0;
    printf("# peak memory grew by %ld KiB around a snapshot and restore of a %llu KiB log\n",
           grown, (unsigned long long)(v.end >> 10));
#if !defined(__SANITIZE_ADDRESS__)   /* ASan's quarantine keeps freed chunks resident */
    CHECK(grown < 16 * 1024);
#endif
    log_view_t vb = view(b, "big");
    CHECK_EQ(vb.end, v.end);
    CHECK_EQ(vb.sealed, v.sealed);
    CHECK(same_reads(a, b, id, 0, v.end));
    done(a);
    done(b);
}

/* Restore refuses a stream whose segment bytes were damaged (CRC), whose segments do not
 * line up, or whose log has no segments, and leaves an empty, valid logs state. */
TEST(restore_refuses_damage)
{
    shard_t *a = fresh(), *b = fresh();
    uint64_t id;
    CHECK_EQ(create(a, 1000, "d", 0, &id), 0);
    CHECK_EQ(set(a, 1000, "d", LGSET_SEGMENT_BYTES, 4096), 0);
    char rec[1000];
    for (int i = 0; i < 10; i++)
        CHECK_EQ(append(a, 1000, "d", 0, LOGS_AT_END, rec, record(i, rec, 1000), NULL), 0);
    char d1[300], d2[300];
    snprintf(d1, sizeof(d1), "%s/dm1", root);
    snprintf(d2, sizeof(d2), "%s/dm2", root);
    CHECK_EQ(snap_logs(a, d1, 1), 0);
    size_t n;
    uint8_t *s = raw_stream(d1, &n);
    CHECK(s);
    CHECK_EQ(restore_raw(b, d2, s, n), 0);        /* untouched: accepted */
    CHECK_EQ(view(b, "d").end, 10000);
    /* header: u64 time, u32 version, u64 next_id, u32 n, key (u64 id, u32 len, "d"), 8 x u64
     * settings, u32 nseg; then per segment u64 base, u64 len, u64 last, u32 crc, u8 sealed */
    size_t seg0 = 8 + 4 + 8 + 4 + 8 + 4 + 1 + 8 * 8 + 4;
    uint8_t *e = malloc(n);
    memcpy(e, s, n);
    e[seg0 + 29 + 100] ^= 1;                      /* a byte of the first segment */
    CHECK(restore_raw(b, d2, e, n) < 0);
    CHECK_EQ(view(b, "d").id, 0);
    memcpy(e, s, n);
    e[seg0] = 1;                                  /* first base 1, start 0 */
    CHECK(restore_raw(b, d2, e, n) < 0);
    memcpy(e, s, n);
    e[seg0 - 4] = 0;
    e[seg0 - 3] = 0;                              /* no segments */
    CHECK(restore_raw(b, d2, e, n) < 0);
    memcpy(e, s, n);
    e[seg0 - 4 - 8 * 8 + 8 * 4 + 2] = 0xff;           /* records (field 5) above the bytes */
    CHECK(restore_raw(b, d2, e, n) < 0);
    CHECK(restore_raw(b, d2, s, n / 2) < 0);      /* cut short */
    CHECK_EQ(view(b, "d").id, 0);
    CHECK_EQ(count_files(b->dir, ""), 0);
    free(e);
    free(s);
    done(a);
    done(b);
}

/* A file error at apply (the log's directory removed behind the node's back) cannot change
 * the replicated index: the append succeeds, the log is broken on this node only (reads
 * EIO, snapshots fail), and a restore from a good snapshot repairs it. */
TEST(file_errors_break_the_log_locally)
{
    shard_t *a = fresh(), *b = fresh();
    uint64_t id, off;
    char rec[100];
    CHECK_EQ(create(a, 1000, "f", 0, &id), 0);
    CHECK_EQ(create(b, 1000, "f", 0, NULL), 0);
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(append(a, 1000, "f", 0, LOGS_AT_END, rec, record(i, rec, 100), NULL), 0);
        CHECK_EQ(append(b, 1000, "f", 0, LOGS_AT_END, rec, record(i, rec, 100), NULL), 0);
    }
    char d1[300], d2[300], cmd[700];
    snprintf(d1, sizeof(d1), "%s/br1", root);
    snprintf(d2, sizeof(d2), "%s/br2", root);
    CHECK_EQ(snap_logs(a, d1, 1), 0);             /* good, before the damage */
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'/*", a->dir);
    CHECK_EQ(system(cmd), 0);
    /* the cached descriptor of the active file still writes; a new file cannot be made */
    CHECK_EQ(set(a, 1001, "f", LGSET_SEGMENT_BYTES, 4096), 0);
    CHECK_EQ(set(b, 1001, "f", LGSET_SEGMENT_BYTES, 4096), 0);
    for (int i = 5; i < 60; i++) {
        CHECK_EQ(append(a, 1002, "f", 0, LOGS_AT_END, rec, record(i, rec, 100), &off), 0);
        CHECK_EQ(append(b, 1002, "f", 0, LOGS_AT_END, rec, record(i, rec, 100), NULL), 0);
        CHECK_EQ(off, (uint64_t)i * 100);
    }
    log_view_t va = view(a, "f"), vb = view(b, "f");
    CHECK(va.broken);
    CHECK(!vb.broken);
    CHECK_EQ(va.end, vb.end);                     /* the index is the same on both */
    CHECK_EQ(va.sealed, vb.sealed);
    char buf[100];
    CHECK_EQ(rd(a, id, 0, buf, 100), -EIO);
    CHECK_EQ(rd(b, id, 0, buf, 100), 100);
    CHECK(snap_logs(a, d2, 1) < 0);               /* its bytes cannot be produced */
    CHECK_EQ(restore_logs(a, d1), 0);             /* a restore rewrites the files */
    va = view(a, "f");
    CHECK(!va.broken);
    CHECK_EQ(va.end, 500);
    CHECK_EQ(rd(a, id, 400, buf, 100), 100);
    record(4, rec, 100);
    CHECK(!memcmp(buf, rec, 100));
    done(a);
    done(b);
}

/* A sealed file damaged on disk where its block table does not notice (a byte of a block
 * stored raw): reads give the wrong byte (no per-block checksum, docs/LOGS.md), but the
 * next snapshot's CRC check fails it and marks the log broken here, so reads give EIO. */
TEST(damaged_sealed_file_breaks_the_log_at_snapshot)
{
    shard_t *a = fresh();
    uint64_t id;
    CHECK_EQ(create(a, 1000, "d", 0, &id), 0);
    CHECK_EQ(set(a, 1000, "d", LGSET_SEGMENT_BYTES, 4096), 0);
    char rec[1000];
    unsigned seed = 7;
    for (int i = 0; i < 10; i++) {
        for (size_t j = 0; j < sizeof(rec); j++)
            rec[j] = (char)(rand_r(&seed) >> 8);   /* incompressible: blocks stored raw */
        CHECK_EQ(append(a, 1001, "d", 0, LOGS_AT_END, rec, sizeof(rec), NULL), 0);
    }
    CHECK(view(a, "d").sealed >= 1);
    char cmd[600], path[600] = "";
    snprintf(cmd, sizeof(cmd), "find '%s' -name '*.lz4' | sort | head -n 1", a->dir);
    FILE *f = popen(cmd, "r");
    CHECK(f && fgets(path, sizeof(path), f));
    pclose(f);
    path[strcspn(path, "\n")] = 0;
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    struct stat sb;
    CHECK_EQ(fstat(fd, &sb), 0);
    char c;
    CHECK_EQ(pread(fd, &c, 1, sb.st_size - 10), 1);
    c ^= 0x5a;
    CHECK_EQ(pwrite(fd, &c, 1, sb.st_size - 10), 1);
    close(fd);
    char buf[100];
    CHECK_EQ(rd(a, id, 0, buf, 100), 100);          /* undetected by a read */
    CHECK(!view(a, "d").broken);
    char d1[300];
    snprintf(d1, sizeof(d1), "%s/dmg", root);
    CHECK(snap_logs(a, d1, 1) < 0);                 /* the CRC check catches it */
    CHECK(view(a, "d").broken);
    CHECK_EQ(rd(a, id, 0, buf, 100), -EIO);
    done(a);
}

/* A shard without a bound directory refuses every logs/ command. */
TEST(unbound_shard_refuses)
{
    state_t *st = state_new(1 << 20);
    if (!st->ns_state[NS_LOGS])
        logs_sm.init(st);
    shard_t sh = { .st = st };
    CHECK_EQ(create(&sh, 1000, "x", 0, NULL), -ENOTSUP);
    CHECK_EQ(view(&sh, "x").id, 0);
    if (!ns_sms[NS_LOGS])
        logs_sm.free(st);
    state_free(st);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

int main(void)
{
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(records_offsets_and_refusals);
    RUN(settings_are_checked);
    RUN(malformed_commands_change_nothing);
    RUN(sealing_into_lz4_files);
    RUN(retention_by_bytes_and_time);
    RUN(unlink_removes_files);
    RUN(snapshot_round_trip_same_bytes);
    RUN(replay_after_snapshot_is_identical);
    RUN(large_log_streams_in_chunks);
    RUN(restore_refuses_damage);
    RUN(file_errors_break_the_log_locally);
    RUN(damaged_sealed_file_breaks_the_log_at_snapshot);
    RUN(unbound_shard_refuses);
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return CHECK_DONE();
}
