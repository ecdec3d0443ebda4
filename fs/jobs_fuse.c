/* fs/jobs_fuse.c — the FUSE front of jobs/ (FILE-API §8, docs/JOBS.md), with the node's
 * scheduler and runners.
 *
 * Files: jobs/<job>/ holds cmd, schedule, timeout, retries, concurrency (a save each,
 * published at close or fsync, checked at write() when it ends with a newline), run (each
 * write() starts a run), status, .events, and runs/<n>/ with stdout, stderr, exit, node,
 * started, finished, state, tick, attempt. Inodes are module inodes of the job's shard:
 * local = job id (20 bits) << 28 | run number (23 bits, mod 2^23) << 5 | kind.
 *
 * Scheduler: the sweep, on the leader of each shard, proposes the TICK of every job whose
 * next time has come, found in the state's index by next fire time (apply refuses a tick
 * decided before, so two schedulers, or a new leader, never decide one twice); while nothing
 * is due and no run is active a sweep reads nothing and proposes nothing. Runners: on a node
 * with jobs enabled the sweep proposes START for each pending run whose retry time has come
 * (the jobs with an active run are listed by the index); the node whose START commits runs
 * it on a thread of its own: /bin/sh -c cmd in a new session (its own process group), a
 * clean environment, the run user's home as working directory, stdout and stderr through
 * pipes (1 MiB of each kept, the rest counted). The run ends when the shell exits (what it
 * left in its process group is killed), at its timeout (the group gets SIGTERM, SIGKILL 2 s
 * later) or when replace cancels it; then the runner queues its end with its output, and
 * the front's end thread records the ends queued for each shard in one FINISHES, at once
 * when no run started with it (same STARTS) still runs here, else at most 100 ms later
 * (flush_fins, jobs_end_due; a run with more than INLINE_MAX bytes of
 * output records it first with OUTPUT commands). The end thread also ends as lost a run of
 * this node's session that nothing here can end any more (end_lost_runs).
 *
 * Threads: the sweep and the end flushing run on two threads of the front's own (started
 * by jb_start, joined by jb_quiesce or jb_stop), never on the node's shared sweeper: a
 * shard without quorum makes a proposal wait up to the operation timeout, which would hold
 * up every namespace's sweep, and an end waiting behind a sweep's proposals (or the
 * reverse) would be late. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "fs/dirlist.h"
#include "fs/evstream.h"
#include "fs/front.h"
#include "fs/jobs.h"
#include "fs/names.h"
#include "fs/node.h"
#include "fs/session.h"
#include "fs/testhook.h"

enum jkind {
    K_ROOT = 0, K_JOB,
    K_CMD, K_SCHEDULE, K_TIMEOUT, K_RETRIES, K_CONC,      /* K_CMD + JSET_* - 1 */
    K_RUN, K_STATUS, K_EVENTS, K_RUNS,
    K_RDIR, K_STDOUT, K_STDERR, K_EXIT, K_NODE, K_STARTED, K_FINISHED, K_STATE, K_TICK,
    K_ATTEMPT,
    K_EVREV,                            /* .events@<rev>: the run bits hold rev mod 2^23 */
};
#define KIND_BITS 5
#define RUN_BITS 23
#define RUN_MASK ((1ull << RUN_BITS) - 1)
#define SAVE_MAX (JOBS_CMD_MAX + 1)
#define BATCH_BYTES 65536
#define KILL_GRACE_MS 2000
#define FINISH_TRIES 40                 /* proposals of a run's OUTPUT, 500 ms apart */
#define FINISH_WAIT_MS 20000            /* a run's end is proposed again (no quorum) this long */
#define INLINE_MAX 32768                /* kept output a run's end carries in its FINISHES
                                           item (more: OUTPUT entries of its own first) */
#define LOCAL_MAX 32                    /* runs a node runs at once (more wait pending) */
#define SWEEP_MS 100                    /* the front's sweep period */
#define LOST_CHECK_MS 1000              /* the check for runs nothing here can end */
#define LOST_RETRY_MS 50                /* ... again this soon when a START was in flight */
#define LIVE_SLOTS (4 * LOCAL_MAX)      /* (shard, start batch) pairs of live runners kept */

static const char *const job_files[] = {
    [K_CMD] = "cmd", [K_SCHEDULE] = "schedule", [K_TIMEOUT] = "timeout",
    [K_RETRIES] = "retries", [K_CONC] = "concurrency", [K_RUN] = "run",
    [K_STATUS] = "status", [K_EVENTS] = ".events", [K_RUNS] = "runs",
};
static const char *const run_files[] = {
    [K_STDOUT] = "stdout", [K_STDERR] = "stderr", [K_EXIT] = "exit", [K_NODE] = "node",
    [K_STARTED] = "started", [K_FINISHED] = "finished", [K_STATE] = "state",
    [K_TICK] = "tick", [K_ATTEMPT] = "attempt",
};

typedef struct runner runner_t;
typedef struct fin fin_t;

typedef struct jfront {
    front_ctx_t ctx;                    /* first: node, mu (guards runners) */
    evs_table_t *events;                /* the open `.events` */
    runner_t *runners;
    int starting;                       /* under ctx.mu: STARTs proposed whose runner is
                                           not listed yet (end_lost_runs waits for them) */
    pthread_mutex_t fmu;                /* fins, quit, the condition variables */
    pthread_cond_t fcv;                 /* an end was queued; quit (CLOCK_MONOTONIC) */
    pthread_cond_t scv;                 /* quit (CLOCK_MONOTONIC) */
    fin_t *fins, **fins_tail;           /* ends of runs to record, oldest first */
    int unrecorded;                     /* ends queued and not yet recorded or dropped
                                           (atomic): their runs still count as running */
    int quit;                           /* the front's threads end */
    int threads;                        /* bit 0: sweeper started, bit 1: ender started */
    pthread_t sweeper, ender;
    uint64_t *last_flush;               /* per shard: mono ms of its last FINISHES (ender) */
    uint8_t *due;                       /* per shard: its ends are to be flushed (ender) */
    struct live {                       /* under fmu: runners here whose end is not queued
                                           yet, by shard and start batch (n 0: free slot) */
        uint32_t shard, n;
        uint64_t batch;
    } live[LIVE_SLOTS];
    uint64_t batch_seq;                 /* start batches (atomic) */
    int enabled;                        /* runs execute here */
    volatile int stopping;              /* set under ctx.mu; runners poll it */
    uid_t uid;                          /* the identity of runs */
    gid_t gid;
    int switch_user;                    /* setgid/setgroups/setuid in the child */
    gid_t *groups;
    int ngroups;
    char *user, *home;
} jfront_t;

/* A run this node is running. */
struct runner {
    jfront_t *jf;
    uint32_t shard;
    uint64_t job_id, n, sid;
    char *job, *cmd;
    uint32_t timeout_s;
    uint64_t tick_ms;                   /* its scheduled time (0: a manual run) */
    uint32_t attempt;
    uint64_t batch;                     /* the start (STARTS entry, or START) it came from;
                                           0: not in jf->live */
    volatile int cancel;                /* replace asked for it (set under jf->ctx.mu) */
    volatile int orphan;                /* the run is not ours any more (our session ended:
                                           the node is closing): kill, report nothing */
    int done;                           /* the thread ended (joined by the sweep or stop) */
    pthread_t th;
    runner_t *next;
};

/* The end of a run this node ran, waiting for the end thread to record it in one FINISHES
 * with the other ends of its shard (docs/JOBS.md "Ending", "Cost and performance"). */
struct fin {
    uint32_t shard;
    uint64_t sid;                       /* the session that started the run */
    jobs_fin_t f;                       /* f.job and f.out[] owned */
    uint64_t since;                     /* mono ms when it was queued */
    uint64_t batch;                     /* its runner's start batch */
    int *unrecorded;                    /* the front's count it is in, once queued */
    fin_t *next;
};

typedef struct jfh {
    int kind;
    uint32_t shard;
    uint64_t job_id;
    char *job;
    pthread_mutex_t mu;
    char *text;                         /* what reads return */
    size_t tlen;
    blob_t *blob;                       /* stdout/stderr: the kept bytes (text: the mark) */
    char *wbuf;                         /* a setting's save in progress */
    size_t wlen;
    int dirty;
    evs_t *w;                           /* .events */
    dirlist_t dir;
} jfh_t;

static jfront_t *JF(fuse_req_t req) { return ns_front_ctx(req, NS_JOBS); }
static state_t *jstate(const jfront_t *jf, uint32_t k) { return node_state(jf->ctx.node, k); }
static uint32_t jshard(const jfront_t *jf, const char *job)
{
    return node_shard_of(jf->ctx.node, NS_JOBS, job);
}
static fuse_ino_t mkino(uint32_t k, uint64_t job, uint64_t run, int kind)
{
    return NS_SHARD_INO(NS_JOBS, k, (job << (KIND_BITS + RUN_BITS)) |
                                        ((run & RUN_MASK) << KIND_BITS) | (uint64_t)kind);
}
static int ino_kind(fuse_ino_t ino)
{
    if (ino == NS_ROOT_ID(NS_JOBS))
        return K_ROOT;
    if (!(ino & NS_INO_BIT) || NS_INO_NS(ino) != NS_JOBS)
        return -1;
    return (int)(NS_INO_LOCAL(ino) & ((1u << KIND_BITS) - 1));
}
static uint64_t ino_job(fuse_ino_t ino) { return NS_INO_LOCAL(ino) >> (KIND_BITS + RUN_BITS); }
static uint64_t ino_run(fuse_ino_t ino) { return (NS_INO_LOCAL(ino) >> KIND_BITS) & RUN_MASK; }
static uint32_t ino_shard(fuse_ino_t ino)
{
    return ino == NS_ROOT_ID(NS_JOBS) ? 0 : NS_INO_SHARD(ino);
}
static int run_kind(int kind) { return kind >= K_RDIR && kind <= K_ATTEMPT; }

/* ---------------------------------------------------------------- resolving */

typedef struct jref {
    job_view_t j;
    run_view_t r;                       /* run kinds */
} jref_t;

struct find_run {
    uint64_t low;
    run_view_t *out;
    int found;
};

static int find_run_cb(void *arg, const run_view_t *v)
{
    struct find_run *f = arg;
    if ((v->n & RUN_MASK) == f->low) {
        *f->out = *v;
        f->found = 1;
    }
    return 0;                           /* the newest with these low bits wins */
}

/* The job (and run) of module inode ino. State lock held. 0 or -ENOENT. */
static int resolve_locked(const state_t *st, fuse_ino_t ino, jref_t *r)
{
    int kind = ino_kind(ino);
    if (kind <= K_ROOT || kind > K_EVREV)
        return -ENOENT;
    if (jobs_sm_get_id(st, ino_job(ino), &r->j) < 0)
        return -ENOENT;
    if (!run_kind(kind))
        return 0;
    struct find_run f = { ino_run(ino), &r->r, 0 };
    jobs_sm_each_run(st, r->j.id, find_run_cb, &f);
    return f.found ? 0 : -ENOENT;
}

/* ---------------------------------------------------------------- rendering */

static char *fmt_ms(uint64_t ms, char buf[32])
{
    if (!ms)
        snprintf(buf, 32, "-");
    else
        cron_fmt_time(ms, buf);
    return buf;
}

static const char *exit_text(const run_view_t *r, char buf[32])
{
    if (r->state == JR_PENDING || r->state == JR_RUNNING || r->state == JR_LOST ||
        (r->state == JR_KILLED && !r->started_ms))
        buf[0] = 0;
    else if (r->exit_code < 0)
        snprintf(buf, 32, "signal %d\n", -r->exit_code);
    else
        snprintf(buf, 32, "%d\n", r->exit_code);
    return buf;
}

struct last_run {
    run_view_t r;
    int have;
    uint64_t running, pending;
};

static int last_cb(void *arg, const run_view_t *v)
{
    struct last_run *l = arg;
    l->running += v->state == JR_RUNNING;
    l->pending += v->state == JR_PENDING;
    if (v->state != JR_PENDING) {
        l->r = *v;
        l->have = 1;
    }
    return 0;
}

/* The text of a file of kind for r (state lock held); malloc'ed, NULL on OOM. */
static char *render(const state_t *st, int kind, const jref_t *r, size_t *len)
{
    char *out = NULL;
    char a[32], b[32], c[32];
    const job_view_t *j = &r->j;
    const run_view_t *x = &r->r;
    int n = -1;
    switch (kind) {
    case K_CMD:
        n = asprintf(&out, "%s%s", j->cmd, j->cmd[0] ? "\n" : "");
        break;
    case K_SCHEDULE:
        n = asprintf(&out, "%s%s", j->schedule, j->schedule[0] ? "\n" : "");
        break;
    case K_TIMEOUT: n = asprintf(&out, "%" PRIu32 "\n", j->timeout_s); break;
    case K_RETRIES: n = asprintf(&out, "%" PRIu32 "\n", j->retries); break;
    case K_CONC: n = asprintf(&out, "%s\n", jobs_conc_name(j->conc)); break;
    case K_RUN: n = asprintf(&out, "%s", ""); break;
    case K_STATUS: {
        struct last_run l = { .have = 0 };
        jobs_sm_each_run(st, j->id, last_cb, &l);
        char last[160] = "none";
        if (l.have)
            snprintf(last, sizeof(last), "%" PRIu64 " %s%s%s started %s", l.r.n,
                     jobs_state_name(l.r.state), l.r.state == JR_OK || l.r.state == JR_FAILED
                     ? " exit " : "", l.r.state == JR_OK || l.r.state == JR_FAILED ?
                     (snprintf(c, sizeof(c), "%d", l.r.exit_code), c) : "",
                     fmt_ms(l.r.started_ms, a));
        uint64_t next = jobs_next_tick(j);
        n = asprintf(&out,
                     "state: %s\nschedule: %s\nnext: %s\nlast: %s\nfailures: %" PRIu64
                     "\nfailed: %" PRIu64 "\nskipped: %" PRIu64 "\nruns: %" PRIu64 "\n",
                     l.running ? "running" : l.pending ? "pending" : "idle",
                     j->schedule[0] ? j->schedule : "none",
                     next ? fmt_ms(next, b) : j->cron && !j->cmd[0] ? "none (no cmd)" : "none",
                     last, j->failures, j->failed_total, j->skipped, j->runs_total);
        break;
    }
    case K_EXIT: n = asprintf(&out, "%s", exit_text(x, a)); break;
    case K_NODE: n = asprintf(&out, "%s%s", x->node, x->node[0] ? "\n" : ""); break;
    case K_STARTED:
        n = x->started_ms ? asprintf(&out, "%s\n", fmt_ms(x->started_ms, a)) : asprintf(&out, "%s", "");
        break;
    case K_FINISHED:
        n = x->finished_ms ? asprintf(&out, "%s\n", fmt_ms(x->finished_ms, a))
                           : asprintf(&out, "%s", "");
        break;
    case K_STATE:
        n = asprintf(&out, "%s%s\n", jobs_state_name(x->state),
                     x->cancel && x->state == JR_RUNNING ? " (cancelled)" : "");
        break;
    case K_TICK:
        n = x->tick_ms ? asprintf(&out, "%s%s\n", fmt_ms(x->tick_ms, a), x->late ? " late" : "")
                       : asprintf(&out, "manual\n");
        break;
    case K_ATTEMPT: n = asprintf(&out, "%" PRIu32 "\n", x->attempt); break;
    case K_STDOUT: case K_STDERR: {
        /* the mark that follows output that was cut */
        uint64_t total = x->total[kind - K_STDOUT];
        uint32_t kept = x->out[kind - K_STDOUT]->len;
        if (total > kept)
            n = asprintf(&out, "\n[quorumfs: output cut: %" PRIu64 " bytes, the first %" PRIu32
                         " kept]\n", total, kept);
        else
            n = asprintf(&out, "%s", "");
        break;
    }
    }
    if (n < 0)
        return NULL;
    *len = (size_t)n;
    return out;
}

/* ---------------------------------------------------------------- attributes, lookup */

static int attr_of(jfront_t *jf, fuse_ino_t ino, struct stat *s)
{
    int kind = ino_kind(ino);
    if (kind == K_ROOT) {
        front_stat(s, ino, S_IFDIR | 0755, 0, node_start_ms(jf->ctx.node));
        return 0;
    }
    if (kind < 0)
        return -ENOENT;
    state_t *st = jstate(jf, ino_shard(ino));
    jref_t r;
    size_t len = 0;
    char *text = NULL;
    pthread_rwlock_rdlock(&st->lock);
    int rc = resolve_locked(st, ino, &r);
    if (rc == 0 && kind >= K_CMD && kind != K_EVENTS && kind != K_EVREV && kind != K_RUNS &&
        kind != K_RDIR &&
        !(text = render(st, kind, &r, &len)))
        rc = -ENOMEM;
    if (rc == 0 && (kind == K_STDOUT || kind == K_STDERR))
        len += r.r.out[kind - K_STDOUT]->len;
    pthread_rwlock_unlock(&st->lock);
    free(text);
    if (rc < 0)
        return rc;
    uint64_t mtime = run_kind(kind) ? (r.r.finished_ms ? r.r.finished_ms
                                       : r.r.started_ms ? r.r.started_ms : r.r.decided_ms)
                                    : r.j.mtime_ms;
    switch (kind) {
    case K_JOB: case K_RUNS: case K_RDIR:
        front_stat(s, ino, S_IFDIR | 0755, 0, mtime);
        break;
    case K_CMD: case K_SCHEDULE: case K_TIMEOUT: case K_RETRIES: case K_CONC: case K_RUN:
        front_stat(s, ino, S_IFREG | 0644, (off_t)len, mtime);
        break;
    default:
        front_stat(s, ino, S_IFREG | 0444, (off_t)len, mtime);
        break;
    }
    return 0;
}

static void jb_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct stat s;
    front_reply_attr(req, attr_of(JF(req), ino, &s), &s);
}

static int do_lookup(jfront_t *jf, fuse_ino_t parent, const char *name,
                     struct fuse_entry_param *e)
{
    memset(e, 0, sizeof(*e));
    e->generation = 1;
    size_t len = strlen(name);
    if (len > NAME_MAX_BYTES)
        return -ENAMETOOLONG;
    int pk = ino_kind(parent);
    if (pk == K_ROOT) {
        uint32_t k = jshard(jf, name);
        state_t *st = jstate(jf, k);
        job_view_t v;
        pthread_rwlock_rdlock(&st->lock);
        int rc = jobs_sm_get(st, name, len, &v);
        pthread_rwlock_unlock(&st->lock);
        if (rc < 0)
            return rc;
        e->ino = mkino(k, v.id, 0, K_JOB);
    } else if (pk == K_JOB) {
        int kind = -1;
        uint64_t rev = 0;
        for (int i = K_CMD; i <= K_RUNS; i++)
            if (strcmp(name, job_files[i]) == 0)
                kind = i;
        if (kind < 0 && len > 8 && memcmp(name, ".events@", 8) == 0 &&
            names_parse_uint(name + 8, len - 8, INT64_MAX, &rev) == 0 && name[len - 1] != '\n')
            kind = K_EVREV;
        if (kind < 0)
            return -ENOENT;
        e->ino = mkino(ino_shard(parent), ino_job(parent), rev, kind);
    } else if (pk == K_RUNS) {
        uint64_t n;
        if (names_parse_uint(name, len, RUN_MASK, &n) < 0 || n == 0)
            return -ENOENT;
        e->ino = mkino(ino_shard(parent), ino_job(parent), n, K_RDIR);
    } else if (pk == K_RDIR) {
        int kind = -1;
        for (int i = K_STDOUT; i <= K_ATTEMPT; i++)
            if (strcmp(name, run_files[i]) == 0)
                kind = i;
        if (kind < 0)
            return -ENOENT;
        e->ino = mkino(ino_shard(parent), ino_job(parent), ino_run(parent), kind);
    } else {
        return -ENOTDIR;
    }
    return attr_of(jf, e->ino, &e->attr);
}

static void jb_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fuse_entry_param e;
    front_reply_entry(req, do_lookup(JF(req), parent, name, &e), &e);
}

/* ---------------------------------------------------------------- directories */

static int mkdir_do(jfront_t *jf, fuse_ino_t parent, const char *name, struct fuse_entry_param *e)
{
    int pk = ino_kind(parent);
    if (pk != K_ROOT)
        return pk == K_JOB || pk == K_RUNS || pk == K_RDIR ? -EPERM : -ENOTDIR;
    size_t len = strlen(name);
    int rc = names_check(name, len, 0);
    if (rc < 0)
        return rc;
    if (jobs_reserved(name, len))
        return -EINVAL;
    cmdbuf_t b;
    jobs_cmd_mkdir(&b, node_now_ms(), name);
    rc = node_propose(jf->ctx.node, jshard(jf, name), &b, NULL);
    return rc < 0 ? rc : do_lookup(jf, parent, name, e);
}

static void jb_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    struct fuse_entry_param e;
    front_reply_entry(req, mkdir_do(JF(req), parent, name, &e), &e);
}

/* rmdir jobs/<job> removes the job with its runs (EBUSY while one runs); inside a job
 * nothing is removed (EPERM). */
static void jb_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    jfront_t *jf = JF(req);
    int rc, pk = ino_kind(parent);
    if (pk == K_ROOT) {
        cmdbuf_t b;
        jobs_cmd_rmdir(&b, node_now_ms(), name);
        rc = node_propose(jf->ctx.node, jshard(jf, name), &b, NULL);
    } else {
        rc = pk == K_JOB || pk == K_RUNS || pk == K_RDIR ? -EPERM : -ENOTDIR;
    }
    fuse_reply_err(req, -rc);
}

static void jb_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    int pk = ino_kind(parent);
    fuse_reply_err(req, pk == K_ROOT ? EISDIR : pk < 0 ? ENOTDIR : EPERM);
}

static void jb_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
    fuse_reply_err(req, EPERM);         /* a job keeps its name (not supported) */
}

struct listing {
    dirlist_t *d;
    uint32_t shard;
    uint64_t job;
};

static int list_job(void *arg, const job_view_t *v)
{
    struct listing *l = arg;
    return dirlist_add(l->d, v->name, mkino(l->shard, v->id, 0, K_JOB), S_IFDIR);
}

static int list_run(void *arg, const run_view_t *v)
{
    struct listing *l = arg;
    char name[24];
    snprintf(name, sizeof(name), "%" PRIu64, v->n);
    return dirlist_add(l->d, name, mkino(l->shard, l->job, v->n, K_RDIR), S_IFDIR);
}

static void jb_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    jfront_t *jf = JF(req);
    int kind = ino_kind(ino);
    if (kind != K_ROOT && kind != K_JOB && kind != K_RUNS && kind != K_RDIR) {
        fuse_reply_err(req, kind < 0 ? ENOENT : ENOTDIR);
        return;
    }
    jfh_t *fh = calloc(1, sizeof(*fh));
    int rc = fh ? 0 : -ENOMEM;
    if (rc == 0)
        rc = dirlist_add(&fh->dir, ".", ino, S_IFDIR);
    if (rc == 0)
        rc = dirlist_add(&fh->dir, "..", kind == K_ROOT ? FUSE_ROOT_ID
                         : kind == K_JOB ? NS_ROOT_ID(NS_JOBS)
                         : kind == K_RUNS ? mkino(ino_shard(ino), ino_job(ino), 0, K_JOB)
                         : mkino(ino_shard(ino), ino_job(ino), 0, K_RUNS), S_IFDIR);
    if (rc == 0 && kind == K_ROOT) {
        for (uint32_t k = 0; rc == 0 && k < node_nshards(jf->ctx.node); k++) {
            state_t *st = jstate(jf, k);
            struct listing l = { &fh->dir, k, 0 };
            pthread_rwlock_rdlock(&st->lock);
            rc = jobs_sm_each(st, list_job, &l);
            pthread_rwlock_unlock(&st->lock);
        }
        if (rc == 0)
            dirlist_sort(&fh->dir, 2);
    } else if (rc == 0) {
        state_t *st = jstate(jf, ino_shard(ino));
        jref_t r;
        pthread_rwlock_rdlock(&st->lock);
        rc = resolve_locked(st, ino, &r);
        if (rc == 0 && kind == K_JOB) {
            for (int i = K_CMD; rc == 0 && i <= K_RUNS; i++)
                if (i != K_EVENTS)
                    rc = dirlist_add(&fh->dir, job_files[i], mkino(ino_shard(ino), r.j.id, 0, i),
                                     i == K_RUNS ? S_IFDIR : S_IFREG);
        } else if (rc == 0 && kind == K_RUNS) {
            struct listing l = { &fh->dir, ino_shard(ino), r.j.id };
            rc = jobs_sm_each_run(st, r.j.id, list_run, &l);
        } else if (rc == 0) {
            for (int i = K_STDOUT; rc == 0 && i <= K_ATTEMPT; i++)
                rc = dirlist_add(&fh->dir, run_files[i],
                                 mkino(ino_shard(ino), r.j.id, r.r.n, i), S_IFREG);
        }
        pthread_rwlock_unlock(&st->lock);
    }
    if (rc < 0) {
        if (fh)
            dirlist_clear(&fh->dir);
        free(fh);
        fuse_reply_err(req, -rc);
        return;
    }
    fi->fh = (uintptr_t)fh;
    if (fuse_reply_open(req, fi) != 0) {
        dirlist_clear(&fh->dir);
        free(fh);
    }
}

static void jb_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    dirlist_reply(req, &((jfh_t *)(uintptr_t)fi->fh)->dir, size, off);
}

static void jb_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    jfh_t *fh = (jfh_t *)(uintptr_t)fi->fh;
    dirlist_clear(&fh->dir);
    free(fh);
    fuse_reply_err(req, 0);
}

/* ---------------------------------------------------------------- .events */

/* An open `.events` is an event stream (fs/evstream.h) whose source is its job on its shard
 * and the last revision looked at. */
typedef struct jwatch {
    state_t *st;
    uint64_t job;
    uint64_t cursor;
} jwatch_t;

static int jw_read(void *src, char *buf, size_t size)
{
    jwatch_t *w = src;
    return jobs_read_events(w->st, w->job, &w->cursor, buf, size);
}

/* Something to read: an event after the cursor, or the end (the job is gone), or ESTALE. */
static int jw_pending(void *src)
{
    jwatch_t *w = src;
    job_view_t v;
    return jobs_sm_get_id(w->st, w->job, &v) < 0 || v.rev > w->cursor ||
           jobs_events_stale(w->st, w->job, w->cursor);
}

static const evs_ops_t jw_ops = { .read = jw_read, .pending = jw_pending, .free = free };

/* A watch of job `job` on shard k after revision `after` (UINT64_MAX: from now; else, of
 * .events@<rev>, known by its low RUN_BITS only: the newest revision not above the job's
 * that has them). -ESTALE when events after it were dropped. */
static int watch_open(jfront_t *jf, uint32_t k, uint64_t job, uint64_t after, evs_t **out)
{
    jwatch_t *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    state_t *st = w->st = jstate(jf, k);
    w->job = job;
    job_view_t v;
    pthread_rwlock_rdlock(&st->lock);
    int rc = jobs_sm_get_id(st, job, &v);
    if (rc == 0 && after != UINT64_MAX) {
        after = v.rev - ((v.rev - after) & RUN_MASK);
        if (after > v.rev)
            after = v.rev;              /* a revision to come: from now */
        if (jobs_events_stale(st, job, after))
            rc = -ESTALE;
    }
    w->cursor = after == UINT64_MAX ? v.rev : after;
    if (rc == 0)
        rc = evs_open(jf->events, k, k + 1, &jw_ops, w, out);   /* owns w now */
    else
        free(w);
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

/* ---------------------------------------------------------------- files */

static void fh_free(jfh_t *fh)
{
    if (!fh)
        return;
    evs_close(fh->w);
    blob_unref(fh->blob);
    free(fh->job);
    free(fh->text);
    free(fh->wbuf);
    dirlist_clear(&fh->dir);
    pthread_mutex_destroy(&fh->mu);
    free(fh);
}

static int setting_kind(int kind) { return kind >= K_CMD && kind <= K_CONC; }

static int do_open(jfront_t *jf, fuse_ino_t ino, int flags, jfh_t **out)
{
    int kind = ino_kind(ino), acc = flags & O_ACCMODE;
    if (kind == K_ROOT || kind == K_JOB || kind == K_RUNS || kind == K_RDIR)
        return -EISDIR;
    if (kind < 0)
        return -ENOENT;
    if (acc != O_RDONLY && !setting_kind(kind) && kind != K_RUN)
        return -EPERM;                  /* status, .events and runs/ are read-only (FILE-API §1) */
    jfh_t *fh = calloc(1, sizeof(*fh));
    if (!fh)
        return -ENOMEM;
    pthread_mutex_init(&fh->mu, NULL);
    fh->kind = kind;
    fh->shard = ino_shard(ino);
    state_t *st = jstate(jf, fh->shard);
    jref_t r;
    pthread_rwlock_rdlock(&st->lock);
    int rc = resolve_locked(st, ino, &r);
    if (rc == 0) {
        fh->job_id = r.j.id;
        if (!(fh->job = strdup(r.j.name)))
            rc = -ENOMEM;
    }
    if (rc == 0 && kind != K_EVENTS && kind != K_EVREV &&
        !(fh->text = render(st, kind, &r, &fh->tlen)))
        rc = -ENOMEM;
    if (rc == 0 && (kind == K_STDOUT || kind == K_STDERR))
        fh->blob = blob_ref(r.r.out[kind - K_STDOUT]);
    pthread_rwlock_unlock(&st->lock);
    if (rc == 0 && setting_kind(kind) && acc != O_RDONLY) {
        /* the save starts from the value (or empty with O_TRUNC) */
        fh->wbuf = malloc(SAVE_MAX);
        if (!fh->wbuf) {
            rc = -ENOMEM;
        } else if (!(flags & O_TRUNC)) {
            fh->wlen = fh->tlen < SAVE_MAX ? fh->tlen : SAVE_MAX;
            memcpy(fh->wbuf, fh->text, fh->wlen);
        }
    }
    if (rc == 0 && (kind == K_EVENTS || kind == K_EVREV))
        rc = watch_open(jf, fh->shard, fh->job_id, kind == K_EVREV ? ino_run(ino) : UINT64_MAX,
                        &fh->w);
    if (rc < 0) {
        fh_free(fh);
        return rc;
    }
    *out = fh;
    return 0;
}

static void jb_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    jfh_t *fh = NULL;
    int rc = do_open(JF(req), ino, fi->flags, &fh);
    if (rc < 0) {
        fuse_reply_err(req, -rc);
        return;
    }
    fi->fh = (uintptr_t)fh;
    fi->direct_io = 1;
    fi->keep_cache = 0;
    if (fuse_reply_open(req, fi) != 0)
        fh_free(fh);
}

static void jb_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
    /* the files of a job are fixed: an open(O_CREAT) of one that exists opens it */
    jfront_t *jf = JF(req);
    struct fuse_entry_param e;
    int pk = ino_kind(parent);
    int rc = pk == K_ROOT ? -EPERM : do_lookup(jf, parent, name, &e);
    if (rc == -ENOENT && pk >= K_JOB)
        rc = -EPERM;
    if (rc == 0 && (fi->flags & O_EXCL))
        rc = -EEXIST;
    jfh_t *fh = NULL;
    if (rc == 0)
        rc = do_open(jf, e.ino, fi->flags, &fh);
    if (rc < 0) {
        fuse_reply_err(req, -rc);
        return;
    }
    fi->fh = (uintptr_t)fh;
    fi->direct_io = 1;
    if (fuse_reply_create(req, &e, fi) != 0)
        fh_free(fh);
}

static void jb_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    jfh_t *fh = (jfh_t *)(uintptr_t)fi->fh;
    if (fh->w) {
        evs_read(req, fh->w, size, off, !!(fi->flags & O_NONBLOCK));
        return;
    }
    pthread_mutex_lock(&fh->mu);
    if (fh->wbuf && fh->dirty) {
        size_t n = off < 0 || (size_t)off >= fh->wlen ? 0 : fh->wlen - (size_t)off;
        fuse_reply_buf(req, n ? fh->wbuf + off : NULL, n < size ? n : size);
        pthread_mutex_unlock(&fh->mu);
        return;
    }
    if (fh->blob) {
        /* stdout/stderr: the kept bytes, then the mark when cut */
        uint64_t o = off < 0 ? 0 : (uint64_t)off, bl = fh->blob->len;
        if (o < bl) {
            size_t n = (size_t)(bl - o) < size ? (size_t)(bl - o) : size;
            fuse_reply_buf(req, (const char *)fh->blob->data + o, n);
        } else {
            size_t to = (size_t)(o - bl);
            size_t n = to >= fh->tlen ? 0 : fh->tlen - to;
            fuse_reply_buf(req, n ? fh->text + to : NULL, n < size ? n : size);
        }
        pthread_mutex_unlock(&fh->mu);
        return;
    }
    pthread_mutex_unlock(&fh->mu);
    front_reply_text(req, &fh->mu, fh->text, fh->tlen, size, off);
}

static void jb_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                    struct fuse_pollhandle *ph)
{
    jfh_t *fh = (jfh_t *)(uintptr_t)fi->fh;
    if (fh && fh->w) {
        evs_poll(req, fh->w, ph);
        return;
    }
    fuse_pollhandle_destroy(ph);
    fuse_reply_poll(req, POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM);
}

static void start_here(jfront_t *jf, uint32_t k, uint64_t job_id, uint64_t n);

/* A write to `run` starts a run now; to a setting, adds to this open's save (checked at
 * the write, published at close or fsync). */
static void jb_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    jfront_t *jf = JF(req);
    jfh_t *fh = (jfh_t *)(uintptr_t)fi->fh;
    int rc = 0;
    if (fh->kind == K_RUN) {
        cmdbuf_t b;
        sm_result_t res;
        jobs_cmd_run(&b, node_now_ms(), fh->job);
        rc = node_propose(jf->ctx.node, fh->shard, &b, &res);
        if (rc == -ENOEXEC)
            rc = -EINVAL;               /* the job has no cmd yet */
        if (rc == 0)
            start_here(jf, fh->shard, fh->job_id, jobs_result_run(&res));
    } else if (!fh->wbuf) {
        rc = -EBADF;
    } else {
        pthread_mutex_lock(&fh->mu);
        uint64_t o = (fi->flags & O_APPEND) ? fh->wlen : (uint64_t)(off < 0 ? 0 : off);
        if (o + size > SAVE_MAX - 1) {
            rc = -EFBIG;
        } else {
            if (o > fh->wlen)
                memset(fh->wbuf + fh->wlen, 0, (size_t)(o - fh->wlen));
            memcpy(fh->wbuf + o, buf, size);
            if (o + size > fh->wlen)
                fh->wlen = (size_t)(o + size);
            fh->dirty = 1;
            const char *why;
            /* checked at write() (bash's echo and printf report no error of close()):
             * the value so far, for the small settings at every write, for cmd once it
             * ends with a newline */
            if (fh->wlen && (fh->kind != K_CMD || fh->wbuf[fh->wlen - 1] == '\n') &&
                jobs_setting_check(fh->kind - K_CMD + 1, fh->wbuf, fh->wlen, &why) < 0) {
                fprintf(stderr, "quorumfs: jobs/%s/%s: %s\n", fh->job, job_files[fh->kind],
                        why ? why : "invalid");
                fh->wlen = 0;
                fh->dirty = 0;
                rc = -EINVAL;
            }
        }
        pthread_mutex_unlock(&fh->mu);
    }
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_write(req, size);
}

/* Publishes fh's save when written since the last publish (mu held). */
static int publish_locked(jfront_t *jf, jfh_t *fh)
{
    if (!fh->wbuf || !fh->dirty)
        return 0;
    size_t len = fh->wlen;
    if (fh->kind == K_CMD && len && fh->wbuf[len - 1] == '\n')
        len--;                          /* the newline echo adds is not part of the command */
    cmdbuf_t b;
    jobs_cmd_set(&b, node_now_ms(), fh->job, (uint8_t)(fh->kind - K_CMD + 1), fh->wbuf, len);
    int rc = node_propose(jf->ctx.node, fh->shard, &b, NULL);
    if (rc == 0)
        fh->dirty = 0;
    return rc;
}

static void jb_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    jfh_t *fh = (jfh_t *)(uintptr_t)fi->fh;
    pthread_mutex_lock(&fh->mu);
    int rc = publish_locked(JF(req), fh);
    pthread_mutex_unlock(&fh->mu);
    fuse_reply_err(req, -rc);
}

static void jb_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    jb_flush(req, ino, fi);
}

static void jb_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    jfh_t *fh = (jfh_t *)(uintptr_t)fi->fh;
    pthread_mutex_lock(&fh->mu);
    (void)publish_locked(JF(req), fh);  /* a save whose flush failed: a last try */
    pthread_mutex_unlock(&fh->mu);
    fh_free(fh);
    fuse_reply_err(req, 0);
}

static void jb_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
    jfront_t *jf = JF(req);
    int rc = 0, kind = ino_kind(ino);
    if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))
        rc = -EPERM;
    else if ((to_set & FUSE_SET_ATTR_SIZE) && !setting_kind(kind) && kind != K_RUN)
        rc = kind == K_ROOT || kind == K_JOB || kind == K_RUNS || kind == K_RDIR ? -EISDIR
                                                                                 : -EPERM;
    if (rc == 0 && (to_set & FUSE_SET_ATTR_SIZE) && fi && setting_kind(kind)) {
        jfh_t *fh = (jfh_t *)(uintptr_t)fi->fh;
        pthread_mutex_lock(&fh->mu);
        if (!fh->wbuf)
            rc = -EBADF;
        else if ((size_t)attr->st_size <= fh->wlen)
            fh->wlen = (size_t)attr->st_size;
        else
            rc = -EINVAL;
        pthread_mutex_unlock(&fh->mu);
    }
    /* a truncate by path (O_TRUNC) only starts the save that follows; times are not kept */
    struct stat s;
    if (rc == 0)
        rc = attr_of(jf, ino, &s);
    front_reply_attr(req, rc, &s);
}

static const struct fuse_lowlevel_ops jobs_fuse = {
    .lookup = jb_lookup,
    .getattr = jb_getattr,
    .setattr = jb_setattr,
    .mkdir = jb_mkdir,
    .unlink = jb_unlink,
    .rmdir = jb_rmdir,
    .rename = jb_rename,
    .create = jb_create,
    .open = jb_open,
    .read = jb_read,
    .write = jb_write,
    .flush = jb_flush,
    .release = jb_release,
    .fsync = jb_fsync,
    .opendir = jb_opendir,
    .readdir = jb_readdir,
    .releasedir = jb_releasedir,
    .poll = jb_poll,
};

/* ---------------------------------------------------------------- runners */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Proposes cmd b for runner r, again while the shard has no quorum (EIO) and the node is
 * not stopping, FINISH_TRIES times at most. */
static int runner_propose(runner_t *r, cmdbuf_t *b)
{
    int rc = -EIO;
    for (int i = 0; i < FINISH_TRIES; i++) {
        /* once the session that started the run ended, the run is lost in the state and
         * the node may be closing its groups: nothing more is proposed */
        if (r->orphan || session_local_id(node_session(r->jf->ctx.node), r->shard) != r->sid) {
            rc = -ESTALE;
            break;
        }
        cmdbuf_t copy = { 0 };
        cmd_raw(&copy, b->p, b->len);
        if (copy.oom)
            break;
        cmd_set_hdr_time(copy.p, copy.len, node_now_ms());
        rc = node_propose(r->jf->ctx.node, r->shard, &copy, NULL);
        if (rc != -EIO || r->jf->stopping)
            break;
        usleep(500000);
    }
    free(b->p);
    b->p = NULL;
    return rc;
}

struct capture {
    char *buf;
    size_t len;
    uint64_t total;
    int fd;
};

/* The live runners of shard k from start batch b (fmu held): adds d (+1 or -1). A +1 that
 * finds no free slot returns -1 (the runner is then not tracked: its batch is 0). */
static int live_add(jfront_t *jf, uint32_t k, uint64_t b, int d)
{
    struct live *free_slot = NULL;
    for (int i = 0; i < LIVE_SLOTS; i++) {
        struct live *l = &jf->live[i];
        if (l->n && l->shard == k && l->batch == b) {
            l->n = (uint32_t)((int)l->n + d);
            return 0;
        }
        if (!l->n && !free_slot)
            free_slot = l;
    }
    if (d < 0 || !free_slot)
        return -1;
    *free_slot = (struct live){ .shard = k, .n = 1, .batch = b };
    return 0;
}

/* Whether runners of shard k's start batch b still run here, their ends not queued (fmu
 * held): the ends of their batch mates wait for them (jobs_end_due). */
static int live_held(const jfront_t *jf, uint32_t k, uint64_t b)
{
    for (int i = 0; b && i < LIVE_SLOTS; i++)
        if (jf->live[i].n && jf->live[i].shard == k && jf->live[i].batch == b)
            return 1;
    return 0;
}

/* Queues the end of run r (state end, exit code) for the end thread (flush_fins), with the
 * kept output of cap[0..2) when cap (else the output was recorded already), and wakes that
 * thread (it proposes the shard's ends at jobs_end_due). Nothing once r is orphaned: its
 * run ended lost with its session. Called once per runner; it uncounts the runner from
 * jf->live (start_runner counted it). */
static void fin_queue(runner_t *r, uint8_t end, int32_t code, const struct capture *cap)
{
    jfront_t *jf = r->jf;
    fin_t *f = NULL;
    if (r->orphan)
        goto out;
    f = calloc(1, sizeof(*f));
    if (!f || !(f->f.job = strdup(r->job)))
        goto oom;
    f->shard = r->shard;
    f->sid = r->sid;
    f->f.run = r->n;
    f->f.state = end;
    f->f.exit_code = code;
    for (int s = 0; cap && s < 2; s++) {
        f->f.total[s] = cap[s].total;
        f->f.len[s] = cap[s].len;
        if (cap[s].len) {
            void *p = malloc(cap[s].len);
            if (!p)
                goto oom;
            memcpy(p, cap[s].buf, cap[s].len);
            f->f.out[s] = p;
        }
    }
    f->since = mono_ms();
    f->batch = r->batch;
    pthread_mutex_lock(&jf->fmu);
    f->unrecorded = &jf->unrecorded;
    __atomic_add_fetch(&jf->unrecorded, 1, __ATOMIC_RELAXED);
    *jf->fins_tail = f;
    jf->fins_tail = &f->next;
    if (r->batch)
        live_add(jf, r->shard, r->batch, -1);
    pthread_cond_signal(&jf->fcv);
    pthread_mutex_unlock(&jf->fmu);
    return;
oom:
    fprintf(stderr, "quorumfs: jobs/%s run %" PRIu64 ": end not recorded: out of memory\n",
            r->job, r->n);
    if (f) {
        free((void *)f->f.job);
        free((void *)f->f.out[0]);
        free(f);
    }
out:
    pthread_mutex_lock(&jf->fmu);
    if (r->batch)
        live_add(jf, r->shard, r->batch, -1);
    pthread_cond_signal(&jf->fcv);
    pthread_mutex_unlock(&jf->fmu);
}

static void fin_free(fin_t *f)
{
    if (f->unrecorded)
        __atomic_sub_fetch(f->unrecorded, 1, __ATOMIC_RELAXED);
    free((void *)f->f.job);
    free((void *)f->f.out[0]);
    free((void *)f->f.out[1]);
    free(f);
}

/* Drops the kept output of items[0..n) (their totals stay: the output reads as cut); 1 when
 * some item kept any. */
static int strip_output(jobs_fin_t *items, uint32_t n)
{
    int any = 0;
    for (uint32_t i = 0; i < n; i++)
        for (int s = 0; s < 2; s++)
            if (items[i].len[s]) {
                items[i].len[s] = 0;
                any = 1;
            }
    return any;
}

/* Records the queued ends of shard k's runs, one FINISHES per JOBS_BATCH_MAX ends or
 * BATCH_BYTES (at least one end each). Ends of a session that is not this node's session of
 * the shard any more are dropped (their runs ended lost with it); ends that found no quorum
 * (EIO) are kept for the next flush while younger than FINISH_WAIT_MS and the node is not
 * stopping. A FINISHES refused for a full disk (ENOSPC) is proposed again without its
 * output, which a full disk logs (jobs_cmd_frees; the output reads as cut). An end dropped
 * otherwise leaves its run running: end_lost_runs ends it lost. Called by the end thread and
 * by quiesce (once that thread ended). */
static void flush_fins(jfront_t *jf, uint32_t k)
{
    node_t *n = jf->ctx.node;
    fin_t *mine = NULL, **mt = &mine;
    pthread_mutex_lock(&jf->fmu);
    for (fin_t **p = &jf->fins; *p;) {
        fin_t *f = *p;
        if (f->shard == k) {
            *p = f->next;
            f->next = NULL;
            *mt = f;
            mt = &f->next;
        } else {
            p = &f->next;
        }
    }
    jf->fins_tail = &jf->fins;
    while (*jf->fins_tail)
        jf->fins_tail = &(*jf->fins_tail)->next;
    pthread_mutex_unlock(&jf->fmu);
    if (!mine)
        return;
    uint64_t sid = session_local_id(node_session(n), k);
    fin_t *keep = NULL, **kt = &keep;
    static __thread jobs_fin_t items[JOBS_BATCH_MAX];
    while (mine) {
        if (mine->sid != sid) {
            fin_t *f = mine;
            mine = f->next;
            fin_free(f);
            continue;
        }
        uint32_t cnt = 0;
        size_t bytes = 0;
        fin_t **pp = &mine;
        while (*pp && cnt < JOBS_BATCH_MAX) {
            if ((*pp)->sid != sid) {    /* dropped above when it comes first */
                fin_t *f = *pp;
                *pp = f->next;
                fin_free(f);
                continue;
            }
            size_t sz = jobs_fin_size(&(*pp)->f);
            if (cnt && bytes + sz > BATCH_BYTES)
                break;
            items[cnt++] = (*pp)->f;
            bytes += sz;
            pp = &(*pp)->next;
        }
        fin_t *rest = *pp;
        *pp = NULL;
        cmdbuf_t b;
        sm_result_t res;
        jobs_cmd_finishes(&b, node_now_ms(), sid, cnt, items);
        jf->last_flush[k] = mono_ms();
        testhook_pause("jobs_end_propose");   /* tests: a proposal that takes long */
        int rc = node_propose(n, k, &b, &res);
        if (rc == -ENOSPC && strip_output(items, cnt)) {
            jobs_cmd_finishes(&b, node_now_ms(), sid, cnt, items);
            rc = node_propose(n, k, &b, &res);
            if (rc == 0)
                fprintf(stderr, "quorumfs: jobs/: the disk is full: the ends of %u run(s) of "
                        "shard %u recorded without their output\n", cnt, k);
        }
        uint64_t now = mono_ms();
        int lost = 0;
        while (mine) {
            fin_t *f = mine;
            mine = f->next;
            f->next = NULL;
            if (rc == -EIO && !jf->stopping && now - f->since < FINISH_WAIT_MS) {
                *kt = f;
                kt = &f->next;
            } else {
                lost += rc < 0;
                fin_free(f);
            }
        }
        if (lost)
            fprintf(stderr, "quorumfs: jobs/: the ends of %d run(s) of shard %u not recorded: "
                    "%s\n", lost, k, strerror(-rc));
        mine = rest;
    }
    if (keep) {                         /* back at the head: they are the oldest */
        pthread_mutex_lock(&jf->fmu);
        *kt = jf->fins;
        jf->fins = keep;
        jf->fins_tail = &jf->fins;
        while (*jf->fins_tail)
            jf->fins_tail = &(*jf->fins_tail)->next;
        pthread_mutex_unlock(&jf->fmu);
    }
}

/* In the child (after fork, async-signal-safe calls only): the run's identity, standard
 * streams, working directory, environment, then /bin/sh -c cmd. */
static void child(const jfront_t *jf, const runner_t *r, int out, int err, char *const env[],
                  pid_t parent)
{
    setsid();                           /* a session and process group of its own */
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
        _exit(126);
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3u, ~0u, 0u) < 0)
#endif
        for (int fd = 3; fd < 65536; fd++)
            close(fd);
    if (jf->switch_user && (setgroups((size_t)jf->ngroups, jf->groups) < 0 ||
                            setgid(jf->gid) < 0 || setuid(jf->uid) < 0)) {
        static const char msg[] = "quorumfs: cannot switch to the jobs user\n";
        (void)!write(2, msg, sizeof(msg) - 1);
        _exit(126);
    }
    /* the shell dies with the daemon (kill -9 included); after the switch of user, which
     * clears it. What the shell started lives on (docs/JOBS.md "Not supported yet"). */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
        _exit(126);
    if (chdir(jf->home) < 0 && chdir("/") < 0)
        _exit(126);
    char *argv[] = { "sh", "-c", r->cmd, NULL };
    execve("/bin/sh", argv, env);
    _exit(127);
}

static void capture_read(struct capture *c)
{
    char tmp[65536];
    ssize_t n = read(c->fd, tmp, sizeof(tmp));
    if (n <= 0) {
        if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
            close(c->fd);
            c->fd = -1;
        }
        return;
    }
    c->total += (uint64_t)n;
    size_t keep = (size_t)n;
    if (c->len + keep > JOBS_OUT_MAX)
        keep = JOBS_OUT_MAX - c->len;
    memcpy(c->buf + c->len, tmp, keep);
    c->len += keep;
}

static void *runner_main(void *arg)
{
    runner_t *r = arg;
    jfront_t *jf = r->jf;
    struct capture cap[2] = { { NULL, 0, 0, -1 }, { NULL, 0, 0, -1 } };
    int p1[2] = { -1, -1 }, p2[2] = { -1, -1 };
    uint8_t end = JR_FAILED;
    int32_t code = 126;
    int started = 0;
    char *env[10] = { NULL };
    char run_s[24];
    snprintf(run_s, sizeof(run_s), "%" PRIu64, r->n);
    if (asprintf(&env[0], "PATH=/usr/local/bin:/usr/bin:/bin") < 0 ||
        asprintf(&env[1], "HOME=%s", jf->home) < 0 || asprintf(&env[2], "USER=%s", jf->user) < 0 ||
        asprintf(&env[3], "LOGNAME=%s", jf->user) < 0 || asprintf(&env[4], "SHELL=/bin/sh") < 0 ||
        asprintf(&env[5], "QUORUMFS_JOB=%s", r->job) < 0 ||
        asprintf(&env[6], "QUORUMFS_RUN=%s", run_s) < 0 ||
        asprintf(&env[7], "QUORUMFS_TICK=%" PRIu64, r->tick_ms) < 0 ||
        asprintf(&env[8], "QUORUMFS_ATTEMPT=%" PRIu32, r->attempt) < 0)
        goto report;
    if (!(cap[0].buf = malloc(JOBS_OUT_MAX)) || !(cap[1].buf = malloc(JOBS_OUT_MAX)) ||
        pipe2(p1, O_CLOEXEC) < 0 || pipe2(p2, O_CLOEXEC) < 0)
        goto report;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        goto report;
    if (pid == 0)
        child(jf, r, p1[1], p2[1], env, parent);
    started = 1;
    close(p1[1]);
    close(p2[1]);
    p1[1] = p2[1] = -1;
    cap[0].fd = p1[0];
    cap[1].fd = p2[0];
    p1[0] = p2[0] = -1;
    uint64_t t0 = mono_ms(), killed_at = 0, exited_at = 0;
    int status = 0, exited = 0, why = 0;   /* why: 1 timeout, 2 cancelled */
    while (!exited || cap[0].fd >= 0 || cap[1].fd >= 0) {
        struct pollfd pf[2];
        int np = 0;
        for (int s = 0; s < 2; s++)
            if (cap[s].fd >= 0)
                pf[np++] = (struct pollfd){ .fd = cap[s].fd, .events = POLLIN };
        if (np)
            poll(pf, (nfds_t)np, 100);
        else
            usleep(20000);
        for (int s = 0, i = 0; s < 2; s++)
            if (cap[s].fd >= 0 && (pf[i++].revents & (POLLIN | POLLHUP | POLLERR)))
                capture_read(&cap[s]);
        siginfo_t si;
        si.si_pid = 0;
        if (!exited && waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
            si.si_pid == pid) {
            /* the shell exited: what it left in its group goes with it, killed while the
             * unreaped shell still holds the group's id (no other process can have it) */
            kill(-pid, SIGKILL);
            if (waitpid(pid, &status, 0) == pid)
                exited = 1;
        }
        uint64_t now = mono_ms();
        if (!exited && !killed_at) {
            if (r->timeout_s && now - t0 >= (uint64_t)r->timeout_s * 1000)
                why = 1;
            else if (r->cancel || r->orphan || jf->stopping)
                why = 2;
            if (why) {
                kill(-pid, SIGTERM);
                killed_at = now;
            }
        } else if (!exited && killed_at && now - killed_at >= KILL_GRACE_MS) {
            kill(-pid, SIGKILL);
        }
        if (exited && !exited_at)
            exited_at = now;
        if (exited && np == 0)
            break;
        if (exited && now - exited_at > 5000) {
            /* something outside the group (it made a session of its own) holds a pipe:
             * stop reading */
            for (int s = 0; s < 2; s++)
                if (cap[s].fd >= 0) {
                    close(cap[s].fd);
                    cap[s].fd = -1;
                }
        }
    }
    if (why == 1)
        end = JR_TIMEOUT;
    else if (why == 2)
        end = JR_KILLED;
    else
        end = WIFEXITED(status) && WEXITSTATUS(status) == 0 ? JR_OK : JR_FAILED;
    code = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? -WTERMSIG(status) : 0;
report:
    if (!started)
        fprintf(stderr, "quorumfs: jobs/%s run %" PRIu64 ": could not start: %s\n", r->job, r->n,
                strerror(errno));
    for (int s = 0; s < 2; s++)
        if (cap[s].fd >= 0)
            close(cap[s].fd);
    /* small output goes with the end in its FINISHES item; more is recorded first in an
     * OUTPUT per stream (the end then follows in a FINISHES, as the small ones do) */
    int inline_out = cap[0].len + cap[1].len <= INLINE_MAX;
    for (int s = 0; !inline_out && s < 2; s++) {
        if (!cap[s].total)
            continue;
        cmdbuf_t b;
        jobs_cmd_output(&b, node_now_ms(), r->job, r->n, r->sid, (uint8_t)(s + 1), cap[s].total,
                        cap[s].buf, cap[s].len);
        int rc = runner_propose(r, &b);
        if (rc < 0)
            fprintf(stderr, "quorumfs: jobs/%s run %" PRIu64 ": output not recorded: %s\n",
                    r->job, r->n, strerror(-rc));
    }
    fin_queue(r, end, code, inline_out ? cap : NULL);
    for (int i = 0; i < 4; i++)
        if ((i < 2 ? p1[i] : p2[i - 2]) >= 0)
            close(i < 2 ? p1[i] : p2[i - 2]);
    for (int i = 0; env[i]; i++)
        free(env[i]);
    free(cap[0].buf);
    free(cap[1].buf);
    pthread_mutex_lock(&jf->ctx.mu);
    r->done = 1;
    pthread_mutex_unlock(&jf->ctx.mu);
    return NULL;
}

static void runner_free(runner_t *r)
{
    free(r->job);
    free(r->cmd);
    free(r);
}

/* ---------------------------------------------------------------- the sweep */

struct due_item {
    char *job;
    uint64_t job_id, a;                 /* tick (TICK) or run number (START, cancel) */
    uint32_t timeout_s;
    char *cmd;
    uint64_t tick_ms;                   /* START: the run's tick and attempt */
    uint32_t attempt;
};

struct collect {
    jfront_t *jf;
    const state_t *st;
    uint32_t k;
    int leader, run_here;
    size_t room;                        /* starts: runs this node may still take */
    uint64_t now, sid;
    struct due_item *t;
    size_t n, cap;
    int kind;                           /* for each_run: 0 start, 1 cancel */
    const job_view_t *j;
};

static int due_add(struct collect *c, const job_view_t *j, uint64_t a, int with_cmd)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        struct due_item *t = realloc(c->t, cap * sizeof(*t));
        if (!t)
            return -ENOMEM;
        c->t = t;
        c->cap = cap;
    }
    struct due_item *t = &c->t[c->n];
    memset(t, 0, sizeof(*t));
    t->job = strdup(j->name);
    t->cmd = with_cmd ? strdup(j->cmd) : NULL;
    if (!t->job || (with_cmd && !t->cmd)) {
        free(t->job);
        free(t->cmd);
        return -ENOMEM;
    }
    t->job_id = j->id;
    t->a = a;
    t->timeout_s = j->timeout_s;
    c->n++;
    return 0;
}

struct runs_scan {
    struct collect *c;
    struct collect *cancel;
};

static int scan_run(void *arg, const run_view_t *v)
{
    struct runs_scan *s = arg;
    struct collect *c = s->c;
    if (c->run_here && v->state == JR_PENDING && v->not_before_ms <= c->now &&
        c->n < c->room) {
        if (due_add(c, c->j, v->n, 1) < 0)
            return 1;
        c->t[c->n - 1].tick_ms = v->tick_ms;
        c->t[c->n - 1].attempt = v->attempt;
        return 0;
    }
    if (v->state == JR_RUNNING && v->cancel && v->sid == c->sid)
        return due_add(s->cancel, c->j, v->n, 0) < 0;
    return 0;
}

struct scan_all {
    struct collect *ticks, *starts, *cancels;
    int runs;                           /* look at the runs too (else: ticks only) */
};

static int scan_job(void *arg, const job_view_t *j)
{
    struct scan_all *s = arg;
    struct collect *c = s->ticks;
    if (c->leader) {
        uint64_t t = jobs_due_tick(j, c->now);
        if (t && due_add(c, j, t, 0) < 0)
            return 1;
    }
    if (s->runs && j->active) {
        s->starts->j = j;
        struct runs_scan rs = { s->starts, s->cancels };
        if (jobs_sm_each_run(c->st, j->id, scan_run, &rs))
            return 1;
    }
    return 0;
}

static void due_free(struct collect *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->t[i].job);
        free(c->t[i].cmd);
    }
    free(c->t);
}

static int is_local(jfront_t *jf, uint32_t k, uint64_t job_id, uint64_t n, int cancel)
{
    int found = 0;
    pthread_mutex_lock(&jf->ctx.mu);
    for (runner_t *r = jf->runners; r; r = r->next)
        if (r->shard == k && r->job_id == job_id && r->n == n) {
            found = 1;
            if (cancel)
                r->cancel = 1;
        }
    pthread_mutex_unlock(&jf->ctx.mu);
    return found;
}

static void start_runner(jfront_t *jf, uint32_t k, uint64_t sid, struct due_item *t,
                         uint64_t batch)
{
    runner_t *r = calloc(1, sizeof(*r));
    if (!r)
        return;
    r->jf = jf;
    r->shard = k;
    r->job_id = t->job_id;
    r->n = t->a;
    r->sid = sid;
    r->job = t->job;
    r->cmd = t->cmd;
    r->timeout_s = t->timeout_s;
    r->tick_ms = t->tick_ms;
    r->attempt = t->attempt;
    t->job = t->cmd = NULL;
    pthread_mutex_lock(&jf->ctx.mu);
    if (jf->stopping) {
        /* the node is closing: the run ends lost with its session (stop_runners ran) */
        pthread_mutex_unlock(&jf->ctx.mu);
        runner_free(r);
        return;
    }
    r->next = jf->runners;
    jf->runners = r;
    pthread_mutex_lock(&jf->fmu);
    r->batch = live_add(jf, k, batch, 1) == 0 ? batch : 0;   /* fin_queue uncounts it */
    pthread_mutex_unlock(&jf->fmu);
    if (pthread_create(&r->th, NULL, runner_main, r) != 0) {
        jf->runners = r->next;
        pthread_mutex_unlock(&jf->ctx.mu);
        fprintf(stderr, "quorumfs: jobs/%s run %" PRIu64 ": no thread to run it\n", r->job, r->n);
        fin_queue(r, JR_FAILED, 126, NULL);
        runner_free(r);
        return;
    }
    pthread_mutex_unlock(&jf->ctx.mu);
}

/* The runs this node is running (at most LOCAL_MAX): its live runners, and the runs whose
 * end is queued but not recorded yet (status still says running: a new run waits for that
 * end, so status never shows more than LOCAL_MAX running here). */
static size_t local_count(jfront_t *jf)
{
    size_t n = (size_t)__atomic_load_n(&jf->unrecorded, __ATOMIC_RELAXED);
    pthread_mutex_lock(&jf->ctx.mu);
    for (runner_t *r = jf->runners; r; r = r->next)
        n += !r->done;
    pthread_mutex_unlock(&jf->ctx.mu);
    return n < LOCAL_MAX ? n : LOCAL_MAX;
}

/* Counts STARTs in flight (proposed, their runner not listed yet): d = +1 before the
 * proposal, -1 once start_runner ran (or the proposal failed). */
static void starting_add(jfront_t *jf, int d)
{
    pthread_mutex_lock(&jf->ctx.mu);
    jf->starting += d;
    pthread_mutex_unlock(&jf->ctx.mu);
}

/* A run just made by a write to `run`: on a node with jobs enabled, asked for at once
 * rather than at the next sweep (another node's sweep may still win it). */
static void start_here(jfront_t *jf, uint32_t k, uint64_t job_id, uint64_t n)
{
    uint64_t sid = session_local_id(node_session(jf->ctx.node), k);
    if (!jf->enabled || jf->stopping || !sid || local_count(jf) >= LOCAL_MAX)
        return;                         /* a sweep (here or elsewhere) takes it later */
    state_t *st = jstate(jf, k);
    struct due_item t = { 0 };
    job_view_t j;
    run_view_t r;
    pthread_rwlock_rdlock(&st->lock);
    int rc = jobs_sm_get_id(st, job_id, &j);
    if (rc == 0)
        rc = jobs_sm_run(st, job_id, n, &r);
    if (rc == 0 && r.state == JR_PENDING && (!(t.job = strdup(j.name)) || !(t.cmd = strdup(j.cmd))))
        rc = -ENOMEM;
    if (rc == 0) {
        t.job_id = job_id;
        t.a = n;
        t.timeout_s = j.timeout_s;
        t.tick_ms = r.tick_ms;
        t.attempt = r.attempt;
    }
    pthread_rwlock_unlock(&st->lock);
    if (rc == 0 && t.job) {
        cmdbuf_t b;
        jobs_cmd_start(&b, node_now_ms(), t.job, n, sid);
        uint64_t batch = __atomic_add_fetch(&jf->batch_seq, 1, __ATOMIC_RELAXED);
        starting_add(jf, 1);
        if (node_propose(jf->ctx.node, k, &b, NULL) == 0)
            start_runner(jf, k, sid, &t, batch);
        starting_add(jf, -1);
    }
    free(t.job);
    free(t.cmd);
}

/* Proposes the items from..from+JOBS_BATCH_MAX of c as one TICKS or STARTS. */
static int propose_batch(node_t *n, uint32_t k, uint8_t op, uint64_t sid, struct collect *c,
                         size_t from, sm_result_t *res)
{
    const char *jobs[JOBS_BATCH_MAX];
    uint64_t v[JOBS_BATCH_MAX];
    uint32_t cnt = 0;
    for (size_t i = from; i < c->n && cnt < JOBS_BATCH_MAX; i++, cnt++) {
        jobs[cnt] = c->t[i].job;
        v[cnt] = c->t[i].a;
    }
    cmdbuf_t b;
    jobs_cmd_batch(&b, node_now_ms(), op, sid, cnt, jobs, v);
    return node_propose(n, k, &b, res);
}

static void sweep_shard(jfront_t *jf, uint32_t k)
{
    node_t *n = jf->ctx.node;
    state_t *st = jstate(jf, k);
    uint64_t sid = session_local_id(node_session(n), k);
    struct collect ticks = { .jf = jf, .st = st, .k = k, .leader = node_is_leader(n, k),
                             .now = node_now_ms(), .sid = sid };
    struct collect starts = ticks, cancels = ticks;
    starts.run_here = jf->enabled && sid != 0 && !jf->stopping;
    starts.room = LOCAL_MAX - local_count(jf);
    starts.leader = cancels.leader = 0;
    /* the ticks due (on the leader), then the runs, so that a run the tick makes starts in
     * this sweep and not 100 ms later. The index makes this O(jobs due + jobs with an
     * active run): nothing while idle. (Ends are the end thread's: flush_fins.) */
    struct scan_all s = { &ticks, &starts, &cancels, 0 };
    if (ticks.leader) {
        pthread_rwlock_rdlock(&st->lock);
        uint64_t first = jobs_sm_next_due(st);
        if (first && first <= ticks.now)
            jobs_sm_each_due(st, ticks.now, scan_job, &s);
        pthread_rwlock_unlock(&st->lock);
    }
    for (size_t i = 0; i < ticks.n; i += JOBS_BATCH_MAX) {
        sm_result_t res;
        int rc = propose_batch(n, k, JOP_TICKS, 0, &ticks, i, &res);
        if (rc < 0 && rc != -EIO)
            fprintf(stderr, "quorumfs: jobs/: ticks of shard %u not decided: %s\n", k,
                    strerror(-rc));
    }
    struct collect none = starts;
    none.leader = 0;
    struct scan_all r = { &none, &starts, &cancels, 1 };
    starts.now = node_now_ms();
    pthread_rwlock_rdlock(&st->lock);
    jobs_sm_each_active(st, scan_job, &r);
    pthread_rwlock_unlock(&st->lock);
    for (size_t i = 0; i < cancels.n; i++)
        is_local(jf, k, cancels.t[i].job_id, cancels.t[i].a, 1);
    /* the runs this node runs already are not asked for again */
    size_t keep = 0;
    for (size_t i = 0; i < starts.n; i++) {
        if (is_local(jf, k, starts.t[i].job_id, starts.t[i].a, 0)) {
            free(starts.t[i].job);
            free(starts.t[i].cmd);
        } else {
            starts.t[keep++] = starts.t[i];
        }
    }
    starts.n = keep;
    if (starts.n)
        starting_add(jf, 1);
    for (size_t i = 0; i < starts.n; i += JOBS_BATCH_MAX) {
        sm_result_t res;
        if (propose_batch(n, k, JOP_STARTS, sid, &starts, i, &res) < 0)
            continue;
        uint64_t batch = __atomic_add_fetch(&jf->batch_seq, 1, __ATOMIC_RELAXED);
        for (size_t x = i; x < starts.n && x < i + JOBS_BATCH_MAX; x++)
            if (jobs_result_bit(&res, (uint32_t)(x - i)))
                start_runner(jf, k, sid, &starts.t[x], batch);   /* recorded as started */
    }
    if (starts.n)
        starting_add(jf, -1);
    due_free(&ticks);
    due_free(&starts);
    due_free(&cancels);
}

/* Joins the runners whose threads ended. */
static void reap(jfront_t *jf, int all)
{
    for (;;) {
        runner_t *done = NULL;
        pthread_mutex_lock(&jf->ctx.mu);
        for (runner_t **p = &jf->runners; *p; p = &(*p)->next)
            if ((*p)->done || all) {
                done = *p;
                *p = done->next;
                break;
            }
        pthread_mutex_unlock(&jf->ctx.mu);
        if (!done)
            return;
        pthread_join(done->th, NULL);
        runner_free(done);
    }
}

static void jobs_sweep(jfront_t *jf)
{
    reap(jf, 0);
    for (uint32_t k = 0; k < node_nshards(jf->ctx.node); k++)
        sweep_shard(jf, k);
}

/* ---------------------------------------------------------------- lost runs */

struct lost_scan {
    const state_t *st;
    uint64_t sid;
    const job_view_t *j;
    jobs_fin_t *t;                      /* t[i].job owned; run, state JR_LOST */
    uint64_t *ids;                      /* the job id of t[i] */
    size_t n, cap;
};

static int lost_run_cb(void *arg, const run_view_t *v)
{
    struct lost_scan *ls = arg;
    if (v->state != JR_RUNNING || v->sid != ls->sid)
        return 0;
    if (ls->n == ls->cap) {
        size_t cap = ls->cap ? ls->cap * 2 : 16;
        jobs_fin_t *t = realloc(ls->t, cap * sizeof(*t));
        if (t)
            ls->t = t;
        uint64_t *ids = t ? realloc(ls->ids, cap * sizeof(*ids)) : NULL;
        if (!ids)
            return 1;
        ls->ids = ids;
        ls->cap = cap;
    }
    char *job = strdup(ls->j->name);
    if (!job)
        return 1;
    ls->t[ls->n] = (jobs_fin_t){ .job = job, .run = v->n, .state = JR_LOST };
    ls->ids[ls->n++] = ls->j->id;
    return 0;
}

static int lost_job_cb(void *arg, const job_view_t *j)
{
    struct lost_scan *ls = arg;
    ls->j = j;
    return jobs_sm_each_run(ls->st, j->id, lost_run_cb, ls) != 0;
}

/* Whether run (job id, job name, n) of shard k has a runner here or a queued end (nothing
 * else of this node can end it). ctx.mu and fmu held. */
static int held_here(const jfront_t *jf, uint32_t k, uint64_t job_id, const char *job,
                     uint64_t n)
{
    for (const runner_t *r = jf->runners; r; r = r->next)
        if (r->shard == k && r->job_id == job_id && r->n == n)
            return 1;
    for (const fin_t *f = jf->fins; f; f = f->next)
        if (f->shard == k && f->f.run == n && strcmp(f->f.job, job) == 0)
            return 1;
    return 0;
}

/* Ends as lost every run of shard k that is running on this node's live session of the
 * shard but has no runner here and no queued end: its end was dropped (no quorum for
 * FINISH_WAIT_MS, a full disk, no memory), so nothing would ever end it while the session
 * lives, and a forbid job would never run again. On the end thread, after its flush (so an
 * end being proposed is never taken for a dropped one). Returns 1 when a START was in
 * flight (its run may be recorded running before its runner is listed): check again soon. */
static int end_lost_runs(jfront_t *jf, uint32_t k)
{
    node_t *n = jf->ctx.node;
    uint64_t sid = session_local_id(node_session(n), k);
    if (!sid || jf->stopping)
        return 0;
    state_t *st = jstate(jf, k);
    struct lost_scan ls = { .st = st, .sid = sid };
    pthread_rwlock_rdlock(&st->lock);
    jobs_sm_each_active(st, lost_job_cb, &ls);      /* (out of memory: a part, or none) */
    pthread_rwlock_unlock(&st->lock);
    int again = 0;
    uint32_t cnt = 0;
    if (ls.n) {
        /* what was running in the state before this look and is neither being started,
         * run nor ended here now */
        pthread_mutex_lock(&jf->ctx.mu);
        again = jf->starting > 0;
        pthread_mutex_lock(&jf->fmu);
        for (size_t i = 0; !again && i < ls.n; i++) {
            if (held_here(jf, k, ls.ids[i], ls.t[i].job, ls.t[i].run)) {
                free((void *)ls.t[i].job);
                continue;
            }
            ls.t[cnt++] = ls.t[i];
        }
        pthread_mutex_unlock(&jf->fmu);
        pthread_mutex_unlock(&jf->ctx.mu);
        if (again)
            cnt = (uint32_t)ls.n;       /* all freed below */
    }
    for (uint32_t i = 0; !again && i < cnt; i += JOBS_BATCH_MAX) {
        uint32_t m = cnt - i < JOBS_BATCH_MAX ? cnt - i : JOBS_BATCH_MAX;
        cmdbuf_t b;
        sm_result_t res;
        jobs_cmd_finishes(&b, node_now_ms(), sid, m, ls.t + i);
        int rc = node_propose(n, k, &b, &res);
        if (rc == 0)
            fprintf(stderr, "quorumfs: jobs/: %u run(s) of shard %u running here without a "
                    "runner or a recorded end: ended lost\n", m, k);
        else if (rc != -EIO)
            fprintf(stderr, "quorumfs: jobs/: runs of shard %u without a runner not ended "
                    "yet: %s\n", k, strerror(-rc));
    }
    for (uint32_t i = 0; i < cnt; i++)
        free((void *)ls.t[i].job);
    free(ls.t);
    free(ls.ids);
    return again;
}

/* ---------------------------------------------------------------- the front's threads */

static void wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t mono_deadline_ms)
{
    struct timespec ts = { (time_t)(mono_deadline_ms / 1000),
                           (long)(mono_deadline_ms % 1000) * 1000000L };
    pthread_cond_timedwait(cv, mu, &ts);
}

/* The sweep, every SWEEP_MS until quit. */
static void *sweeper_main(void *arg)
{
    jfront_t *jf = arg;
    pthread_mutex_lock(&jf->fmu);
    while (!jf->quit) {
        wait_until(&jf->scv, &jf->fmu, mono_ms() + SWEEP_MS);
        if (jf->quit)
            break;
        pthread_mutex_unlock(&jf->fmu);
        jobs_sweep(jf);
        pthread_mutex_lock(&jf->fmu);
    }
    pthread_mutex_unlock(&jf->fmu);
    return NULL;
}

/* The end thread: records each shard's queued ends when jobs_end_due says (woken by
 * fin_queue), and on a node with jobs enabled looks for lost runs every LOST_CHECK_MS. */
static void *ender_main(void *arg)
{
    jfront_t *jf = arg;
    uint32_t nsh = node_nshards(jf->ctx.node);
    uint8_t *due = jf->due;
    uint64_t lost_at = mono_ms() + LOST_CHECK_MS;
    pthread_mutex_lock(&jf->fmu);
    while (!jf->quit) {
        uint64_t now = mono_ms(), next = jf->enabled ? lost_at : now + 3600000;
        int any = 0;
        for (fin_t *f = jf->fins; f; f = f->next) {
            uint64_t at = jobs_end_due(f->since, jf->last_flush[f->shard],
                                       live_held(jf, f->shard, f->batch));
            if (at <= now) {
                any = 1;
                due[f->shard] = 1;
            } else if (at < next) {
                next = at;
            }
        }
        if (!any && now < next) {
            wait_until(&jf->fcv, &jf->fmu, next);
            continue;
        }
        pthread_mutex_unlock(&jf->fmu);
        for (uint32_t k = 0; any && k < nsh; k++)
            if (due[k]) {
                due[k] = 0;
                flush_fins(jf, k);
            }
        if (jf->enabled && mono_ms() >= lost_at) {
            int again = 0;
            for (uint32_t k = 0; k < nsh; k++)
                again |= end_lost_runs(jf, k);
            lost_at = mono_ms() + (again ? LOST_RETRY_MS : LOST_CHECK_MS);
        }
        pthread_mutex_lock(&jf->fmu);
    }
    pthread_mutex_unlock(&jf->fmu);
    return NULL;
}

/* Ends and joins the front's threads (a proposal in progress ends first). */
static void stop_threads(jfront_t *jf)
{
    pthread_mutex_lock(&jf->fmu);
    jf->quit = 1;
    pthread_cond_broadcast(&jf->fcv);
    pthread_cond_broadcast(&jf->scv);
    pthread_mutex_unlock(&jf->fmu);
    if (jf->threads & 1)
        pthread_join(jf->sweeper, NULL);
    if (jf->threads & 2)
        pthread_join(jf->ender, NULL);
    jf->threads = 0;
}

/* ---------------------------------------------------------------- node side */

/* After an event of shard k: the local runners whose run is no longer running on their
 * session (it ended lost with the session, at node close) are orphaned. */
static void orphan_runners(jfront_t *jf, uint32_t k)
{
    state_t *st = jstate(jf, k);
    pthread_rwlock_rdlock(&st->lock);
    pthread_mutex_lock(&jf->ctx.mu);
    for (runner_t *r = jf->runners; r; r = r->next) {
        run_view_t v;
        if (r->shard == k && !r->done &&
            (jobs_sm_run(st, r->job_id, r->n, &v) < 0 || v.state != JR_RUNNING ||
             v.sid != r->sid))
            r->orphan = 1;
    }
    pthread_mutex_unlock(&jf->ctx.mu);
    pthread_rwlock_unlock(&st->lock);
}

static void jb_deliver(void *ctx, effect_t *e)
{
    if (e->kind == EFF_CONFIG_REV) {
        evs_deliver(((jfront_t *)ctx)->events, e->shard, e->shard + 1);
        orphan_runners(ctx, e->shard);
    }
}

/* The identity of runs (docs/JOBS.md "Who runs it"): --jobs-user, else the mounting user,
 * but nobody instead of root unless --jobs-user root. 0, or -1 with a message. */
static int identity(jfront_t *jf, const char *want)
{
    uid_t self = geteuid();
    struct passwd *pw;
    if (want)
        pw = getpwnam(want);
    else if (self == 0)
        pw = getpwnam("nobody");
    else
        pw = getpwuid(self);
    if (!pw) {
        fprintf(stderr, "quorumfs: jobs/: no such user '%s': runs are not supported on this "
                "node\n", want ? want : self == 0 ? "nobody" : "(the mounting user)");
        return -1;
    }
    if (self != 0 && pw->pw_uid != self) {
        fprintf(stderr, "quorumfs: jobs/: --jobs-user %s needs a root mount: runs are not "
                "supported on this node\n", pw->pw_name);
        return -1;
    }
    jf->uid = pw->pw_uid;
    jf->gid = pw->pw_gid;
    jf->switch_user = self == 0 && pw->pw_uid != 0;
    if (!(jf->user = strdup(pw->pw_name)) ||
        !(jf->home = strdup(pw->pw_dir && pw->pw_dir[0] ? pw->pw_dir : "/")))
        return -1;
    if (jf->switch_user) {
        int ng = 64;
        jf->groups = malloc((size_t)ng * sizeof(gid_t));
        if (!jf->groups || getgrouplist(pw->pw_name, pw->pw_gid, jf->groups, &ng) < 0) {
            free(jf->groups);
            jf->groups = malloc(sizeof(gid_t));
            if (!jf->groups)
                return -1;
            jf->groups[0] = pw->pw_gid;
            ng = 1;
        }
        jf->ngroups = ng;
    }
    return 0;
}

static void jb_stop(void *ctx);

static void *jb_start(struct node *n)
{
    _Static_assert(offsetof(jfront_t, ctx) == 0, "front_ctx_new makes the head of the context");
    jfront_t *jf = front_ctx_new(sizeof(jfront_t), n);
    if (!jf)
        return NULL;
    if (!(jf->events = evs_table_new(n))) {
        front_ctx_free(jf);
        return NULL;
    }
    pthread_mutex_init(&jf->fmu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&jf->fcv, &ca);
    pthread_cond_init(&jf->scv, &ca);
    pthread_condattr_destroy(&ca);
    jf->fins_tail = &jf->fins;
    uint32_t nsh = node_nshards(n) ? node_nshards(n) : 1;
    const node_opts_t *o = node_options(n);
    int on = o->jobs > 0 || (o->jobs == 0 && node_cluster_id(n) == 0);
    if (on && identity(jf, o->jobs_user) == 0)
        jf->enabled = 1;
    if (!(jf->last_flush = calloc(nsh, sizeof(*jf->last_flush))) ||
        !(jf->due = calloc(nsh, 1)))
        goto fail;
    if (pthread_create(&jf->sweeper, NULL, sweeper_main, jf) != 0)
        goto fail;
    jf->threads |= 1;
    if (pthread_create(&jf->ender, NULL, ender_main, jf) != 0)
        goto fail;
    jf->threads |= 2;
    return jf;
fail:
    jb_stop(jf);
    return NULL;
}

/* node_quiesce, before this node's session ends and its groups close: every runner is
 * orphaned (it proposes nothing more: a FINISH proposed after the groups closed crashed the
 * daemon), kills its process group and ends; the runs end lost with the session, and are
 * retried (docs/JOBS.md). No new run starts (stopping), and the front's threads end first
 * (no sweep starts a runner after this). */
static void stop_runners(jfront_t *jf)
{
    pthread_mutex_lock(&jf->ctx.mu);
    jf->stopping = 1;
    pthread_mutex_unlock(&jf->ctx.mu);
    stop_threads(jf);
    pthread_mutex_lock(&jf->ctx.mu);
    for (runner_t *r = jf->runners; r; r = r->next)
        r->orphan = r->cancel = 1;
    pthread_mutex_unlock(&jf->ctx.mu);
    reap(jf, 1);
}

static void jb_quiesce(void *ctx)
{
    jfront_t *jf = ctx;
    stop_runners(jf);
    /* the ends queued before: recorded now, while the session and groups are still up (only
     * here: jb_stop may come after the groups closed, and then drops what is left); a node
     * removed from the cluster cannot commit anything (its runs end lost on the members) */
    for (uint32_t k = 0; !node_removed(jf->ctx.node) && k < node_nshards(jf->ctx.node); k++)
        flush_fins(jf, k);
}

static void jb_stop(void *ctx)
{
    jfront_t *jf = ctx;
    stop_runners(jf);                   /* (a no-op when node_quiesce ran jb_quiesce) */
    evs_table_free(jf->events);   /* watches of files still open stay with them, detached */
    while (jf->fins) {
        fin_t *f = jf->fins;
        jf->fins = f->next;
        fin_free(f);
    }
    pthread_cond_destroy(&jf->fcv);
    pthread_cond_destroy(&jf->scv);
    pthread_mutex_destroy(&jf->fmu);
    free(jf->last_flush);
    free(jf->due);
    free(jf->groups);
    free(jf->user);
    free(jf->home);
    front_ctx_free(jf);
}

const ns_front_t jobs_front = {
    .start = jb_start,
    .quiesce = jb_quiesce,
    .stop = jb_stop,
    .deliver = jb_deliver,
    .fuse = &jobs_fuse,
};
