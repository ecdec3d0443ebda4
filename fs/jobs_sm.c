/* fs/jobs_sm.c — the jobs/ state machine (see jobs_sm.h, docs/JOBS.md). Jobs live in a
 * named-object table (fs/ntable.h, creation order); each keeps its runs in a list in run
 * order (the newest JOBS_RUNS_KEPT finished ones within JOBS_KEPT_BYTES of output, and
 * every active one) and a ring of its last JOBS_EVENTS_KEPT events.
 *
 * Determinism: walks follow creation and run order; schedules are parsed here (fs/cron.c is
 * pure); times are the command's apply time. Out of memory aborts; each command is decoded
 * and checked whole before it changes anything. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cluster/assert.h"
#include "cluster/err.h"
#include "fs/jobs_sm.h"
#include "fs/names.h"
#include "fs/ntable.h"
#include "fs/session_sm.h"

#define JSNAP_VERSION 1

_Static_assert(JOBS_BATCH_MAX / 8 <= SM_RESULT_MAX, "a batch's result bits fit a result");

typedef struct jev {
    uint64_t rev;
    uint8_t start;                       /* 1 start, 0 end */
    uint8_t state;
    int32_t exit_code;
    uint64_t run;
    char node[JOBS_NODE_MAX];
} jev_t;

typedef struct jrun {
    uint64_t n, tick_ms;
    uint8_t late, state, cancel;
    uint32_t attempt;
    uint64_t decided_ms, not_before_ms;
    char node[JOBS_NODE_MAX];
    uint64_t sid;
    uint64_t started_ms, finished_ms;
    int32_t exit_code;
    blob_t *out[2];
    uint64_t total[2];
    struct jrun *prev, *next;
} jrun_t;

typedef struct job {
    nentry_t ent;
    char *cmd;
    char sched[CRON_TEXT_MAX + 1];
    cron_t cron;
    uint8_t has_sched, conc;
    uint32_t timeout_s, retries;
    uint64_t ctime_ms, mtime_ms;
    uint64_t last_tick;
    uint64_t runs_total, failures, failed_total, skipped;
    jrun_t *head, *tail;
    uint32_t nruns, active;
    uint64_t rev;
    uint32_t nev;
    jev_t *ev;                           /* ring of JOBS_EVENTS_KEPT slots (NULL: no event) */
    /* the index (derived, not in the snapshot; see index_job) */
    uint64_t due;                        /* next fire time while in the heap */
    size_t hpos;                         /* 1 + its slot in the heap; 0: not in it */
    struct job *aprev, *anext;           /* the active list, while in_active */
    uint8_t in_active;
} job_t;

typedef struct jstate {
    ntable_t jobs;
    uint64_t next_id;
    /* the index: a min-heap of the jobs with a next fire time, by (due, id), and the list
     * of the jobs with an active run. Both follow from the jobs alone (index_job). */
    job_t **heap;
    size_t hn, hcap;
    job_t *ahead, *atail;
} jstate_t;

static jstate_t *JS(const state_t *st) { return st->ns_state[NS_JOBS]; }
static job_t *job_of(const nentry_t *e) { return e ? NTABLE_OBJ(e, job_t, ent) : NULL; }

const char *const jobs_setting_names[6] = { NULL, "cmd", "schedule", "timeout", "retries",
                                            "concurrency" };
static const char *const conc_names[] = { "forbid", "allow", "replace" };
static const char *const state_names[] = { "?", "pending", "running", "ok", "failed",
                                           "timeout", "lost", "killed" };

const char *jobs_conc_name(int conc)
{
    return conc >= JC_FORBID && conc <= JC_REPLACE ? conc_names[conc] : "?";
}

const char *jobs_state_name(int state)
{
    return state >= JR_PENDING && state <= JR_KILLED ? state_names[state] : "?";
}

int jobs_reserved(const char *name, size_t len)
{
    return (len == 7 && memcmp(name, ".events", 7) == 0) ||
           (len > 7 && memcmp(name, ".events@", 8) == 0);
}

static int active_state(uint8_t s) { return s == JR_PENDING || s == JR_RUNNING; }

/* ---------------------------------------------------------------- settings */

/* A decimal number of at most max, one trailing newline and blanks around allowed. */
static int parse_uint(const char *t, size_t len, uint32_t max, uint32_t *out)
{
    while (len && (t[len - 1] == '\n' || t[len - 1] == ' ' || t[len - 1] == '\t'))
        len--;
    while (len && (*t == ' ' || *t == '\t')) {
        t++;
        len--;
    }
    if (len == 0 || len > 10)
        return -EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (t[i] < '0' || t[i] > '9')
            return -EINVAL;
        v = v * 10 + (uint64_t)(t[i] - '0');
    }
    if (v > max)
        return -EINVAL;
    *out = (uint32_t)v;
    return 0;
}

static int parse_conc(const char *t, size_t len)
{
    if (len && t[len - 1] == '\n')
        len--;
    for (int i = JC_FORBID; i <= JC_REPLACE; i++)
        if (strlen(conc_names[i]) == len && memcmp(t, conc_names[i], len) == 0)
            return i;
    return -EINVAL;
}

/* An empty or blank schedule: none. */
static int blank(const char *t, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (t[i] != ' ' && t[i] != '\t' && t[i] != '\n')
            return 0;
    return 1;
}

int jobs_setting_check(int which, const char *t, size_t len, const char **why)
{
    const char *dummy;
    uint32_t v;
    cron_t c;
    if (!why)
        why = &dummy;
    *why = NULL;
    switch (which) {
    case JSET_CMD:
        if (len > JOBS_CMD_MAX || memchr(t, 0, len)) {
            *why = "cmd: at most 64 KiB, no NUL byte";
            return -EINVAL;
        }
        return 0;
    case JSET_SCHEDULE:
        return blank(t, len) ? 0 : cron_parse(t, len, &c, why);
    case JSET_TIMEOUT:
        if (parse_uint(t, len, JOBS_TIMEOUT_MAX, &v) < 0) {
            *why = "timeout: whole seconds, 0 (none) to 604800";
            return -EINVAL;
        }
        return 0;
    case JSET_RETRIES:
        if (parse_uint(t, len, JOBS_RETRIES_MAX, &v) < 0) {
            *why = "retries: 0 to 20";
            return -EINVAL;
        }
        return 0;
    case JSET_CONCURRENCY:
        if (parse_conc(t, len) < 0) {
            *why = "concurrency: forbid, allow or replace";
            return -EINVAL;
        }
        return 0;
    }
    *why = "no such setting";
    return -EINVAL;
}

/* ---------------------------------------------------------------- objects */

static void run_free(jrun_t *r)
{
    blob_unref(r->out[0]);
    blob_unref(r->out[1]);
    free(r);
}

static void run_unlink(job_t *j, jrun_t *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        j->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        j->tail = r->prev;
    j->nruns--;
    if (active_state(r->state))
        j->active--;
    run_free(r);
}

/* ---------------------------------------------------------------- the index
 * index_job(js, j) makes j's place in the index agree with j: in the heap with key
 * due = cron_next(schedule, last tick) when it has a schedule and a cmd and that time
 * exists (what jobs_next_tick says), in the active list when it has an active run. Every
 * apply that changes a job's schedule, cmd, last tick or active runs calls it; restore
 * calls it for every job; job_del takes the job out. jobs_sm_verify checks the result. */

static int hless(const job_t *a, const job_t *b)
{
    return a->due < b->due || (a->due == b->due && a->ent.id < b->ent.id);
}

static void hput(jstate_t *js, size_t i, job_t *j)
{
    js->heap[i] = j;
    j->hpos = i + 1;
}

static void sift_up(jstate_t *js, size_t i)
{
    job_t *j = js->heap[i];
    while (i > 0 && hless(j, js->heap[(i - 1) / 2])) {
        hput(js, i, js->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    hput(js, i, j);
}

static void sift_down(jstate_t *js, size_t i)
{
    job_t *j = js->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= js->hn)
            break;
        if (c + 1 < js->hn && hless(js->heap[c + 1], js->heap[c]))
            c++;
        if (!hless(js->heap[c], j))
            break;
        hput(js, i, js->heap[c]);
        i = c;
    }
    hput(js, i, j);
}

static void heap_remove(jstate_t *js, job_t *j)
{
    size_t i = j->hpos - 1;
    j->hpos = 0;
    if (i == --js->hn)
        return;
    job_t *m = js->heap[js->hn];
    hput(js, i, m);
    sift_up(js, i);
    sift_down(js, m->hpos - 1);
}

static void active_unlink(jstate_t *js, job_t *j)
{
    j->in_active = 0;
    if (j->aprev)
        j->aprev->anext = j->anext;
    else
        js->ahead = j->anext;
    if (j->anext)
        j->anext->aprev = j->aprev;
    else
        js->atail = j->aprev;
    j->aprev = j->anext = NULL;
}

static uint64_t due_of(const job_t *j)
{
    return j->has_sched && j->cmd[0] ? cron_next(&j->cron, j->last_tick) : 0;
}

static void index_job(jstate_t *js, job_t *j)
{
    uint64_t due = due_of(j);
    if (!due) {
        if (j->hpos)
            heap_remove(js, j);
    } else if (j->hpos) {
        if (due != j->due) {
            j->due = due;
            sift_up(js, j->hpos - 1);
            sift_down(js, j->hpos - 1);
        }
    } else {
        if (js->hn == js->hcap) {
            js->hcap = js->hcap ? js->hcap * 2 : 64;
            js->heap = xrealloc(js->heap, js->hcap * sizeof(*js->heap));
        }
        j->due = due;
        hput(js, js->hn++, j);
        sift_up(js, js->hn - 1);
    }
    if (j->active && !j->in_active) {
        j->in_active = 1;
        j->anext = NULL;
        j->aprev = js->atail;
        if (js->atail)
            js->atail->anext = j;
        else
            js->ahead = j;
        js->atail = j;
    } else if (!j->active && j->in_active) {
        active_unlink(js, j);
    }
}

/* Takes j out of the index (before it is freed). */
static void unindex_job(jstate_t *js, job_t *j)
{
    if (j->hpos)
        heap_remove(js, j);
    if (j->in_active)
        active_unlink(js, j);
}

static void job_del(jstate_t *js, job_t *j)
{
    unindex_job(js, j);
    while (j->head)
        run_unlink(j, j->head);
    free(j->ev);
    free(j->cmd);
    ntable_del(&js->jobs, &j->ent);
    free(j);
}

static jrun_t *run_find(const job_t *j, uint64_t n)
{
    for (jrun_t *r = j->tail; r; r = r->prev)
        if (r->n == n)
            return r;
    return NULL;
}

/* Drops the oldest finished runs beyond JOBS_RUNS_KEPT, or while their output passes
 * JOBS_KEPT_BYTES. Active runs stay. */
static void trim_runs(job_t *j)
{
    uint64_t finished = 0, bytes = 0;
    for (jrun_t *r = j->head; r; r = r->next)
        if (!active_state(r->state)) {
            finished++;
            bytes += r->out[0]->len + r->out[1]->len;
        }
    for (jrun_t *r = j->head, *next; r && (finished > JOBS_RUNS_KEPT ||
                                           bytes > JOBS_KEPT_BYTES); r = next) {
        next = r->next;
        if (active_state(r->state))
            continue;
        finished--;
        bytes -= r->out[0]->len + r->out[1]->len;
        run_unlink(j, r);
    }
}

/* Records an event of j and tells watchers (an EFF_CONFIG_REV of NS_JOBS). */
static void event(job_t *j, const jrun_t *r, int start, effects_t *fx)
{
    if (!j->ev)
        j->ev = xcalloc(JOBS_EVENTS_KEPT, sizeof(jev_t));
    jev_t *e = &j->ev[++j->rev % JOBS_EVENTS_KEPT];
    memset(e, 0, sizeof(*e));
    e->rev = j->rev;
    e->start = (uint8_t)start;
    e->state = r->state;
    e->exit_code = r->exit_code;
    e->run = r->n;
    memcpy(e->node, r->node, sizeof(e->node));
    if (j->nev < JOBS_EVENTS_KEPT)
        j->nev++;
    effects_add(fx, EFF_CONFIG_REV, NS_JOBS, 0, 0)->u.config.rev = j->rev;
}

/* A new pending run of j (attempt 1 unless a retry). */
static jrun_t *run_new(job_t *j, uint64_t now, uint64_t tick, uint8_t late, uint32_t attempt,
                       uint64_t not_before)
{
    jrun_t *r = xcalloc(1, sizeof(*r));
    r->n = ++j->runs_total;
    r->tick_ms = tick;
    r->late = late;
    r->state = JR_PENDING;
    r->attempt = attempt;
    r->decided_ms = now;
    r->not_before_ms = not_before;
    r->out[0] = blob_xnew(NULL, 0);
    r->out[1] = blob_xnew(NULL, 0);
    r->prev = j->tail;
    if (j->tail)
        j->tail->next = r;
    else
        j->head = r;
    j->tail = r;
    j->nruns++;
    j->active++;
    return r;
}

/* Ends run r in state (not active any more) at now, with its retry when it failed and
 * attempts remain, and its end event. Frees nothing: the caller trims the runs (trim_runs)
 * once it is done walking them. */
static void run_end(job_t *j, jrun_t *r, uint8_t state, int32_t exit_code, uint64_t now,
                    effects_t *fx)
{
    ASSERT(active_state(r->state) && !active_state(state));
    int was_running = r->state == JR_RUNNING;
    r->state = state;
    r->exit_code = exit_code;
    r->finished_ms = now;
    j->active--;
    if (was_running)
        event(j, r, 0, fx);
    if (state == JR_OK) {
        j->failures = 0;
    } else if (state == JR_FAILED || state == JR_TIMEOUT || state == JR_LOST) {
        j->failures++;
        j->failed_total++;
        if (r->attempt <= j->retries && j->active < JOBS_ACTIVE_MAX) {
            uint32_t shift = r->attempt - 1 < 20 ? r->attempt - 1 : 20;
            uint64_t delay = JOBS_BACKOFF_MS << shift;
            if (delay > JOBS_BACKOFF_MAX_MS)
                delay = JOBS_BACKOFF_MAX_MS;
            run_new(j, now, r->tick_ms, r->late, r->attempt + 1, now + delay);
        }
    }
}

/* ---------------------------------------------------------------- apply */

/* Reads "str job" into *j: 0, -EINVAL (malformed) or -ENOENT. */
static int get_job(jstate_t *js, cmdrd_t *r, job_t **j)
{
    const char *name;
    size_t len = cmd_get_path(r, &name);
    *j = NULL;
    if (r->err || len == 0)
        return -EINVAL;
    *j = job_of(ntable_find(&js->jobs, name, len));
    return *j ? 0 : -ENOENT;
}

static int apply_mkdir(jstate_t *js, const cmd_hdr_t *h, cmdrd_t *r)
{
    const char *name;
    size_t len = cmd_get_path(r, &name);
    if (r->err || names_check(name, len, 0) < 0 || jobs_reserved(name, len))
        return -EINVAL;
    if (ntable_find(&js->jobs, name, len))
        return -EEXIST;
    if (js->jobs.n >= JOBS_MAX || js->next_id >= JOBS_ID_MAX)
        return -ENOSPC;
    job_t *j = xcalloc(1, sizeof(*j));
    ntable_add(&js->jobs, &j->ent, name, len, ++js->next_id);
    j->cmd = xstrdup("");
    j->retries = JOBS_RETRIES_DEFAULT;
    j->conc = JC_FORBID;
    j->ctime_ms = j->mtime_ms = j->last_tick = h->now_ms;
    return 0;
}

static int apply_rmdir(jstate_t *js, cmdrd_t *r, effects_t *fx)
{
    job_t *j;
    int rc = get_job(js, r, &j);
    if (rc < 0)
        return rc;
    for (jrun_t *x = j->head; x; x = x->next)
        if (x->state == JR_RUNNING)
            return -EBUSY;
    /* watchers of the job's `.events` end (EOF) */
    effects_add(fx, EFF_CONFIG_REV, NS_JOBS, 0, 0)->u.config.rev = j->rev;
    job_del(js, j);
    return 0;
}

static int apply_set(jstate_t *js, const cmd_hdr_t *h, cmdrd_t *r)
{
    job_t *j;
    int rc = get_job(js, r, &j);
    uint8_t which = cmd_get_u8(r);
    const uint8_t *p;
    size_t len = cmd_get_bytes(r, &p);
    const char *t = (const char *)p;
    if (r->err || rc == -EINVAL || jobs_setting_check(which, t, len, NULL) < 0)
        return -EINVAL;
    if (rc < 0)
        return rc;
    switch (which) {
    case JSET_CMD:
        free(j->cmd);
        j->cmd = xstrndup(t, len);
        break;
    case JSET_SCHEDULE:
        if (blank(t, len)) {
            j->has_sched = 0;
            j->sched[0] = 0;
            memset(&j->cron, 0, sizeof(j->cron));
        } else {
            ASSERT(cron_parse(t, len, &j->cron, NULL) == 0);
            j->has_sched = 1;
            size_t n = len && t[len - 1] == '\n' ? len - 1 : len;
            memcpy(j->sched, t, n);
            j->sched[n] = 0;
        }
        /* a new schedule counts from now: no catch-up of times before it was set */
        if (j->last_tick < h->now_ms)
            j->last_tick = h->now_ms;
        break;
    case JSET_TIMEOUT:
        ASSERT(parse_uint(t, len, JOBS_TIMEOUT_MAX, &j->timeout_s) == 0);
        break;
    case JSET_RETRIES:
        ASSERT(parse_uint(t, len, JOBS_RETRIES_MAX, &j->retries) == 0);
        break;
    case JSET_CONCURRENCY:
        j->conc = (uint8_t)parse_conc(t, len);
        break;
    }
    j->mtime_ms = h->now_ms;
    index_job(js, j);
    return 0;
}

/* Concurrency at the start of a new run: 0 when it may be created (replace has cancelled
 * the active runs: pending ones end KILLED at once, running ones are asked to stop), or
 * -EBUSY (forbid with an active run, or JOBS_ACTIVE_MAX reached). */
static int admit(job_t *j, uint64_t now, effects_t *fx)
{
    uint32_t running = 0;
    for (jrun_t *x = j->head; x; x = x->next)
        running += x->state == JR_RUNNING;
    if (j->conc == JC_FORBID && j->active > 0)
        return -EBUSY;
    if (j->conc == JC_REPLACE ? running >= JOBS_ACTIVE_MAX : j->active >= JOBS_ACTIVE_MAX)
        return -EBUSY;                       /* checked before anything changes */
    if (j->conc == JC_REPLACE) {
        for (jrun_t *x = j->head; x; x = x->next) {
            if (x->state == JR_PENDING)
                run_end(j, x, JR_KILLED, 0, now, fx);
            else if (x->state == JR_RUNNING)
                x->cancel = 1;
        }
    }
    return 0;
}

/* Decides tick of job j (NULL: no such job) at now. */
static int tick_one(jstate_t *js, job_t *j, uint64_t tick, const cmd_hdr_t *h, effects_t *fx)
{
    if (!j)
        return -ENOENT;
    if (!j->has_sched || !j->cmd[0])
        return -ENOENT;                      /* nothing to schedule (any more) */
    if (tick <= j->last_tick)
        return -EALREADY;                    /* decided before: exactly once */
    if (tick > h->now_ms)
        return -EAGAIN;
    if (!cron_fires_at(&j->cron, tick))
        return -EINVAL;
    uint64_t expected = cron_next(&j->cron, j->last_tick);
    uint64_t missed = 0;
    for (uint64_t t = expected; t && t < tick && missed < 1000000; t = cron_next(&j->cron, t))
        missed++;
    j->last_tick = tick;
    j->skipped += missed;
    uint8_t late = missed > 0 || h->now_ms - tick >= JOBS_LATE_MS;
    if (admit(j, h->now_ms, fx) < 0) {
        j->skipped++;
        index_job(js, j);
        return 0;                            /* the tick is decided: it is not run */
    }
    run_new(j, h->now_ms, tick, late, 1, 0);
    trim_runs(j);
    index_job(js, j);
    return 0;
}

static int apply_tick(jstate_t *js, const cmd_hdr_t *h, cmdrd_t *r, effects_t *fx)
{
    job_t *j;
    int rc = get_job(js, r, &j);
    uint64_t tick = cmd_get_u64(r);
    if (r->err || rc == -EINVAL)
        return -EINVAL;
    return tick_one(js, j, tick, h, fx);
}

/* One item of a batch: a job name (pointer into the command) and a number. */
typedef struct item {
    const char *name;
    size_t len;
    uint64_t v;
} item_t;

/* Reads "u32 n, n x (str job, u64 v)" into items (n <= JOBS_BATCH_MAX, at least 1): n, or
 * -EINVAL for a malformed batch. */
static int get_items(cmdrd_t *r, item_t *items)
{
    uint32_t n = cmd_get_u32(r);
    if (r->err || n == 0 || n > JOBS_BATCH_MAX)
        return -EINVAL;
    for (uint32_t i = 0; i < n; i++) {
        items[i].len = cmd_get_path(r, &items[i].name);
        items[i].v = cmd_get_u64(r);
        if (r->err || items[i].len == 0)
            return -EINVAL;
    }
    return r->off == r->len ? (int)n : -EINVAL;
}

/* TICKS: each tick decided as by TICK (its own refusal skips it); the result's bit i is set
 * for each item decided. The batch is decoded whole first: malformed, nothing changes. */
static int apply_ticks(jstate_t *js, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res,
                       effects_t *fx)
{
    static __thread item_t items[JOBS_BATCH_MAX];
    int n = get_items(r, items);
    if (n < 0)
        return n;
    if (res) {
        memset(res->data, 0, JOBS_BATCH_MAX / 8);
        res->len = JOBS_BATCH_MAX / 8;
    }
    for (int i = 0; i < n; i++) {
        job_t *j = job_of(ntable_find(&js->jobs, items[i].name, items[i].len));
        if (tick_one(js, j, items[i].v, h, fx) == 0 && res)
            res->data[i / 8] |= (uint8_t)(1u << (i % 8));
    }
    return 0;
}

static int apply_run(jstate_t *js, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res,
                     effects_t *fx)
{
    job_t *j;
    int rc = get_job(js, r, &j);
    if (rc < 0)
        return rc;
    if (!j->cmd[0])
        return -ENOEXEC;                     /* no cmd yet */
    rc = admit(j, h->now_ms, fx);
    if (rc < 0)
        return rc;
    jrun_t *x = run_new(j, h->now_ms, 0, 0, 1, 0);
    trim_runs(j);
    index_job(js, j);
    if (res) {
        memcpy(res->data, &x->n, 8);
        res->len = 8;
    }
    return 0;
}

/* Reads "str job, u64 run, u64 sid" for the runner commands: 0 and *j, *x, or an error. */
static int get_run(jstate_t *js, cmdrd_t *r, job_t **j, jrun_t **x, uint64_t *sid)
{
    int rc = get_job(js, r, j);
    uint64_t n = cmd_get_u64(r);
    *sid = cmd_get_u64(r);
    if (r->err || rc == -EINVAL)
        return -EINVAL;
    if (rc < 0)
        return rc;
    *x = run_find(*j, n);
    return *x ? 0 : -ENOENT;
}

/* Starts run x of j on session s at now. */
static int start_one(job_t *j, jrun_t *x, const session_t *s, uint64_t sid,
                     const cmd_hdr_t *h, effects_t *fx)
{
    if (x->state != JR_PENDING)
        return -EALREADY;
    if (x->not_before_ms > h->now_ms)
        return -EAGAIN;
    x->state = JR_RUNNING;
    x->sid = sid;
    x->started_ms = h->now_ms;
    snprintf(x->node, sizeof(x->node), "%s", s->node);
    event(j, x, 1, fx);
    return 0;
}

static int apply_start(state_t *st, jstate_t *js, const cmd_hdr_t *h, cmdrd_t *r,
                       effects_t *fx)
{
    job_t *j;
    jrun_t *x;
    uint64_t sid;
    int rc = get_run(js, r, &j, &x, &sid);
    if (r->err)
        return -EINVAL;
    if (rc < 0)
        return rc;
    const session_t *s = session_find(&st->sessions, sid);
    if (!s)
        return -ENOLCK;
    return start_one(j, x, s, sid, h, fx);
}

/* STARTS: "u64 sid, u32 n, n x (str job, u64 run)", each started as by START (its own
 * refusal skips it); the result's bit i is set for each run started on sid. ENOLCK (nothing
 * changes) when sid is not live. */
static int apply_starts(state_t *st, jstate_t *js, const cmd_hdr_t *h, cmdrd_t *r,
                        sm_result_t *res, effects_t *fx)
{
    static __thread item_t items[JOBS_BATCH_MAX];
    uint64_t sid = cmd_get_u64(r);
    int n = get_items(r, items);
    if (n < 0)
        return n;
    const session_t *s = session_find(&st->sessions, sid);
    if (!s)
        return -ENOLCK;
    if (res) {
        memset(res->data, 0, JOBS_BATCH_MAX / 8);
        res->len = JOBS_BATCH_MAX / 8;
    }
    for (int i = 0; i < n; i++) {
        job_t *j = job_of(ntable_find(&js->jobs, items[i].name, items[i].len));
        jrun_t *x = j ? run_find(j, items[i].v) : NULL;
        if (x && start_one(j, x, s, sid, h, fx) == 0 && res)
            res->data[i / 8] |= (uint8_t)(1u << (i % 8));
    }
    return 0;
}

static void out_append(jrun_t *x, int s, const uint8_t *p, size_t len, uint64_t total);

static int apply_output(jstate_t *js, cmdrd_t *r)
{
    job_t *j;
    jrun_t *x;
    uint64_t sid;
    int rc = get_run(js, r, &j, &x, &sid);
    uint8_t stream = cmd_get_u8(r);
    uint64_t total = cmd_get_u64(r);
    const uint8_t *p;
    size_t len = cmd_get_bytes(r, &p);
    if (r->err || rc == -EINVAL || stream < 1 || stream > 2)
        return -EINVAL;
    if (rc < 0)
        return rc;
    if (x->state != JR_RUNNING || x->sid != sid)
        return -ESTALE;
    if (total < x->out[stream - 1]->len + len)
        return -EINVAL;
    out_append(x, stream - 1, p, len, total);
    return 0;
}

static int apply_finish(jstate_t *js, const cmd_hdr_t *h, cmdrd_t *r, effects_t *fx)
{
    job_t *j;
    jrun_t *x;
    uint64_t sid;
    int rc = get_run(js, r, &j, &x, &sid);
    uint8_t state = cmd_get_u8(r);
    int32_t exit_code = (int32_t)cmd_get_u32(r);
    if (r->err || rc == -EINVAL ||
        !(state == JR_OK || state == JR_FAILED || state == JR_TIMEOUT || state == JR_KILLED))
        return -EINVAL;
    if (rc < 0)
        return rc;
    if (x->state != JR_RUNNING || x->sid != sid)
        return -ESTALE;
    run_end(j, x, state, exit_code, h->now_ms, fx);
    trim_runs(j);
    index_job(js, j);
    return 0;
}

/* One item of a FINISHES, pointing into the command. */
typedef struct fitem {
    const char *name;
    size_t len;
    uint64_t run;
    uint8_t state, streams;
    int32_t exit_code;
    uint64_t total[2];
    const uint8_t *p[2];
    size_t plen[2];
} fitem_t;

/* The end states a FINISHES item may carry: a runner's (ok, failed, timeout, killed), and
 * lost, which a node gives a run of its own live session that it can no longer end
 * otherwise (its runner's end was dropped: docs/JOBS.md "Ending"). */
static int end_state(uint8_t s)
{
    return s == JR_OK || s == JR_FAILED || s == JR_TIMEOUT || s == JR_KILLED || s == JR_LOST;
}

/* Reads "u32 n, n x item" of a FINISHES (n <= JOBS_BATCH_MAX, at least 1): n, or -EINVAL for
 * a malformed batch (a bad end state, stream bits, or output over the cap or its total). */
static int get_fitems(cmdrd_t *r, fitem_t *items)
{
    uint32_t n = cmd_get_u32(r);
    if (r->err || n == 0 || n > JOBS_BATCH_MAX)
        return -EINVAL;
    for (uint32_t i = 0; i < n; i++) {
        fitem_t *f = &items[i];
        memset(f, 0, sizeof(*f));
        f->len = cmd_get_path(r, &f->name);
        f->run = cmd_get_u64(r);
        f->state = cmd_get_u8(r);
        f->exit_code = (int32_t)cmd_get_u32(r);
        f->streams = cmd_get_u8(r);
        if (r->err || f->len == 0 || !end_state(f->state) || f->streams > 3)
            return -EINVAL;
        for (int s = 0; s < 2; s++) {
            if (!(f->streams >> s & 1))
                continue;
            f->total[s] = cmd_get_u64(r);
            f->plen[s] = cmd_get_bytes(r, &f->p[s]);
            if (r->err || f->plen[s] > JOBS_OUT_MAX || f->total[s] < f->plen[s])
                return -EINVAL;
        }
    }
    return r->off == r->len ? (int)n : -EINVAL;
}

/* Appends chunk p[0..len) to stream s of x (kept up to JOBS_OUT_MAX) with the total it
 * produced so far; the caller checked total >= kept + len. */
static void out_append(jrun_t *x, int s, const uint8_t *p, size_t len, uint64_t total)
{
    blob_t *old = x->out[s];
    size_t keep = len;
    if (old->len + keep > JOBS_OUT_MAX)
        keep = JOBS_OUT_MAX - old->len;
    if (keep) {
        blob_t *nb = blob_xnew(NULL, old->len + keep);
        memcpy(nb->data, old->data, old->len);
        memcpy(nb->data + old->len, p, keep);
        blob_unref(old);
        x->out[s] = nb;
    }
    if (total > x->total[s])
        x->total[s] = total;
}

/* FINISHES: each item, on its own, as its OUTPUTs then its FINISH would be (an item whose
 * run is not running on sid, or whose output disagrees with what is kept, is skipped
 * whole); the result's bit i is set for each run ended. Decoded whole first: a malformed
 * batch changes nothing. */
static int apply_finishes(jstate_t *js, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res,
                          effects_t *fx)
{
    static __thread fitem_t items[JOBS_BATCH_MAX];
    uint64_t sid = cmd_get_u64(r);
    int n = get_fitems(r, items);
    if (n < 0)
        return n;
    if (res) {
        memset(res->data, 0, JOBS_BATCH_MAX / 8);
        res->len = JOBS_BATCH_MAX / 8;
    }
    for (int i = 0; i < n; i++) {
        const fitem_t *f = &items[i];
        job_t *j = job_of(ntable_find(&js->jobs, f->name, f->len));
        jrun_t *x = j ? run_find(j, f->run) : NULL;
        if (!x || x->state != JR_RUNNING || x->sid != sid)
            continue;
        int ok = 1;
        for (int s = 0; s < 2; s++)
            if ((f->streams >> s & 1) && f->total[s] < x->out[s]->len + f->plen[s])
                ok = 0;
        if (!ok)
            continue;
        for (int s = 0; s < 2; s++)
            if (f->streams >> s & 1)
                out_append(x, s, f->p[s], f->plen[s], f->total[s]);
        run_end(j, x, f->state, f->exit_code, h->now_ms, fx);
        trim_runs(j);
        index_job(js, j);
        if (res)
            res->data[i / 8] |= (uint8_t)(1u << (i % 8));
    }
    return 0;
}

static int js_apply(state_t *st, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res,
                    effects_t *fx)
{
    jstate_t *js = JS(st);
    switch (h->op) {
    case JOP_MKDIR:  return apply_mkdir(js, h, r);
    case JOP_RMDIR:  return apply_rmdir(js, r, fx);
    case JOP_SET:    return apply_set(js, h, r);
    case JOP_TICK:   return apply_tick(js, h, r, fx);
    case JOP_RUN:    return apply_run(js, h, r, res, fx);
    case JOP_START:  return apply_start(st, js, h, r, fx);
    case JOP_OUTPUT: return apply_output(js, r);
    case JOP_FINISH: return apply_finish(js, h, r, fx);
    case JOP_TICKS:  return apply_ticks(js, h, r, res, fx);
    case JOP_STARTS: return apply_starts(st, js, h, r, res, fx);
    case JOP_FINISHES: return apply_finishes(js, h, r, res, fx);
    default:         return -EINVAL;
    }
}

static void js_init(state_t *st)
{
    st->ns_state[NS_JOBS] = xcalloc(1, sizeof(jstate_t));
}

static void js_free(state_t *st)
{
    jstate_t *js = JS(st);
    if (!js)
        return;
    while (js->jobs.head)
        job_del(js, job_of(js->jobs.head));
    free(js->heap);
    free(js);
    st->ns_state[NS_JOBS] = NULL;
}

/* The runs session sid was running end LOST (and are retried while attempts remain). */
static void js_session_end(state_t *st, uint64_t sid, uint64_t now, effects_t *fx)
{
    jstate_t *js = JS(st);
    for (nentry_t *e = js->jobs.head; e; e = e->next) {
        job_t *j = job_of(e);
        for (jrun_t *x = j->head; x; x = x->next)
            if (x->state == JR_RUNNING && x->sid == sid)
                run_end(j, x, JR_LOST, 0, now, fx);
        trim_runs(j);
        index_job(js, j);
    }
}

/* ---------------------------------------------------------------- snapshot
 * Section (JSNAP_VERSION 1, docs/JOBS.md "Snapshot section"): u32 version, u64 next_id, the
 * job table (ntable: per job its key, then) str cmd, str schedule, u8 conc, u32 timeout,
 * u32 retries, u64 ctime, mtime, last_tick, runs_total, failures, failed_total, skipped,
 * u64 rev, u32 nev, nev x (u8 start, u8 state, u32 exit, u64 run, str node), u32 nruns,
 * nruns x (u64 n, tick, u8 late, state, cancel, u32 attempt, u64 decided, not_before,
 * str node, u64 sid, started, finished, u32 exit, 2 x (blob out, u64 total)). */

static void so_str(snapout_t *o, const char *s) { so_blob(o, s, (uint32_t)strlen(s)); }

static void snap_job(void *arg, snapout_t *o, const nentry_t *e)
{
    const job_t *j = job_of(e);
    so_str(o, j->cmd);
    so_str(o, j->sched);
    so_u8(o, j->conc);
    so_u32(o, j->timeout_s);
    so_u32(o, j->retries);
    so_u64(o, j->ctime_ms);
    so_u64(o, j->mtime_ms);
    so_u64(o, j->last_tick);
    so_u64(o, j->runs_total);
    so_u64(o, j->failures);
    so_u64(o, j->failed_total);
    so_u64(o, j->skipped);
    so_u64(o, j->rev);
    so_u32(o, j->nev);
    for (uint64_t rev = j->rev - j->nev + 1; j->nev && rev <= j->rev; rev++) {
        const jev_t *ev = &j->ev[rev % JOBS_EVENTS_KEPT];
        so_u8(o, ev->start);
        so_u8(o, ev->state);
        so_u32(o, (uint32_t)ev->exit_code);
        so_u64(o, ev->run);
        so_str(o, ev->node);
    }
    so_u32(o, j->nruns);
    for (const jrun_t *x = j->head; x; x = x->next) {
        so_u64(o, x->n);
        so_u64(o, x->tick_ms);
        so_u8(o, x->late);
        so_u8(o, x->state);
        so_u8(o, x->cancel);
        so_u32(o, x->attempt);
        so_u64(o, x->decided_ms);
        so_u64(o, x->not_before_ms);
        so_str(o, x->node);
        so_u64(o, x->sid);
        so_u64(o, x->started_ms);
        so_u64(o, x->finished_ms);
        so_u32(o, (uint32_t)x->exit_code);
        for (int s = 0; s < 2; s++) {
            so_blob(o, x->out[s]->data, x->out[s]->len);
            so_u64(o, x->total[s]);
        }
    }
}

static void js_snapshot(const state_t *st, snapout_t *o)
{
    const jstate_t *js = JS(st);
    so_u32(o, JSNAP_VERSION);
    so_u64(o, js->next_id);
    ntable_snapshot(o, &js->jobs, snap_job, NULL);
}

/* A u32-prefixed byte string of at most max bytes (0 allowed) as a malloc'ed C string, or
 * NULL with the error latched. */
static char *si_text(snapin_t *in, uint32_t max, const char *what)
{
    uint32_t n = si_u32(in);
    if (in->err)
        return NULL;
    if (n > max) {
        si_corrupt(in, what);
        return NULL;
    }
    char *s = xmalloc((size_t)n + 1);
    si_bytes(in, s, n);
    s[n] = 0;
    if (in->err || strlen(s) != n) {
        free(s);
        if (!in->err)
            si_corrupt(in, what);
        return NULL;
    }
    return s;
}

static int si_node(snapin_t *in, char node[JOBS_NODE_MAX])
{
    char *s = si_text(in, JOBS_NODE_MAX - 1, "jobs: a bad node name");
    if (!s)
        return in->err;
    memcpy(node, s, strlen(s) + 1);
    free(s);
    return 0;
}

static blob_t *si_out(snapin_t *in)
{
    uint32_t n = si_u32(in);
    if (in->err)
        return NULL;
    if (n > JOBS_OUT_MAX) {
        si_corrupt(in, "jobs: run output over the cap");
        return NULL;
    }
    blob_t *b = blob_xnew(NULL, n);
    si_bytes(in, b->data, n);
    if (in->err) {
        blob_unref(b);
        return NULL;
    }
    return b;
}

static int restore_job(void *arg, snapin_t *in, const nkey_t *k)
{
    jstate_t *js = arg;
    job_t *j = xcalloc(1, sizeof(*j));
    ntable_add(&js->jobs, &j->ent, k->name, k->len, k->id);
    if (!(j->cmd = si_text(in, JOBS_CMD_MAX, "jobs: a bad cmd")))
        return in->err;
    char *sched = si_text(in, CRON_TEXT_MAX, "jobs: a bad schedule");
    if (!sched)
        return in->err;
    snprintf(j->sched, sizeof(j->sched), "%s", sched);
    free(sched);
    if (j->sched[0]) {
        if (cron_parse(j->sched, strlen(j->sched), &j->cron, NULL) < 0)
            return si_corrupt(in, "jobs: a schedule that does not parse");
        j->has_sched = 1;
    }
    j->conc = si_u8(in);
    j->timeout_s = si_u32(in);
    j->retries = si_u32(in);
    j->ctime_ms = si_u64(in);
    j->mtime_ms = si_u64(in);
    j->last_tick = si_u64(in);
    j->runs_total = si_u64(in);
    j->failures = si_u64(in);
    j->failed_total = si_u64(in);
    j->skipped = si_u64(in);
    j->rev = si_u64(in);
    uint32_t nev = si_u32(in);
    if (in->err)
        return in->err;
    if (nev > JOBS_EVENTS_KEPT || nev > j->rev)
        return si_corrupt(in, "jobs: more events than revisions or than are kept");
    if (nev)
        j->ev = xcalloc(JOBS_EVENTS_KEPT, sizeof(jev_t));
    for (uint32_t i = 0; i < nev; i++) {
        jev_t *ev = &j->ev[(j->rev - nev + 1 + i) % JOBS_EVENTS_KEPT];
        ev->rev = j->rev - nev + 1 + i;
        ev->start = si_u8(in);
        ev->state = si_u8(in);
        ev->exit_code = (int32_t)si_u32(in);
        ev->run = si_u64(in);
        if (si_node(in, ev->node) < 0)
            return in->err;
        j->nev++;
    }
    uint32_t nruns = si_u32(in);
    if (in->err)
        return in->err;
    if (nruns > JOBS_RUNS_KEPT + JOBS_ACTIVE_MAX + 1)
        return si_corrupt(in, "jobs: more runs than are kept");
    for (uint32_t i = 0; i < nruns; i++) {
        jrun_t *x = xcalloc(1, sizeof(*x));
        x->prev = j->tail;
        if (j->tail)
            j->tail->next = x;
        else
            j->head = x;
        j->tail = x;
        j->nruns++;
        x->out[0] = x->out[1] = NULL;
        x->n = si_u64(in);
        x->tick_ms = si_u64(in);
        x->late = si_u8(in);
        x->state = si_u8(in);
        x->cancel = si_u8(in);
        x->attempt = si_u32(in);
        x->decided_ms = si_u64(in);
        x->not_before_ms = si_u64(in);
        if (si_node(in, x->node) < 0)
            return in->err;
        x->sid = si_u64(in);
        x->started_ms = si_u64(in);
        x->finished_ms = si_u64(in);
        x->exit_code = (int32_t)si_u32(in);
        for (int s = 0; s < 2; s++) {
            if (!(x->out[s] = si_out(in)))
                return in->err;
            x->total[s] = si_u64(in);
        }
        if (active_state(x->state))
            j->active++;
    }
    return in->err;
}

static int js_restore(state_t *st, snapin_t *in)
{
    jstate_t *js = JS(st);
    if (si_u32(in) != JSNAP_VERSION)
        return in->err ? in->err : -QERR_FORMAT;
    js->next_id = si_u64(in);
    int rc = ntable_restore(&js->jobs, in, js->next_id, "jobs", restore_job, js);
    if (rc < 0)
        return rc;
    for (nentry_t *e = js->jobs.head; e; e = e->next)
        index_job(js, job_of(e));
    const char *why = jobs_sm_verify(st);
    if (why)
        return si_corrupt(in, why);
    /* parked `.events` reads re-check (events may be in the entries the snapshot replaced) */
    effects_add(&st->outbox, EFF_CONFIG_REV, NS_JOBS, 0, 0)->u.config.rev = 0;
    return 0;
}

/* ---------------------------------------------------------------- invariants */

static const char *verify_run(const state_t *st, const job_t *j, const jrun_t *x)
{
    if (!x->out[0] || !x->out[1])
        return "jobs: a run without its output";
    if (x->n == 0 || x->n > j->runs_total || (x->prev && x->prev->n >= x->n))
        return "jobs: run numbers out of order or above the runs created";
    if (x->state < JR_PENDING || x->state > JR_KILLED || x->late > 1 || x->cancel > 1)
        return "jobs: a run state out of range";
    if (x->attempt < 1 || x->attempt > JOBS_RETRIES_MAX + 1)
        return "jobs: a run attempt out of range";
    if (x->out[0]->len > JOBS_OUT_MAX || x->out[1]->len > JOBS_OUT_MAX ||
        x->total[0] < x->out[0]->len || x->total[1] < x->out[1]->len)
        return "jobs: run output over the cap, or more kept than produced";
    if (memchr(x->node, 0, sizeof(x->node)) == NULL)
        return "jobs: a run node name without its end";
    if (x->decided_ms > st->now_ms || x->tick_ms > x->decided_ms)
        return "jobs: a run decided at a time to come, or before its tick";
    if (x->state == JR_PENDING &&
        (x->started_ms || x->finished_ms || x->sid || x->node[0] || x->cancel))
        return "jobs: a pending run that started";
    if (x->state == JR_RUNNING) {
        if (!session_find(&st->sessions, x->sid))
            return "jobs: a running run of a session that is not live";
        if (!x->started_ms || x->finished_ms || x->started_ms > st->now_ms)
            return "jobs: a running run without its start, or with an end";
    }
    if (!active_state(x->state) && (x->finished_ms < x->started_ms || x->finished_ms > st->now_ms))
        return "jobs: a run that ended before it started, or at a time to come";
    return NULL;
}

/* The index agrees with the jobs (index_job's contract) and the heap is ordered. */
static const char *verify_index(const jstate_t *js)
{
    size_t inheap = 0, inactive = 0;
    for (const nentry_t *e = js->jobs.head; e; e = e->next) {
        const job_t *j = job_of(e);
        uint64_t due = due_of(j);
        if (due ? !j->hpos || j->hpos > js->hn || js->heap[j->hpos - 1] != j || j->due != due
                : j->hpos != 0)
            return "jobs: the index by next fire time disagrees with a job";
        inheap += j->hpos != 0;
        if (j->in_active != (j->active > 0))
            return "jobs: the list of active jobs disagrees with a job";
        inactive += j->in_active;
    }
    if (inheap != js->hn)
        return "jobs: the index by next fire time holds a job that is not in the table";
    for (size_t i = 1; i < js->hn; i++)
        if (hless(js->heap[i], js->heap[(i - 1) / 2]))
            return "jobs: the index by next fire time is out of order";
    size_t n = 0;
    for (const job_t *j = js->ahead; j; j = j->anext) {
        if (++n > inactive || !j->in_active || (j->anext ? j->anext->aprev != j : js->atail != j))
            return "jobs: a broken list of active jobs";
    }
    if (n != inactive || (!js->ahead && js->atail))
        return "jobs: the list of active jobs misses a job";
    return NULL;
}

const char *jobs_sm_verify(const state_t *st)
{
    const jstate_t *js = JS(st);
    for (const nentry_t *e = js->jobs.head; e; e = e->next) {
        const job_t *j = job_of(e);
        if (e->id > js->next_id || names_check(e->name, e->namelen, 0) < 0 ||
            jobs_reserved(e->name, e->namelen))
            return "jobs: a job id above the ids handed out, or a bad name";
        if (!j->cmd || strlen(j->cmd) > JOBS_CMD_MAX)
            return "jobs: a bad cmd";
        if (j->conc > JC_REPLACE || j->timeout_s > JOBS_TIMEOUT_MAX ||
            j->retries > JOBS_RETRIES_MAX)
            return "jobs: a setting out of range";
        if (j->has_sched != (j->sched[0] != 0))
            return "jobs: a schedule flag that disagrees with its text";
        if (j->ctime_ms > j->mtime_ms || j->mtime_ms > st->now_ms || j->last_tick > st->now_ms)
            return "jobs: a job changed before it was made, or a tick decided ahead of time";
        if (j->nev > JOBS_EVENTS_KEPT || j->nev > j->rev || (j->nev && !j->ev))
            return "jobs: more events kept than revisions";
        for (uint64_t rev = j->rev - j->nev + 1; j->nev && rev <= j->rev; rev++) {
            const jev_t *ev = &j->ev[rev % JOBS_EVENTS_KEPT];
            if (ev->rev != rev || ev->start > 1 || !memchr(ev->node, 0, sizeof(ev->node)))
                return "jobs: an event ring out of revision order";
        }
        uint32_t n = 0, active = 0, finished = 0;
        for (const jrun_t *x = j->head; x; x = x->next) {
            const char *why = verify_run(st, j, x);
            if (why)
                return why;
            n++;
            active += active_state(x->state);
            finished += !active_state(x->state);
            if (x->next ? x->next->prev != x : j->tail != x)
                return "jobs: a broken run list";
        }
        if (n != j->nruns || active != j->active || active > JOBS_ACTIVE_MAX ||
            finished > JOBS_RUNS_KEPT)
            return "jobs: run counts that disagree with the runs";
    }
    return verify_index(js);
}

void jobs_sm_check(const state_t *st)
{
    const jstate_t *js = JS(st);
    ASSERT(js);
    ntable_check(&js->jobs);
    SM_ASSERT_VERIFIED(jobs_sm_verify(st));
}

/* ---------------------------------------------------------------- read API */

static void view_job(const job_t *j, job_view_t *v)
{
    v->id = j->ent.id;
    v->name = j->ent.name;
    v->cmd = j->cmd;
    v->schedule = j->sched;
    v->cron = j->has_sched ? &j->cron : NULL;
    v->timeout_s = j->timeout_s;
    v->retries = j->retries;
    v->conc = j->conc;
    v->ctime_ms = j->ctime_ms;
    v->mtime_ms = j->mtime_ms;
    v->last_tick = j->last_tick;
    v->runs_total = j->runs_total;
    v->failures = j->failures;
    v->failed_total = j->failed_total;
    v->skipped = j->skipped;
    v->active = j->active;
    v->rev = j->rev;
}

static void view_run(const jrun_t *x, run_view_t *v)
{
    v->n = x->n;
    v->tick_ms = x->tick_ms;
    v->late = x->late;
    v->state = x->state;
    v->cancel = x->cancel;
    v->attempt = x->attempt;
    v->decided_ms = x->decided_ms;
    v->not_before_ms = x->not_before_ms;
    v->node = x->node;
    v->sid = x->sid;
    v->started_ms = x->started_ms;
    v->finished_ms = x->finished_ms;
    v->exit_code = x->exit_code;
    for (int s = 0; s < 2; s++) {
        v->out[s] = x->out[s];
        v->total[s] = x->total[s];
    }
}

static const job_t *find_id(const state_t *st, uint64_t id)
{
    return job_of(ntable_find_id(&JS(st)->jobs, id));
}

int jobs_sm_get(const state_t *st, const char *name, size_t len, job_view_t *v)
{
    const job_t *j = job_of(ntable_find(&JS(st)->jobs, name, len));
    if (!j)
        return -ENOENT;
    view_job(j, v);
    return 0;
}

int jobs_sm_get_id(const state_t *st, uint64_t id, job_view_t *v)
{
    const job_t *j = find_id(st, id);
    if (!j)
        return -ENOENT;
    view_job(j, v);
    return 0;
}

int jobs_sm_each(const state_t *st, int (*fn)(void *arg, const job_view_t *v), void *arg)
{
    for (const nentry_t *e = JS(st)->jobs.head; e; e = e->next) {
        job_view_t v;
        view_job(job_of(e), &v);
        int rc = fn(arg, &v);
        if (rc)
            return rc;
    }
    return 0;
}

int jobs_sm_each_run(const state_t *st, uint64_t job, int (*fn)(void *arg, const run_view_t *v),
                     void *arg)
{
    const job_t *j = find_id(st, job);
    if (!j)
        return -ENOENT;
    for (const jrun_t *x = j->head; x; x = x->next) {
        run_view_t v;
        view_run(x, &v);
        int rc = fn(arg, &v);
        if (rc)
            return rc;
    }
    return 0;
}

int jobs_sm_run(const state_t *st, uint64_t job, uint64_t n, run_view_t *v)
{
    const job_t *j = find_id(st, job);
    const jrun_t *x = j ? run_find(j, n) : NULL;
    if (!x)
        return -ENOENT;
    view_run(x, v);
    return 0;
}

uint64_t jobs_sm_next_due(const state_t *st)
{
    const jstate_t *js = JS(st);
    return js->hn ? js->heap[0]->due : 0;
}

/* The heap's subtree at slot i holds no key below slot i's: it is walked only while due. */
static int each_due(const jstate_t *js, size_t i, uint64_t now,
                    int (*fn)(void *arg, const job_view_t *v), void *arg)
{
    if (i >= js->hn || js->heap[i]->due > now)
        return 0;
    job_view_t v;
    view_job(js->heap[i], &v);
    int rc = fn(arg, &v);
    if (!rc)
        rc = each_due(js, 2 * i + 1, now, fn, arg);
    if (!rc)
        rc = each_due(js, 2 * i + 2, now, fn, arg);
    return rc;
}

int jobs_sm_each_due(const state_t *st, uint64_t now, int (*fn)(void *arg, const job_view_t *v),
                     void *arg)
{
    return each_due(JS(st), 0, now, fn, arg);
}

int jobs_sm_each_active(const state_t *st, int (*fn)(void *arg, const job_view_t *v), void *arg)
{
    for (const job_t *j = JS(st)->ahead; j; j = j->anext) {
        job_view_t v;
        view_job(j, &v);
        int rc = fn(arg, &v);
        if (rc)
            return rc;
    }
    return 0;
}

uint64_t jobs_next_tick(const job_view_t *v)
{
    return v->cron && v->cmd[0] ? cron_next(v->cron, v->last_tick) : 0;
}

uint64_t jobs_due_tick(const job_view_t *v, uint64_t now)
{
    uint64_t t = jobs_next_tick(v);
    if (!t || t > now)
        return 0;
    uint64_t due = 1;
    for (uint64_t x = cron_next(v->cron, t); x && x <= now && due <= JOBS_CATCHUP;
         x = cron_next(v->cron, x))
        due++;
    return due <= JOBS_CATCHUP ? t : cron_prev_le(v->cron, now);
}

int jobs_events_stale(const state_t *st, uint64_t job, uint64_t after)
{
    const job_t *j = find_id(st, job);
    return j && after < j->rev - j->nev;
}

/* Escapes p for an event line (room for 4 bytes per input byte + 1); returns the length. */
static size_t escape(const char *p, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (const unsigned char *c = (const unsigned char *)p; *c; c++) {
        if (*c == '\\' || *c == '\n') {
            out[n++] = '\\';
            out[n++] = *c == '\n' ? 'n' : '\\';
        } else if (*c < 0x20 || *c == ' ') {
            out[n++] = '\\';
            out[n++] = 'x';
            out[n++] = hex[*c >> 4];
            out[n++] = hex[*c & 15];
        } else {
            out[n++] = (char)*c;
        }
    }
    out[n] = 0;
    return n;
}

int jobs_read_events(const state_t *st, uint64_t job, uint64_t *cursor, char *buf, size_t size)
{
    const job_t *j = find_id(st, job);
    if (!j)
        return -ENOENT;
    if (*cursor < j->rev - j->nev)
        return -ESTALE;
    size_t used = 0;
    char name[4 * NAME_MAX_BYTES + 1], node[4 * JOBS_NODE_MAX + 1];
    escape(j->ent.name, name);
    for (uint64_t rev = *cursor + 1; rev <= j->rev; rev++) {
        const jev_t *ev = &j->ev[rev % JOBS_EVENTS_KEPT];
        char line[JOBS_EVENT_LINE_MAX + 4 * JOBS_NODE_MAX];
        int n;
        escape(ev->node, node);
        if (ev->start)
            n = snprintf(line, sizeof(line), "%llu start %s %llu %s\n",
                         (unsigned long long)rev, name, (unsigned long long)ev->run, node);
        else
            n = snprintf(line, sizeof(line), "%llu end %s %llu %s %d\n",
                         (unsigned long long)rev, name, (unsigned long long)ev->run,
                         jobs_state_name(ev->state), ev->exit_code);
        ASSERT(n > 0 && (size_t)n < sizeof(line));
        if (used + (size_t)n > size)
            break;
        memcpy(buf + used, line, (size_t)n);
        used += (size_t)n;
        *cursor = rev;
    }
    return (int)used;
}

/* ---------------------------------------------------------------- encoders */

static void begin(cmdbuf_t *b, uint8_t op, uint64_t now, const char *job)
{
    cmd_begin(b, op, NS_JOBS, now);
    cmd_str(b, job);
}

void jobs_cmd_mkdir(cmdbuf_t *b, uint64_t now, const char *job)
{
    begin(b, JOP_MKDIR, now, job);
}

void jobs_cmd_rmdir(cmdbuf_t *b, uint64_t now, const char *job)
{
    begin(b, JOP_RMDIR, now, job);
}

void jobs_cmd_set(cmdbuf_t *b, uint64_t now, const char *job, uint8_t which, const void *text,
                  size_t len)
{
    begin(b, JOP_SET, now, job);
    cmd_u8(b, which);
    cmd_bytes(b, text, len);
}

void jobs_cmd_tick(cmdbuf_t *b, uint64_t now, const char *job, uint64_t tick)
{
    begin(b, JOP_TICK, now, job);
    cmd_u64(b, tick);
}

void jobs_cmd_run(cmdbuf_t *b, uint64_t now, const char *job)
{
    begin(b, JOP_RUN, now, job);
}

void jobs_cmd_start(cmdbuf_t *b, uint64_t now, const char *job, uint64_t run, uint64_t sid)
{
    begin(b, JOP_START, now, job);
    cmd_u64(b, run);
    cmd_u64(b, sid);
}

void jobs_cmd_output(cmdbuf_t *b, uint64_t now, const char *job, uint64_t run, uint64_t sid,
                     uint8_t stream, uint64_t total, const void *chunk, size_t len)
{
    begin(b, JOP_OUTPUT, now, job);
    cmd_u64(b, run);
    cmd_u64(b, sid);
    cmd_u8(b, stream);
    cmd_u64(b, total);
    cmd_bytes(b, chunk, len);
}

void jobs_cmd_finish(cmdbuf_t *b, uint64_t now, const char *job, uint64_t run, uint64_t sid,
                     uint8_t state, int32_t exit_code)
{
    begin(b, JOP_FINISH, now, job);
    cmd_u64(b, run);
    cmd_u64(b, sid);
    cmd_u8(b, state);
    cmd_u32(b, (uint32_t)exit_code);
}

void jobs_cmd_batch(cmdbuf_t *b, uint64_t now, uint8_t op, uint64_t sid, uint32_t n,
                    const char *const *jobs, const uint64_t *v)
{
    ASSERT((op == JOP_TICKS || op == JOP_STARTS) && n >= 1 && n <= JOBS_BATCH_MAX);
    cmd_begin(b, op, NS_JOBS, now);
    if (op == JOP_STARTS)
        cmd_u64(b, sid);
    cmd_u32(b, n);
    for (uint32_t i = 0; i < n; i++) {
        cmd_str(b, jobs[i]);
        cmd_u64(b, v[i]);
    }
}

size_t jobs_fin_size(const jobs_fin_t *f)
{
    size_t n = 4 + strlen(f->job) + 8 + 1 + 4 + 1;
    for (int s = 0; s < 2; s++)
        if (f->total[s])
            n += 8 + 4 + f->len[s];
    return n;
}

void jobs_cmd_finishes(cmdbuf_t *b, uint64_t now, uint64_t sid, uint32_t n, const jobs_fin_t *f)
{
    ASSERT(n >= 1 && n <= JOBS_BATCH_MAX);
    cmd_begin(b, JOP_FINISHES, NS_JOBS, now);
    cmd_u64(b, sid);
    cmd_u32(b, n);
    for (uint32_t i = 0; i < n; i++) {
        cmd_str(b, f[i].job);
        cmd_u64(b, f[i].run);
        cmd_u8(b, f[i].state);
        cmd_u32(b, (uint32_t)f[i].exit_code);
        cmd_u8(b, (uint8_t)((f[i].total[0] ? 1 : 0) | (f[i].total[1] ? 2 : 0)));
        for (int s = 0; s < 2; s++)
            if (f[i].total[s]) {
                cmd_u64(b, f[i].total[s]);
                cmd_bytes(b, f[i].out[s], f[i].len[s]);
            }
    }
}

uint64_t jobs_end_due(uint64_t first_ms, uint64_t last_ms, int running)
{
    uint64_t a = running ? first_ms + JOBS_END_HOLD_MS : first_ms;
    uint64_t b = last_ms ? last_ms + JOBS_END_GAP_MS : 0;
    return a > b ? a : b;
}

int jobs_cmd_frees(const void *cmd, size_t len)
{
    cmdrd_t r;
    cmd_hdr_t h;
    if (cmd_read_hdr(&r, cmd, len, &h) < 0 || h.ns != NS_JOBS)
        return 0;
    if (h.op == JOP_RMDIR || h.op == JOP_FINISH)
        return 1;
    if (h.op != JOP_FINISHES)
        return 0;
    (void)cmd_get_u64(&r);
    uint32_t n = cmd_get_u32(&r);
    if (r.err || n == 0 || n > JOBS_BATCH_MAX)
        return 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *name;
        (void)cmd_get_path(&r, &name);
        (void)cmd_get_u64(&r);
        (void)cmd_get_u8(&r);
        (void)cmd_get_u32(&r);
        uint8_t streams = cmd_get_u8(&r);
        if (r.err || streams > 3)
            return 0;
        for (int s = 0; s < 2; s++) {
            if (!(streams >> s & 1))
                continue;
            const uint8_t *p;
            (void)cmd_get_u64(&r);
            if (cmd_get_bytes(&r, &p) != 0 || r.err)
                return 0;               /* keeps output: it grows the state */
        }
    }
    return r.off == r.len;
}

int jobs_result_bit(const sm_result_t *res, uint32_t i)
{
    return res->code == 0 && res->len == JOBS_BATCH_MAX / 8 && i < JOBS_BATCH_MAX &&
           (res->data[i / 8] >> (i % 8)) & 1;
}

uint64_t jobs_result_run(const sm_result_t *res)
{
    uint64_t n;
    ASSERT(res->code == 0 && res->len == 8);
    memcpy(&n, res->data, 8);
    return n;
}

const ns_sm_t jobs_sm = {
    .init = js_init,
    .free = js_free,
    .apply = js_apply,
    .session_end = js_session_end,
    .snapshot = js_snapshot,
    .restore = js_restore,
    .check = jobs_sm_check,
};
