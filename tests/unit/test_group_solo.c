/* tests/unit/test_group_solo.c — the single-node group with a toy state machine (a counter,
 * a hash chain over every applied command, per-thread sequence numbers): group commit under
 * 16 concurrent proposers, replay on reopen, snapshot + compaction, torn-tail recovery,
 * corruption refusal, disk full on a small tmpfs, and the error contract of group.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/err.h"
#include "cluster/group.h"
#include "tests/unit/check.h"

#define THREADS 16

typedef struct toy {
    uint64_t count;      /* commands applied */
    uint64_t last_index; /* index of the last one */
    uint64_t chain;      /* hash over (index, bytes) of every command, in order */
    uint32_t seq[THREADS];
    uint64_t order_errors; /* a thread's commands applied out of its order, or twice */
    uint64_t replayed;     /* applies with res == NULL (not part of the state) */
} toy_t;

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static void toy_apply(void *ctx, uint64_t index, const void *cmd, size_t len, sm_result_t *res)
{
    toy_t *t = ctx;
    uint32_t th, seq;
    if (index != t->last_index + 1)
        t->order_errors++;
    t->count++;
    t->last_index = index;
    t->chain = mix(mix(t->chain, &index, sizeof(index)), cmd, len);
    if (len >= 8) {
        memcpy(&th, cmd, 4);
        memcpy(&seq, (const uint8_t *)cmd + 4, 4);
        if (th < THREADS) {
            if (seq != t->seq[th] + 1)
                t->order_errors++;
            t->seq[th] = seq;
        }
    }
    if (res) {
        res->len = sizeof(index);
        memcpy(res->data, &index, sizeof(index));
    } else {
        t->replayed++;
    }
}

static int toy_snapshot(void *ctx, snap_writer_t *w)
{
    toy_t *t = ctx;
    int rc = snap_writer_put(w, t, offsetof(toy_t, replayed));
    /* some bulk so the stream spans several lz4 blocks */
    static uint8_t bulk[300000];
    for (size_t i = 0; rc == 0 && i < sizeof(bulk); i++)
        bulk[i] = (uint8_t)(i * 7 + t->count);
    if (rc == 0)
        rc = snap_writer_put(w, bulk, sizeof(bulk));
    return rc;
}

static int toy_restore(void *ctx, snap_reader_t *r)
{
    toy_t *t = ctx;
    static uint8_t bulk[300000];
    memset(t, 0, sizeof(*t));
    int rc = snap_reader_get(r, t, offsetof(toy_t, replayed));
    if (rc == 0)
        rc = snap_reader_get(r, bulk, sizeof(bulk));
    for (size_t i = 0; rc == 0 && i < sizeof(bulk); i++)
        if (bulk[i] != (uint8_t)(i * 7 + t->count))
            rc = -QERR_CORRUPT;
    return rc;
}

static const sm_ops_t toy_ops = { .apply = toy_apply, .snapshot = toy_snapshot,
                                  .restore = toy_restore };

/* ---- fixture ---- */

static char base[64];
static char dir[256];
static int ndirs;

static void new_dir(void)
{
    snprintf(dir, sizeof(dir), "%s/g%d", base, ndirs++);
    mkdir(dir, 0755);
}

static int same_state(const toy_t *a, const toy_t *b)
{
    return a->count == b->count && a->last_index == b->last_index && a->chain == b->chain &&
           memcmp(a->seq, b->seq, sizeof(a->seq)) == 0 && a->order_errors == b->order_errors;
}

static int open_group(const char *d, uint64_t snapshot_bytes, toy_t *t, group_t **g)
{
    group_config_t cfg = { .dir = d, .snapshot_bytes = snapshot_bytes };
    char *msg = NULL;
    memset(t, 0, sizeof(*t));
    int rc = group_open(&cfg, &toy_ops, t, g, &msg);
    if (rc)
        printf("# group_open(%s): %s: %s\n", d, qerr_str(rc), msg ? msg : "(no message)");
    free(msg);
    return rc;
}

static int propose_seq(group_t *g, uint32_t th, uint32_t seq, size_t len)
{
    uint8_t cmd[4096];
    if (len < 8)
        len = 8;
    memcpy(cmd, &th, 4);
    memcpy(cmd + 4, &seq, 4);
    for (size_t i = 8; i < len; i++)
        cmd[i] = (uint8_t)(seq + i);
    return group_propose(g, cmd, len, NULL);
}

/* Path of the newest WAL segment of group dir d (static buffer). */
static const char *last_segment(const char *d)
{
    static char path[1024];
    char wd[512], best[256] = "";
    snprintf(wd, sizeof(wd), "%s/wal", d);
    DIR *dp = opendir(wd);
    struct dirent *e;
    if (!dp)
        return NULL;
    while ((e = readdir(dp)))
        if (strstr(e->d_name, ".seg") && !strstr(e->d_name, ".tmp") &&
            strcmp(e->d_name, best) > 0)
            snprintf(best, sizeof(best), "%s", e->d_name);
    closedir(dp);
    snprintf(path, sizeof(path), "%s/%s", wd, best);
    return best[0] ? path : NULL;
}

static off_t file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? st.st_size : -1;
}

/* ---- cases ---- */

struct worker {
    group_t *g;
    uint32_t th;
    int n;
    int errors;
    uint64_t *indexes; /* index each proposal got, from its result */
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < w->n; i++) {
        uint8_t cmd[40];
        uint32_t seq = (uint32_t)i + 1;
        sm_result_t res;
        memcpy(cmd, &w->th, 4);
        memcpy(cmd + 4, &seq, 4);
        memset(cmd + 8, (int)w->th, sizeof(cmd) - 8);
        if (group_propose(w->g, cmd, sizeof(cmd), &res) != 0 || res.len != 8 || res.code) {
            w->errors++;
            continue;
        }
        memcpy(&w->indexes[i], res.data, 8);
    }
    return NULL;
}

static toy_t saved;
static char saved_dir[256];

TEST(concurrent_proposers_share_fsyncs)
{
    enum { PER = 150 };
    group_t *g;
    toy_t t;
    struct worker w[THREADS];
    pthread_t tid[THREADS];
    static uint64_t idx[THREADS][PER];
    group_stats_t st;
    new_dir();
    CHECK_EQ(open_group(dir, 0, &t, &g), 0);
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){ g, (uint32_t)i, PER, 0, idx[i] };
        CHECK_EQ(pthread_create(&tid[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(tid[i], NULL);
    group_get_stats(g, &st);
    group_close(g);
    for (int i = 0; i < THREADS; i++)
        CHECK_EQ(w[i].errors, 0);
    CHECK_EQ(t.count, THREADS * PER);
    CHECK_EQ(t.order_errors, 0);
    CHECK_EQ(t.replayed, 0);
    for (int i = 0; i < THREADS; i++)
        CHECK_EQ(t.seq[i], PER);
    /* every proposal got its own index, 1..N, each exactly once */
    static uint8_t seen[THREADS * PER + 1];
    for (int i = 0; i < THREADS; i++)
        for (int j = 0; j < PER; j++) {
            CHECK(idx[i][j] >= 1 && idx[i][j] <= THREADS * PER);
            CHECK(!seen[idx[i][j]]);
            seen[idx[i][j]] = 1;
            if (j)
                CHECK(idx[i][j] > idx[i][j - 1]);
        }
    CHECK_EQ(st.commit_index, THREADS * PER);
    CHECK_EQ(st.applied_index, THREADS * PER);
    CHECK_EQ(st.wal_appends, THREADS * PER);
    CHECK_EQ(st.term, 1);
    CHECK_EQ(st.commit_latency.count, THREADS * PER);
    CHECK(st.fsync_latency.count > 0);
    printf("# %d proposals, %llu fsyncs\n", THREADS * PER, (unsigned long long)st.wal_fsyncs);
    CHECK(st.wal_fsyncs < THREADS * PER); /* group commit happened */
    saved = t;
    snprintf(saved_dir, sizeof(saved_dir), "%s", dir);
}

TEST(reopen_replays_same_state)
{
    group_t *g;
    toy_t t;
    group_stats_t st;
    CHECK(saved.count > 0);
    CHECK_EQ(open_group(saved_dir, 0, &t, &g), 0);
    group_get_stats(g, &st);
    CHECK(same_state(&t, &saved));
    CHECK_EQ(t.replayed, saved.count);
    CHECK_EQ(st.applied_index, saved.count);
    /* and it goes on from there */
    CHECK_EQ(propose_seq(g, 0, saved.seq[0] + 1, 8), 0);
    group_close(g);
    CHECK_EQ(t.last_index, saved.count + 1);
    CHECK_EQ(t.order_errors, 0);
}

TEST(snapshot_compaction_reopen)
{
    enum { N = 600 };
    group_t *g;
    toy_t t, t2;
    group_stats_t st;
    new_dir();
    CHECK_EQ(open_group(dir, 128 << 10, &t, &g), 0); /* 128 KiB: snapshot every ~120 cmds */
    for (uint32_t i = 1; i <= N; i++)
        CHECK_EQ(propose_seq(g, 1, i, 1000), 0);
    group_get_stats(g, &st);
    group_close(g);
    printf("# snapshots %llu, snapshot index %llu, wal bytes %llu\n",
           (unsigned long long)st.snapshots, (unsigned long long)st.snapshot_index,
           (unsigned long long)st.wal_bytes);
    CHECK(st.snapshots >= 3);
    CHECK(st.snapshot_index > 0);
    CHECK(st.wal_bytes < (uint64_t)N * 1000 / 2); /* compaction deleted segments */
    CHECK_EQ(open_group(dir, 128 << 10, &t2, &g), 0);
    group_get_stats(g, &st);
    group_close(g);
    CHECK(same_state(&t, &t2));
    CHECK(t2.replayed < N); /* the snapshot covered a prefix */
    CHECK(st.snapshot_index > 0);
    /* only the newest snapshot is kept */
    char sd[512];
    int snaps = 0;
    snprintf(sd, sizeof(sd), "%s/snap", dir);
    DIR *dp = opendir(sd);
    struct dirent *e;
    CHECK(dp);
    while ((e = readdir(dp)))
        snaps += e->d_name[0] != '.';
    closedir(dp);
    CHECK_EQ(snaps, 1);
}

TEST(torn_tail_recovers_all_but_torn_record)
{
    group_t *g;
    toy_t t, t2;
    new_dir();
    CHECK_EQ(open_group(dir, 0, &t, &g), 0);
    for (uint32_t i = 1; i <= 50; i++)
        CHECK_EQ(propose_seq(g, 2, i, 100), 0);
    group_close(g);
    const char *seg = last_segment(dir);
    CHECK(seg);
    off_t sz = file_size(seg);
    CHECK(truncate(seg, sz - 5) == 0); /* simulated crash mid-write of record 50 */
    CHECK_EQ(open_group(dir, 0, &t2, &g), 0);
    CHECK_EQ(t2.count, 49);
    CHECK_EQ(t2.seq[2], 49);
    CHECK_EQ(file_size(seg), sz - 100 - 24); /* the torn record was cut off */
    /* the log continues at index 50 */
    CHECK_EQ(propose_seq(g, 2, 50, 100), 0);
    group_close(g);
    CHECK_EQ(t2.count, 50);
    CHECK(same_state(&t, &t2));
}

TEST(corrupt_middle_record_refuses_to_open)
{
    group_t *g;
    toy_t t;
    char *msg = NULL;
    group_config_t cfg = { .dir = dir };
    new_dir();
    CHECK_EQ(open_group(dir, 0, &t, &g), 0);
    for (uint32_t i = 1; i <= 20; i++)
        CHECK_EQ(propose_seq(g, 3, i, 100), 0);
    group_close(g);
    const char *seg = last_segment(dir);
    CHECK(seg);
    int fd = open(seg, O_RDWR);
    CHECK(fd >= 0);
    off_t off = 32 + 5 * 124 + 50; /* inside the payload of record 6 */
    uint8_t b;
    CHECK(pread(fd, &b, 1, off) == 1);
    b ^= 0x10;
    CHECK(pwrite(fd, &b, 1, off) == 1);
    close(fd);
    memset(&t, 0, sizeof(t));
    cfg.dir = dir;
    int rc = group_open(&cfg, &toy_ops, &t, &g, &msg);
    CHECK_EQ(rc, -QERR_CORRUPT);
    CHECK(msg);
    printf("# %s\n", msg);
    int has_file = strstr(msg, seg) != NULL, has_off = strstr(msg, "byte offset 652:") != NULL;
    free(msg);
    CHECK(has_file);
    CHECK(has_off);
}

TEST(errors_toobig_and_closed_contract)
{
    group_t *g;
    toy_t t;
    group_config_t cfg = { .max_cmd = 100 };
    char *msg = NULL;
    new_dir();
    cfg.dir = dir;
    memset(&t, 0, sizeof(t));
    CHECK_EQ(group_open(&cfg, &toy_ops, &t, &g, &msg), 0);
    CHECK(msg == NULL);
    uint8_t big[101] = { 0 };
    CHECK_EQ(group_propose(g, big, sizeof(big), NULL), -QERR_TOOBIG);
    CHECK_EQ(group_propose(g, big, 100, NULL), 0);
    CHECK_EQ(group_propose(g, NULL, 0, NULL), 0); /* empty command */
    group_close(g);
    CHECK_EQ(t.count, 2);
    group_close(NULL);
    /* not a directory */
    cfg.dir = "/nonexistent/quorumfs-test";
    CHECK(group_open(&cfg, &toy_ops, &t, &g, &msg) < 0);
    CHECK(msg != NULL);
    free(msg);
}

TEST(disk_full_fails_batch_then_recovers)
{
    char mnt[128], filler[160];
    group_t *g;
    toy_t t, t2;
    int rc = 0;
    uint32_t seq = 0;
    snprintf(mnt, sizeof(mnt), "%s/tmpfs", base);
    mkdir(mnt, 0755);
    CHECK(mount("tmpfs", mnt, "tmpfs", 0, "size=1m") == 0); /* main() checked we can */
    snprintf(filler, sizeof(filler), "%s/filler", mnt);
    snprintf(dir, sizeof(dir), "%s/g", mnt);
    mkdir(dir, 0755);
    int fd = open(filler, O_WRONLY | O_CREAT, 0644);
    static uint8_t junk[256 << 10];
    if (fd < 0 || write(fd, junk, sizeof(junk)) != (ssize_t)sizeof(junk)) {
        check_case_failed = 1;
        goto out;
    }
    close(fd);
    if (open_group(dir, 0, &t, &g) != 0) {
        check_case_failed = 1;
        goto out;
    }
    while (seq < 1000) {
        rc = propose_seq(g, 4, seq + 1, 4000);
        if (rc)
            break;
        seq++;
    }
    uint64_t before = t.count;
    group_stats_t st;
    group_get_stats(g, &st);
    int ok = rc == -QERR_NOSPACE && before == seq && seq > 10 && !st.failed;
    /* again: still full, still nothing applied, group not failed */
    ok = ok && propose_seq(g, 4, seq + 1, 4000) == -QERR_NOSPACE && t.count == before;
    unlink(filler);
    /* space is back: the group works again */
    for (int i = 0; ok && i < 20; i++)
        ok = propose_seq(g, 4, ++seq, 4000) == 0;
    group_get_stats(g, &st);
    group_close(g);
    printf("# disk full after %llu commands; then %u applied\n", (unsigned long long)before,
           seq);
    ok = ok && t.count == seq && t.order_errors == 0 && !st.failed;
    /* reopen: exactly the committed commands, nothing of the failed batches */
    ok = ok && open_group(dir, 0, &t2, &g) == 0;
    if (ok) {
        group_close(g);
        ok = same_state(&t, &t2);
    }
    if (!ok) {
        printf("# rc %d seq %u before %llu count %llu\n", rc, seq, (unsigned long long)before,
               (unsigned long long)t.count);
        check_case_failed = 1;
    }
out:
    umount2(mnt, MNT_DETACH);
}

/* Whether this process may mount a small tmpfs (root, or CAP_SYS_ADMIN); errno if not. */
static int can_mount_tmpfs(void)
{
    char mnt[128];
    snprintf(mnt, sizeof(mnt), "%s/probe", base);
    mkdir(mnt, 0755);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=64k") != 0)
        return 0;
    umount2(mnt, MNT_DETACH);
    return 1;
}

int main(void)
{
    snprintf(base, sizeof(base), "/tmp/qfs-group-XXXXXX");
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(concurrent_proposers_share_fsyncs);
    RUN(reopen_replays_same_state);
    RUN(snapshot_compaction_reopen);
    RUN(torn_tail_recovers_all_but_torn_record);
    RUN(corrupt_middle_record_refuses_to_open);
    RUN(errors_toobig_and_closed_contract);
    if (can_mount_tmpfs())
        RUN(disk_full_fails_batch_then_recovers);
    else
        printf("ok disk_full_fails_batch_then_recovers # skip cannot mount a tmpfs: %s\n",
               strerror(errno));
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", base);
    return CHECK_DONE();
}
