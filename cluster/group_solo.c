/* cluster/group_solo.c — the single-node group of cluster/group.h: a WAL (<dir>/wal) with
 * group commit by one commit thread, and lz4 snapshots (<dir>/snap) taken every
 * snapshot_bytes of WAL, after which whole WAL segments are deleted. Proposers queue a
 * proposal that lives on their own stack and sleep until the commit thread has made their
 * batch durable (one fdatasync per batch) and applied it. */
#include "cluster/group.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cluster/err.h"
#include "cluster/snapshot.h"
#include "cluster/wal.h"

#define TERM 1 /* a single node never changes term */
#define DEFAULT_SNAPSHOT_BYTES (64ull << 20)
#define DEFAULT_MAX_CMD (2u << 20)
#define SNAP_RETRY_NS 1000000000ull /* wait this long before retrying a failed snapshot */

/* One proposal; lives on the proposer's stack until done is set under g->mu. */
typedef struct proposal {
    const void *cmd; /* the caller's buffer, valid while the caller waits */
    size_t len;
    int rc;
    int done;
    sm_result_t res;
    pthread_cond_t cv;
    struct proposal *next;
} proposal_t;

struct group {
    char *dir, *wal_dir, *snap_dir;
    const sm_ops_t *ops;
    void *ctx;
    uint64_t snapshot_bytes;
    size_t max_cmd;

    pthread_mutex_t mu; /* guards the queue, closing, failed and st (except hists) */
    pthread_cond_t cv;  /* the commit thread waits here for work */
    proposal_t *head, *tail;
    int closing;
    int failed;
    group_stats_t st;
    pthread_t thread;

    /* Owned by the commit thread (by group_open before it starts). */
    wal_t *wal;
    uint64_t next_index;     /* index the next command gets */
    uint64_t snap_index;     /* index covered by the newest snapshot */
    uint64_t bytes_since_snap;
    uint64_t snap_retry_at;  /* monotonic ns before which no snapshot is tried */
    char *replay_err;        /* set by the replay callback */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void glog(const group_t *g, const char *fmt, ...)
{
    va_list ap;
    char line[512];
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "quorumfs: group %s: %s\n", g->dir, line);
}

/* ---- the commit thread ---- */

/* Appends the batch, syncs once, applies. Sets each proposal's rc (and res). */
static void run_batch(group_t *g, proposal_t *batch)
{
    uint64_t index = g->next_index, bytes = 0;
    proposal_t *p;
    int rc = 0;
    for (p = batch; p && rc == 0; p = p->next) {
        rc = wal_append(g->wal, index++, TERM, p->cmd, p->len);
        bytes += WAL_RECORD_HEADER + p->len;
    }
    if (rc == 0) {
        uint64_t t0 = now_ns();
        rc = wal_sync(g->wal);
        hist_add(&g->st.fsync_latency, now_ns() - t0);
    }
    if (rc) {
        if (rc != -QERR_NOSPACE) {
            pthread_mutex_lock(&g->mu);
            if (!g->failed)
                glog(g, "WAL write failed (%s): refusing further writes until restarted",
                     qerr_str(rc));
            g->failed = 1;
            pthread_mutex_unlock(&g->mu);
        }
        for (p = batch; p; p = p->next)
            p->rc = rc;
        return;
    }
    index = g->next_index;
    for (p = batch; p; p = p->next) {
        memset(&p->res, 0, sizeof(p->res));
        g->ops->apply(g->ctx, index++, p->cmd, p->len, &p->res);
        p->rc = 0;
    }
    g->next_index = index;
    g->bytes_since_snap += bytes;
}

/* Takes a snapshot of the state after next_index - 1 and compacts the WAL, if enough WAL
 * was written since the last one. A failure is logged and retried after SNAP_RETRY_NS; the
 * WAL still holds everything, so nothing is lost. */
static void maybe_snapshot(group_t *g)
{
    uint64_t index = g->next_index - 1, t = now_ns();
    snap_writer_t *w = NULL;
    int rc;
    wal_stats_t ws;
    wal_get_stats(g->wal, &ws);
    if (ws.failed || g->bytes_since_snap < g->snapshot_bytes || index == g->snap_index ||
        t < g->snap_retry_at)
        return;
    rc = snapshot_begin(g->snap_dir, index, TERM, &w);
    if (rc == 0) {
        rc = g->ops->snapshot(g->ctx, w);
        if (rc)
            snapshot_abort(w);
        else
            rc = snapshot_commit(w);
    }
    if (rc) {
        glog(g, "snapshot at index %" PRIu64 " failed (%s); will retry, the WAL keeps "
             "everything", index, qerr_str(rc));
        g->snap_retry_at = now_ns() + SNAP_RETRY_NS;
        return;
    }
    g->snap_index = index;
    g->bytes_since_snap = 0;
    rc = wal_truncate_prefix(g->wal, index);
    if (rc)
        glog(g, "WAL compaction up to %" PRIu64 " failed (%s); old segments stay", index,
             qerr_str(rc));
    pthread_mutex_lock(&g->mu);
    g->st.snapshot_index = index;
    g->st.snapshots++;
    pthread_mutex_unlock(&g->mu);
}

/* Copies the WAL counters into st; call with g->mu held, from the commit thread. */
static void publish_wal_stats(group_t *g)
{
    wal_stats_t ws;
    wal_get_stats(g->wal, &ws);
    g->st.commit_index = g->next_index - 1;
    g->st.applied_index = g->next_index - 1;
    g->st.wal_bytes = ws.bytes;
    g->st.wal_appends = ws.appends;
    g->st.wal_fsyncs = ws.syncs;
    if (ws.failed)
        g->failed = 1;
}

static void *commit_main(void *arg)
{
    group_t *g = arg;
    pthread_mutex_lock(&g->mu);
    for (;;) {
        while (!g->head && !g->closing)
            pthread_cond_wait(&g->cv, &g->mu);
        if (!g->head)
            break; /* closing and drained */
        proposal_t *batch = g->head;
        g->head = g->tail = NULL;
        pthread_mutex_unlock(&g->mu);

        run_batch(g, batch);

        pthread_mutex_lock(&g->mu);
        publish_wal_stats(g);
        while (batch) { /* the proposer may return (and its frame vanish) once we unlock */
            proposal_t *next = batch->next;
            batch->done = 1;
            pthread_cond_signal(&batch->cv);
            batch = next;
        }
        pthread_mutex_unlock(&g->mu);

        maybe_snapshot(g);

        pthread_mutex_lock(&g->mu);
        publish_wal_stats(g);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

/* ---- open / propose / close ---- */

static int replay_cb(void *arg, uint64_t index, uint64_t term, const void *payload,
                     size_t len)
{
    group_t *g = arg;
    (void)term;
    if (index <= g->snap_index)
        return 0; /* already in the snapshot */
    if (index != g->next_index) {
        qerr_set_msg(&g->replay_err, "group %s: the WAL continues at index %" PRIu64
                " but the state is at index %" PRIu64 " (snapshot %" PRIu64
                "): entries are missing", g->dir, index, g->next_index - 1, g->snap_index);
        return -QERR_CORRUPT;
    }
    g->ops->apply(g->ctx, index, payload, len, NULL);
    g->next_index = index + 1;
    g->bytes_since_snap += WAL_RECORD_HEADER + len;
    return 0;
}

static int restore_snapshot(group_t *g, char **errmsg)
{
    snapshot_info_t info;
    snap_reader_t *r = NULL;
    int rc = snapshot_remove_temps(g->snap_dir);
    if (rc > 0)
        glog(g, "deleted %d unfinished snapshot temp file(s)", rc);
    rc = snapshot_open_read(g->snap_dir, &info, errmsg);
    if (rc == -QERR_NOTFOUND)
        return 0;
    if (rc)
        return rc;
    rc = snapshot_reader_open(&info, &r, errmsg);
    if (rc == 0) {
        char *why = NULL;
        rc = g->ops->restore(g->ctx, r);
        int vrc = snapshot_reader_close(r, &why);
        if (rc)
            qerr_set_msg(errmsg, "group %s: restoring snapshot %s failed: %s%s%s", g->dir,
                    info.path, qerr_str(rc), why ? "; " : "", why ? why : "");
        else if (vrc) {
            rc = vrc;
            *errmsg = why;
            why = NULL;
        }
        free(why);
    }
    if (rc == 0) {
        g->snap_index = info.index;
        g->next_index = info.index + 1;
    }
    snapshot_info_free(&info);
    return rc;
}

/* Creates path (a child of parent) if missing; a new entry is made durable by fsyncing
 * parent, so a snapshot inside it cannot vanish with the directory after a power loss. */
static int make_dir(const char *parent, const char *path, char **errmsg)
{
    int fd, rc = 0;
    if (mkdir(path, 0755) < 0) {
        if (errno == EEXIST)
            return 0;
        qerr_set_msg(errmsg, "group: cannot create %s: %s", path, strerror(errno));
        return errno == ENOSPC ? -QERR_NOSPACE : -QERR_IO;
    }
    fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0) {
        qerr_set_msg(errmsg, "group: cannot fsync %s: %s", parent, strerror(errno));
        rc = -QERR_IO;
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

int group_open(const group_config_t *cfg, const sm_ops_t *ops, void *ctx, group_t **out,
               char **errmsg)
{
    group_t *g = calloc(1, sizeof(*g));
    wal_options_t wo = { 0 };
    struct stat st;
    int rc = -QERR_NOMEM, mu_init = 0;
    *out = NULL;
    *errmsg = NULL;
    if (!g)
        goto fail;
    g->ops = ops;
    g->ctx = ctx;
    g->snapshot_bytes = cfg->snapshot_bytes ? cfg->snapshot_bytes : DEFAULT_SNAPSHOT_BYTES;
    g->max_cmd = cfg->max_cmd ? cfg->max_cmd : DEFAULT_MAX_CMD;
    if (g->max_cmd > WAL_MAX_PAYLOAD)
        g->max_cmd = WAL_MAX_PAYLOAD;
    g->next_index = 1;
    g->dir = strdup(cfg->dir);
    if (!g->dir || asprintf(&g->wal_dir, "%s/wal", cfg->dir) < 0 ||
        asprintf(&g->snap_dir, "%s/snap", cfg->dir) < 0)
        goto fail;
    if (stat(cfg->dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        rc = -QERR_INVAL;
        qerr_set_msg(errmsg, "group: %s is not a directory", cfg->dir);
        goto fail;
    }
    if ((rc = make_dir(cfg->dir, g->snap_dir, errmsg)))
        goto fail;
    if ((rc = restore_snapshot(g, errmsg)))
        goto fail;

    /* Segments a quarter of a snapshot interval, so compaction frees space steadily. */
    wo.segment_bytes = g->snapshot_bytes / 4;
    if (wo.segment_bytes < (64u << 10))
        wo.segment_bytes = 64u << 10;
    if (wo.segment_bytes > WAL_DEFAULT_SEGMENT)
        wo.segment_bytes = WAL_DEFAULT_SEGMENT;
    rc = wal_open(g->wal_dir, &wo, replay_cb, g, &g->wal, errmsg);
    if (rc) {
        if (g->replay_err && !*errmsg) {
            *errmsg = g->replay_err;
            g->replay_err = NULL;
        }
        if (rc > 0)
            rc = -QERR_CORRUPT;
        goto fail;
    }
    if (wal_last_index(g->wal) && wal_last_index(g->wal) < g->snap_index) {
        /* Every record is already in the snapshot; restart the log after it. */
        glog(g, "WAL ends at %" PRIu64 ", before snapshot %" PRIu64 "; starting a new log",
             wal_last_index(g->wal), g->snap_index);
        if ((rc = wal_truncate_suffix(g->wal, 0))) {
            qerr_set_msg(errmsg, "group %s: cannot reset the WAL: %s", g->dir, qerr_str(rc));
            goto fail;
        }
    }

    if (pthread_mutex_init(&g->mu, NULL) || pthread_cond_init(&g->cv, NULL)) {
        rc = -QERR_NOMEM;
        goto fail;
    }
    mu_init = 1;
    g->st.term = TERM;
    g->st.snapshot_index = g->snap_index;
    publish_wal_stats(g);
    if (pthread_create(&g->thread, NULL, commit_main, g)) {
        rc = -QERR_NOMEM;
        qerr_set_msg(errmsg, "group %s: cannot start the commit thread", g->dir);
        goto fail;
    }
    pthread_setname_np(g->thread, "qfs-commit");
    *out = g;
    return 0;
fail:
    if (!*errmsg)
        qerr_set_msg(errmsg, "group %s: cannot open: %s", cfg->dir, qerr_str(rc));
    if (g) {
        if (mu_init) {
            pthread_mutex_destroy(&g->mu);
            pthread_cond_destroy(&g->cv);
        }
        wal_close(g->wal);
        free(g->replay_err);
        free(g->dir);
        free(g->wal_dir);
        free(g->snap_dir);
        free(g);
    }
    return rc;
}

int group_propose(group_t *g, const void *cmd, size_t len, sm_result_t *res)
{
    proposal_t p = { .cmd = cmd, .len = len };
    uint64_t t0 = now_ns();
    if (len > g->max_cmd)
        return -QERR_TOOBIG;
    if (len && !cmd)
        return -QERR_INVAL; /* would fail the WAL append of the whole batch */
    pthread_cond_init(&p.cv, NULL);
    pthread_mutex_lock(&g->mu);
    if (g->closing || g->failed) {
        int rc = g->closing ? -QERR_CLOSED : -QERR_FAILED;
        pthread_mutex_unlock(&g->mu);
        pthread_cond_destroy(&p.cv);
        return rc;
    }
    if (g->tail)
        g->tail->next = &p;
    else {
        g->head = &p;
        pthread_cond_signal(&g->cv);
    }
    g->tail = &p;
    while (!p.done)
        pthread_cond_wait(&p.cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    pthread_cond_destroy(&p.cv);
    if (p.rc == 0) {
        hist_add(&g->st.commit_latency, now_ns() - t0);
        if (res)
            *res = p.res;
    }
    return p.rc;
}

static void hist_copy(hist_t *dst, const hist_t *src)
{
    for (int i = 0; i < HIST_BUCKETS; i++)
        dst->bucket[i] = __atomic_load_n(&src->bucket[i], __ATOMIC_RELAXED);
    dst->count = __atomic_load_n(&src->count, __ATOMIC_RELAXED);
    dst->sum_ns = __atomic_load_n(&src->sum_ns, __ATOMIC_RELAXED);
}

void group_get_stats(group_t *g, group_stats_t *st)
{
    pthread_mutex_lock(&g->mu);
    st->term = g->st.term;
    st->commit_index = g->st.commit_index;
    st->applied_index = g->st.applied_index;
    st->snapshot_index = g->st.snapshot_index;
    st->snapshots = g->st.snapshots;
    st->wal_bytes = g->st.wal_bytes;
    st->wal_appends = g->st.wal_appends;
    st->wal_fsyncs = g->st.wal_fsyncs;
    st->failed = g->failed;
    pthread_mutex_unlock(&g->mu);
    hist_copy(&st->fsync_latency, &g->st.fsync_latency);
    hist_copy(&st->commit_latency, &g->st.commit_latency);
}

void group_close(group_t *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&g->mu);
    g->closing = 1;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->thread, NULL);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    wal_close(g->wal);
    free(g->replay_err);
    free(g->dir);
    free(g->wal_dir);
    free(g->snap_dir);
    free(g);
}
