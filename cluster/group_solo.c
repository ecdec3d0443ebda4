/* cluster/group_solo.c — the single-node group of cluster/group.h: a WAL (<dir>/wal) with
 * group commit by one commit thread, and lz4 snapshots (<dir>/snap) taken every
 * snapshot_bytes of WAL, after which whole WAL segments are deleted. Proposers queue a
 * proposal that lives on their own stack and sleep until the commit thread has made their
 * batch durable (one fdatasync per batch) and applied it.
 *
 * Space: when the disk is tight (less free than the group's files take, plus an eighth,
 * plus 4 MiB) the group also snapshots whenever entries were logged since the last
 * snapshot, at most every tight_gap (250 ms, doubled up to 4 s while snapshots free
 * nothing, and at least 4 times the last snapshot's duration): deletes log small entries
 * but free much, and only a snapshot gives their space back. WAL segments are at most a
 * sixteenth of the disk, so compaction can delete most of the log.
 *
 * sm_ops_t.stamp (the leader's stamp before appending) is never called here: the single node
 * is its own leader and the only proposer, so a command already carries what the leader
 * would stamp (fs/: its own clock in the header). */
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
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "cluster/err.h"
#include "cluster/snapshot.h"
#include "cluster/wal.h"

#define TERM 1 /* a single node never changes term */
#define DEFAULT_SNAPSHOT_BYTES (64ull << 20)
#define DEFAULT_MAX_CMD (2u << 20)
#define SNAP_RETRY_NS 1000000000ull /* wait this long before retrying a failed snapshot */
#define TIGHT_GAP_MIN_NS 250000000ull  /* snapshots on a tight disk: at most this often... */
#define TIGHT_GAP_MAX_NS 4000000000ull /* ...backing off up to this while they free nothing */
#define TIGHT_MARGIN (4ull << 20)
#define MIN_SEGMENT (64u << 10)

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
    const group_impl_t *impl; /* first, NULL: this file's group (cluster/group.h) */
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
    uint64_t snap_file_bytes; /* size of the newest snapshot file */
    uint64_t tight_gap;      /* ns between snapshots on a tight disk */
    uint64_t tight_next;     /* monotonic ns before which no tight snapshot is taken */
    uint64_t wake_at;        /* monotonic ns the idle commit thread wakes to snapshot; 0 none */
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

/* Whether the disk under the group is tight: less free than the group's own files (WAL and
 * snapshot) plus an eighth plus TIGHT_MARGIN. Then a snapshot is what gives space back. */
static int disk_tight(const group_t *g, uint64_t wal_bytes)
{
    struct statvfs sv;
    if (statvfs(g->dir, &sv) != 0)
        return 0;
    uint64_t mine = wal_bytes + g->snap_file_bytes;
    return (uint64_t)sv.f_bavail * sv.f_frsize < mine + mine / 8 + TIGHT_MARGIN;
}

/* Takes a snapshot of the state after next_index - 1 and compacts the WAL, if enough WAL
 * was written since the last one, or if the disk is tight and anything was logged since
 * (paced by tight_gap, see the top). A failure is logged and retried after SNAP_RETRY_NS;
 * the WAL still holds everything, so nothing is lost. Sets wake_at when a snapshot is due
 * later on its own (tight disk), so that an idle group still takes it. */
static void maybe_snapshot(group_t *g)
{
    uint64_t index = g->next_index - 1, t = now_ns();
    snap_writer_t *w = NULL;
    int rc, tight = 0;
    wal_stats_t ws;
    wal_get_stats(g->wal, &ws);
    g->wake_at = 0;
    if (ws.failed || index == g->snap_index)
        return;
    if (g->bytes_since_snap < g->snapshot_bytes) {
        if (!disk_tight(g, ws.bytes))
            return;
        tight = 1;
        uint64_t at = g->tight_next > g->snap_retry_at ? g->tight_next : g->snap_retry_at;
        if (t < at) {
            g->wake_at = at;
            return;
        }
    } else if (t < g->snap_retry_at) {
        return;
    }
    uint64_t before = ws.bytes + g->snap_file_bytes;
    rc = snapshot_begin(g->snap_dir, index, TERM, &w);
    if (rc == 0) {
        rc = g->ops->snapshot(g->ctx, w);
        if (rc)
            snapshot_abort(w);
        else
            rc = snapshot_commit(w);
    }
    if (rc) {
        /* Quiet on a tight disk: ENOSPC is expected there until deletes make room. */
        if (!(tight && rc == -QERR_NOSPACE))
            glog(g, "snapshot at index %" PRIu64 " failed (%s); will retry, the WAL keeps "
                 "everything", index, qerr_str(rc));
        uint64_t took = now_ns() - t;
        g->snap_retry_at = now_ns() + (4 * took > SNAP_RETRY_NS ? 4 * took : SNAP_RETRY_NS);
        if (tight)
            g->wake_at = g->snap_retry_at;
        return;
    }
    g->snap_index = index;
    g->bytes_since_snap = 0;
    snapshot_info_t info;
    char *why = NULL;
    if (snapshot_open_read(g->snap_dir, &info, &why) == 0) {
        g->snap_file_bytes = info.file_size;
        snapshot_info_free(&info);
    }
    free(why);
    rc = wal_truncate_prefix(g->wal, index);
    if (rc)
        glog(g, "WAL compaction up to %" PRIu64 " failed (%s); old segments stay", index,
             qerr_str(rc));
    uint64_t done = now_ns();
    wal_get_stats(g->wal, &ws);
    uint64_t after = ws.bytes + g->snap_file_bytes;
    if (after + before / 16 <= before)
        g->tight_gap = TIGHT_GAP_MIN_NS;     /* it gave space back: keep up with deletes */
    else if (tight)
        g->tight_gap = g->tight_gap * 2 > TIGHT_GAP_MAX_NS ? TIGHT_GAP_MAX_NS
                                                           : g->tight_gap * 2;
    uint64_t gap = g->tight_gap > 4 * (done - t) ? g->tight_gap : 4 * (done - t);
    g->tight_next = done + gap;
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
        int woke = 0;
        while (!g->head && !g->closing && !woke) {
            if (!g->wake_at) {
                pthread_cond_wait(&g->cv, &g->mu);
                continue;
            }
            /* A snapshot is due on a tight disk; the wait is on CLOCK_REALTIME. */
            uint64_t t = now_ns();
            if (t >= g->wake_at) {
                woke = 1;
                break;
            }
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t ns = (uint64_t)ts.tv_nsec + (g->wake_at - t);
            ts.tv_sec += (time_t)(ns / 1000000000ull);
            ts.tv_nsec = (long)(ns % 1000000000ull);
            pthread_cond_timedwait(&g->cv, &g->mu, &ts);
        }
        if (woke) {
            pthread_mutex_unlock(&g->mu);
            maybe_snapshot(g);
            pthread_mutex_lock(&g->mu);
            publish_wal_stats(g);
            continue;
        }
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
        g->snap_file_bytes = info.file_size;
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

    /* Segments a quarter of a snapshot interval, so compaction frees space steadily, and
     * at most a sixteenth of the disk: the active segment is never deleted, so on a small
     * disk a compaction after deletes must be able to leave little behind. */
    struct statvfs sv;
    wo.segment_bytes = g->snapshot_bytes / 4;
    if (statvfs(cfg->dir, &sv) == 0 && (uint64_t)sv.f_blocks * sv.f_frsize / 16 > 0 &&
        wo.segment_bytes > (uint64_t)sv.f_blocks * sv.f_frsize / 16)
        wo.segment_bytes = (uint64_t)sv.f_blocks * sv.f_frsize / 16;
    if (wo.segment_bytes < MIN_SEGMENT)
        wo.segment_bytes = MIN_SEGMENT;
    if (wo.segment_bytes > WAL_DEFAULT_SEGMENT)
        wo.segment_bytes = WAL_DEFAULT_SEGMENT;
    g->tight_gap = TIGHT_GAP_MIN_NS;
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
    if (group_impl_of(g))
        return group_impl_of(g)->propose(g, cmd, len, res);
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

/* The single-node group applies every command before acknowledging it: nothing committed is
 * ever unapplied, so a barrier has nothing to wait for. */
int group_read_barrier(group_t *g, uint32_t timeout_ms)
{
    if (group_impl_of(g))
        return group_impl_of(g)->read_barrier(g, timeout_ms);
    return 0;
}

int group_is_leader(group_t *g)
{
    if (group_impl_of(g))
        return group_impl_of(g)->is_leader(g);
    return 1;
}

void group_get_stats(group_t *g, group_stats_t *st)
{
    if (group_impl_of(g)) {
        group_impl_of(g)->get_stats(g, st);
        return;
    }
    memset(st, 0, sizeof(*st));   /* what the single-node group has none of stays 0 */
    pthread_mutex_lock(&g->mu);
    st->term = g->st.term;
    st->node_id = 0;
    st->leader = 0;
    st->is_leader = 1;
    st->installs = 0;
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
    if (group_impl_of(g)) {
        group_impl_of(g)->close(g);
        return;
    }
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
