/* tests/unit/test_jobs.c — the jobs/ state machine (fs/jobs_sm.c) driven through the state's
 * apply with the encoders of fs/jobs_sm.h, every invariant checked after every apply
 * (tests/unit/smrun.h): settings and their refusals, each tick decided exactly once (again,
 * earlier, ahead of time, not a fire time), a run started once and only by a live session,
 * output kept up to the cap with the total produced, forbid / allow / replace, a runner's
 * session end making its run lost and retried with exponential backoff until the retries
 * are spent, missed ticks marked late and the catch-up policy, the `.events` lines, refused
 * malformed commands that change nothing (same snapshot bytes), and byte-identical
 * snapshots through a restore; FINISHES (a batch of run ends with their output) leaving the
 * same state as the OUTPUT and FINISH commands it replaces, a lost end for a run whose end
 * was dropped, which commands a full disk still logs, when queued ends are proposed, and
 * the scheduler's index (by
 * next fire time, and of active jobs) agreeing with a full scan through random commands and
 * a restore. No FUSE code. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fs/cmd.h"
#include "fs/jobs_sm.h"
#include "fs/ns_sm.h"
#include "fs/session_sm.h"
#include "fs/state.h"
#include "tests/unit/check.h"
#include "tests/unit/smrun.h"
#include "tests/unit/statesnap.h"

#define T0 1764745200000ull   /* 2025-12-03T07:00:00Z, a whole hour */

typedef struct shard {
    state_t *st;
    uint64_t idx;
    int nrev;
} shard_t;

static void observe(void *arg, effect_t *e)
{
    shard_t *sh = arg;
    if (e->kind == EFF_CONFIG_REV && e->ns == NS_JOBS)
        sh->nrev++;
}

static shard_t *fresh(void)
{
    shard_t *sh = calloc(1, sizeof(*sh));
    sh->st = smrun_state(observe, sh);
    return sh;
}

static void done(shard_t *sh)
{
    state_free(sh->st);
    free(sh);
}

static int run(shard_t *sh, cmdbuf_t *b, sm_result_t *res)
{
    return smrun_apply(sh->st, &sh->idx, b, res);
}

static uint64_t open_session(shard_t *sh, uint64_t now, const char *node)
{
    cmdbuf_t b;
    sm_result_t res;
    session_cmd_open(&b, now, node, 42, 86400000);
    if (run(sh, &b, &res) != 0)
        return 0;
    uint64_t sid;
    memcpy(&sid, res.data, 8);
    return sid;
}

static int end_session(shard_t *sh, uint64_t sid, uint64_t now)
{
    cmdbuf_t b;
    session_cmd_end(&b, now, sid, 0);
    return run(sh, &b, NULL);
}

static int mk(shard_t *sh, const char *job, uint64_t now)
{
    cmdbuf_t b;
    jobs_cmd_mkdir(&b, now, job);
    return run(sh, &b, NULL);
}

static int set(shard_t *sh, const char *job, uint8_t which, const char *text, uint64_t now)
{
    cmdbuf_t b;
    jobs_cmd_set(&b, now, job, which, text, strlen(text));
    return run(sh, &b, NULL);
}

static int tick(shard_t *sh, const char *job, uint64_t t, uint64_t now)
{
    cmdbuf_t b;
    jobs_cmd_tick(&b, now, job, t);
    return run(sh, &b, NULL);
}

static int start(shard_t *sh, const char *job, uint64_t n, uint64_t sid, uint64_t now)
{
    cmdbuf_t b;
    jobs_cmd_start(&b, now, job, n, sid);
    return run(sh, &b, NULL);
}

static int finish(shard_t *sh, const char *job, uint64_t n, uint64_t sid, uint8_t st, int ex,
                  uint64_t now)
{
    cmdbuf_t b;
    jobs_cmd_finish(&b, now, job, n, sid, st, ex);
    return run(sh, &b, NULL);
}

static int manual(shard_t *sh, const char *job, uint64_t now, uint64_t *n)
{
    cmdbuf_t b;
    sm_result_t res;
    jobs_cmd_run(&b, now, job);
    int rc = run(sh, &b, &res);
    if (rc == 0 && n)
        *n = jobs_result_run(&res);
    return rc;
}

static job_view_t view(shard_t *sh, const char *job)
{
    job_view_t v;
    memset(&v, 0, sizeof(v));
    jobs_sm_get(sh->st, job, strlen(job), &v);
    return v;
}

static run_view_t rview(shard_t *sh, const char *job, uint64_t n)
{
    run_view_t v;
    memset(&v, 0, sizeof(v));
    jobs_sm_run(sh->st, view(sh, job).id, n, &v);
    return v;
}

/* A job "j" that runs "true" every second from T0. */
static shard_t *every_second(uint64_t *sid)
{
    shard_t *sh = fresh();
    *sid = open_session(sh, T0, "node-a");
    if (mk(sh, "j", T0) || set(sh, "j", JSET_CMD, "true", T0) ||
        set(sh, "j", JSET_SCHEDULE, "@every 1s\n", T0)) {
        done(sh);
        return NULL;
    }
    return sh;
}

TEST(settings_and_refusals)
{
    shard_t *sh = fresh();
    CHECK_EQ(mk(sh, "backup", T0), 0);
    CHECK_EQ(mk(sh, "backup", T0), -EEXIST);
    CHECK_EQ(mk(sh, ".events", T0), -EINVAL);
    CHECK_EQ(set(sh, "nope", JSET_CMD, "true", T0), -ENOENT);
    job_view_t v = view(sh, "backup");
    CHECK(v.retries == JOBS_RETRIES_DEFAULT && v.conc == JC_FORBID && v.timeout_s == 0);
    CHECK(!v.cron && v.cmd[0] == 0 && jobs_next_tick(&v) == 0);
    CHECK_EQ(set(sh, "backup", JSET_SCHEDULE, "*/15 * * * *\n", T0), 0);
    CHECK_EQ(set(sh, "backup", JSET_SCHEDULE, "61 * * * *", T0), -EINVAL);
    CHECK_EQ(set(sh, "backup", JSET_TIMEOUT, "30\n", T0), 0);
    CHECK_EQ(set(sh, "backup", JSET_TIMEOUT, "-1", T0), -EINVAL);
    CHECK_EQ(set(sh, "backup", JSET_TIMEOUT, "999999999", T0), -EINVAL);
    CHECK_EQ(set(sh, "backup", JSET_RETRIES, "0", T0), 0);
    CHECK_EQ(set(sh, "backup", JSET_RETRIES, "21", T0), -EINVAL);
    CHECK_EQ(set(sh, "backup", JSET_CONCURRENCY, "replace\n", T0), 0);
    CHECK_EQ(set(sh, "backup", JSET_CONCURRENCY, "sometimes", T0), -EINVAL);
    CHECK_EQ(set(sh, "backup", 9, "x", T0), -EINVAL);
    v = view(sh, "backup");
    CHECK(strcmp(v.schedule, "*/15 * * * *") == 0 && v.timeout_s == 30 && v.retries == 0 &&
          v.conc == JC_REPLACE);
    /* without a cmd nothing is scheduled, and a manual run is refused */
    CHECK_EQ(jobs_next_tick(&v), 0);
    CHECK_EQ(manual(sh, "backup", T0, NULL), -ENOEXEC);
    CHECK_EQ(set(sh, "backup", JSET_CMD, "tar czf /tmp/x.tgz /etc", T0), 0);
    v = view(sh, "backup");
    CHECK_EQ(jobs_next_tick(&v), T0 + 15 * 60000);
    /* an empty schedule turns scheduling off */
    CHECK_EQ(set(sh, "backup", JSET_SCHEDULE, "\n", T0), 0);
    v = view(sh, "backup");
    CHECK(!v.cron && jobs_next_tick(&v) == 0);
    cmdbuf_t b;
    jobs_cmd_rmdir(&b, T0, "backup");
    CHECK_EQ(run(sh, &b, NULL), 0);
    CHECK_EQ(view(sh, "backup").id, 0);
    done(sh);
}

TEST(each_tick_is_decided_once)
{
    uint64_t sid;
    shard_t *sh = every_second(&sid);
    CHECK(sh);
    job_view_t v = view(sh, "j");
    CHECK_EQ(jobs_next_tick(&v), T0 + 1000);
    CHECK_EQ(jobs_due_tick(&v, T0 + 999), 0);
    CHECK_EQ(jobs_due_tick(&v, T0 + 1000), T0 + 1000);
    CHECK_EQ(tick(sh, "j", T0 + 1000, T0 + 999), -EAGAIN);     /* ahead of its time */
    CHECK_EQ(tick(sh, "j", T0 + 1500, T0 + 1005), -EAGAIN);
    CHECK_EQ(tick(sh, "j", T0 + 1001, T0 + 1005), -EINVAL);    /* not a fire time */
    CHECK_EQ(tick(sh, "j", T0 + 1000, T0 + 1010), 0);
    /* a second scheduler (a new leader) deciding the same tick, or an older one: refused */
    CHECK_EQ(tick(sh, "j", T0 + 1000, T0 + 1020), -EALREADY);
    CHECK_EQ(tick(sh, "j", T0, T0 + 1020), -EALREADY);
    v = view(sh, "j");
    CHECK(v.runs_total == 1 && v.active == 1 && v.last_tick == T0 + 1000);
    run_view_t r = rview(sh, "j", 1);
    CHECK(r.state == JR_PENDING && r.tick_ms == T0 + 1000 && !r.late && r.attempt == 1);
    /* the run is started once, by a live session, and recorded with its node */
    CHECK_EQ(start(sh, "j", 1, sid + 7, T0 + 1030), -ENOLCK);
    CHECK_EQ(start(sh, "j", 1, sid, T0 + 1030), 0);
    CHECK_EQ(start(sh, "j", 1, sid, T0 + 1031), -EALREADY);
    r = rview(sh, "j", 1);
    CHECK(r.state == JR_RUNNING && strcmp(r.node, "node-a") == 0 && r.started_ms == T0 + 1030);
    CHECK_EQ(finish(sh, "j", 1, sid + 1, JR_OK, 0, T0 + 1040), -ESTALE);
    CHECK_EQ(finish(sh, "j", 1, sid, JR_OK, 0, T0 + 1040), 0);
    CHECK_EQ(finish(sh, "j", 1, sid, JR_OK, 0, T0 + 1041), -ESTALE);
    r = rview(sh, "j", 1);
    CHECK(r.state == JR_OK && r.finished_ms == T0 + 1040 && r.exit_code == 0);
    CHECK_EQ(view(sh, "j").active, 0);
    done(sh);
}

TEST(missed_ticks_run_late_and_catch_up_is_bounded)
{
    uint64_t sid;
    shard_t *sh = every_second(&sid);
    CHECK(sh);
    /* 3 s late: the first missed tick is decided first, marked late */
    job_view_t v = view(sh, "j");
    CHECK_EQ(jobs_due_tick(&v, T0 + 4000), T0 + 1000);
    CHECK_EQ(tick(sh, "j", T0 + 1000, T0 + 4000), 0);
    CHECK(rview(sh, "j", 1).late);
    CHECK_EQ(set(sh, "j", JSET_CONCURRENCY, "allow", T0 + 4000), 0);
    CHECK_EQ(tick(sh, "j", T0 + 2000, T0 + 4000), 0);
    CHECK_EQ(tick(sh, "j", T0 + 3000, T0 + 4000), 0);
    CHECK_EQ(tick(sh, "j", T0 + 4000, T0 + 4000), 0);
    CHECK(!rview(sh, "j", 4).late);
    CHECK_EQ(view(sh, "j").skipped, 0);
    /* a long outage: beyond JOBS_CATCHUP missed ticks only the newest is decided */
    v = view(sh, "j");
    CHECK_EQ(jobs_due_tick(&v, T0 + 4000 + 20 * 1000 + 300), T0 + 24000);
    CHECK_EQ(tick(sh, "j", T0 + 24000, T0 + 24300), 0);
    v = view(sh, "j");
    CHECK_EQ(v.skipped, 19);
    CHECK(rview(sh, "j", 5).late && rview(sh, "j", 5).tick_ms == T0 + 24000);
    done(sh);
}

TEST(output_is_capped_with_its_total)
{
    uint64_t sid;
    shard_t *sh = every_second(&sid);
    CHECK(sh);
    uint64_t n;
    CHECK_EQ(manual(sh, "j", T0 + 10, &n), 0);
    CHECK_EQ(n, 1);
    CHECK_EQ(rview(sh, "j", 1).tick_ms, 0);
    cmdbuf_t b;
    char *chunk = malloc(700000);
    CHECK(chunk);
    memset(chunk, 'x', 700000);
    jobs_cmd_output(&b, T0 + 20, "j", 1, sid, 1, 700000, chunk, 700000);
    CHECK_EQ(run(sh, &b, NULL), -ESTALE);                    /* not started */
    CHECK_EQ(start(sh, "j", 1, sid, T0 + 20), 0);
    jobs_cmd_output(&b, T0 + 20, "j", 1, sid, 1, 700000, chunk, 700000);
    CHECK_EQ(run(sh, &b, NULL), 0);
    jobs_cmd_output(&b, T0 + 20, "j", 1, sid, 1, 1400000, chunk, 700000);
    CHECK_EQ(run(sh, &b, NULL), 0);
    jobs_cmd_output(&b, T0 + 20, "j", 1, sid, 1, 3000000, "", 0);
    CHECK_EQ(run(sh, &b, NULL), 0);
    jobs_cmd_output(&b, T0 + 20, "j", 1, sid, 2, 5, "oops\n", 5);
    CHECK_EQ(run(sh, &b, NULL), 0);
    jobs_cmd_output(&b, T0 + 20, "j", 1, sid, 3, 5, "oops\n", 5);
    CHECK_EQ(run(sh, &b, NULL), -EINVAL);
    jobs_cmd_output(&b, T0 + 20, "j", 1, sid, 2, 1, "oops\n", 5);  /* total below kept */
    CHECK_EQ(run(sh, &b, NULL), -EINVAL);
    free(chunk);
    run_view_t r = rview(sh, "j", 1);
    CHECK_EQ(r.out[0]->len, JOBS_OUT_MAX);
    CHECK_EQ(r.total[0], 3000000);
    CHECK(r.out[1]->len == 5 && memcmp(r.out[1]->data, "oops\n", 5) == 0);
    CHECK_EQ(finish(sh, "j", 1, sid, JR_FAILED, 2, T0 + 30), 0);
    r = rview(sh, "j", 1);
    CHECK(r.state == JR_FAILED && r.exit_code == 2);
    done(sh);
}

TEST(concurrency_forbid_allow_replace)
{
    uint64_t sid;
    shard_t *sh = every_second(&sid);
    CHECK(sh);
    /* forbid: a tick while a run is active is decided but not run */
    CHECK_EQ(tick(sh, "j", T0 + 1000, T0 + 1000), 0);
    CHECK_EQ(start(sh, "j", 1, sid, T0 + 1001), 0);
    CHECK_EQ(tick(sh, "j", T0 + 2000, T0 + 2000), 0);
    job_view_t v = view(sh, "j");
    CHECK(v.runs_total == 1 && v.skipped == 1 && v.last_tick == T0 + 2000);
    CHECK_EQ(manual(sh, "j", T0 + 2000, NULL), -EBUSY);
    /* allow: runs side by side */
    CHECK_EQ(set(sh, "j", JSET_CONCURRENCY, "allow", T0 + 2000), 0);
    CHECK_EQ(tick(sh, "j", T0 + 3000, T0 + 3000), 0);
    CHECK_EQ(manual(sh, "j", T0 + 3000, NULL), 0);
    CHECK_EQ(view(sh, "j").active, 3);
    /* replace: the pending ones end killed at once, the running one is asked to stop */
    CHECK_EQ(start(sh, "j", 2, sid, T0 + 3001), 0);
    CHECK_EQ(set(sh, "j", JSET_CONCURRENCY, "replace", T0 + 3001), 0);
    CHECK_EQ(tick(sh, "j", T0 + 4000, T0 + 4000), 0);
    CHECK(rview(sh, "j", 1).cancel && rview(sh, "j", 2).cancel);
    CHECK_EQ(rview(sh, "j", 3).state, JR_KILLED);
    CHECK_EQ(rview(sh, "j", 4).state, JR_PENDING);
    CHECK_EQ(finish(sh, "j", 1, sid, JR_KILLED, -9, T0 + 4001), 0);
    CHECK_EQ(finish(sh, "j", 2, sid, JR_KILLED, -9, T0 + 4001), 0);
    v = view(sh, "j");
    CHECK(v.active == 1 && v.failures == 0 && v.runs_total == 4);  /* killed: no retry */
    done(sh);
}

TEST(lost_runs_are_retried_with_backoff)
{
    uint64_t sid;
    shard_t *sh = every_second(&sid);
    CHECK(sh);
    uint64_t other = open_session(sh, T0, "node-b");
    CHECK_EQ(set(sh, "j", JSET_RETRIES, "2", T0), 0);
    CHECK_EQ(tick(sh, "j", T0 + 1000, T0 + 1000), 0);
    CHECK_EQ(start(sh, "j", 1, sid, T0 + 1001), 0);
    int nrev = sh->nrev;
    CHECK_EQ(end_session(sh, sid, T0 + 11000), 0);     /* node-a died */
    CHECK(sh->nrev > nrev);                           /* an end event */
    run_view_t r = rview(sh, "j", 1);
    CHECK(r.state == JR_LOST && r.finished_ms == T0 + 11000);
    r = rview(sh, "j", 2);
    CHECK(r.state == JR_PENDING && r.attempt == 2 && r.tick_ms == T0 + 1000);
    CHECK_EQ(r.not_before_ms, T0 + 11000 + JOBS_BACKOFF_MS);
    CHECK_EQ(start(sh, "j", 2, other, T0 + 11500), -EAGAIN);
    CHECK_EQ(start(sh, "j", 2, other, T0 + 12000), 0);
    CHECK_EQ(finish(sh, "j", 2, other, JR_TIMEOUT, -15, T0 + 13000), 0);
    r = rview(sh, "j", 3);
    CHECK(r.attempt == 3 && r.not_before_ms == T0 + 13000 + 2 * JOBS_BACKOFF_MS);
    CHECK_EQ(start(sh, "j", 3, other, T0 + 15000), 0);
    CHECK_EQ(finish(sh, "j", 3, other, JR_FAILED, 1, T0 + 16000), 0);
    job_view_t v = view(sh, "j");
    CHECK(v.runs_total == 3 && v.active == 0 && v.failures == 3 && v.failed_total == 3);
    /* a success resets the count of failures in a row */
    CHECK_EQ(manual(sh, "j", T0 + 17000, NULL), 0);
    CHECK_EQ(start(sh, "j", 4, other, T0 + 17000), 0);
    CHECK_EQ(finish(sh, "j", 4, other, JR_OK, 0, T0 + 17100), 0);
    CHECK_EQ(view(sh, "j").failures, 0);
    done(sh);
}

TEST(events_lines)
{
    uint64_t sid;
    shard_t *sh = every_second(&sid);
    CHECK(sh);
    CHECK_EQ(tick(sh, "j", T0 + 1000, T0 + 1000), 0);
    CHECK_EQ(start(sh, "j", 1, sid, T0 + 1001), 0);
    CHECK_EQ(finish(sh, "j", 1, sid, JR_FAILED, 3, T0 + 1002), 0);
    char buf[512];
    uint64_t cur = 0, id = view(sh, "j").id;
    int n = jobs_read_events(sh->st, id, &cur, buf, sizeof(buf) - 1);
    CHECK(n > 0);
    buf[n] = 0;
    CHECK(strcmp(buf, "1 start j 1 node-a\n2 end j 1 failed 3\n") == 0);
    CHECK_EQ(cur, 2);
    CHECK_EQ(jobs_read_events(sh->st, id, &cur, buf, sizeof(buf)), 0);
    CHECK_EQ(jobs_read_events(sh->st, id + 9, &cur, buf, sizeof(buf)), -ENOENT);
    /* many more events than are kept: an old cursor is stale (the failed run's retry
     * runs first) */
    CHECK_EQ(start(sh, "j", 2, sid, T0 + 2002), 0);
    CHECK_EQ(finish(sh, "j", 2, sid, JR_OK, 0, T0 + 2002), 0);
    for (int i = 0; i < JOBS_EVENTS_KEPT; i++) {
        uint64_t rn;
        CHECK_EQ(manual(sh, "j", T0 + 2002, &rn), 0);
        CHECK_EQ(start(sh, "j", rn, sid, T0 + 2002), 0);
        CHECK_EQ(finish(sh, "j", rn, sid, JR_OK, 0, T0 + 2002), 0);
    }
    cur = 1;
    CHECK_EQ(jobs_read_events(sh->st, id, &cur, buf, sizeof(buf)), -ESTALE);
    CHECK(jobs_events_stale(sh->st, id, 1));
    /* finished runs beyond the kept count are dropped, oldest first */
    uint64_t count = 0, first = 0;
    for (uint64_t k = 1; k <= view(sh, "j").runs_total; k++)
        if (rview(sh, "j", k).n) {
            count++;
            first = first ? first : k;
        }
    CHECK(count <= JOBS_RUNS_KEPT);
    CHECK_EQ(first, view(sh, "j").runs_total - count + 1);
    done(sh);
}

TEST(rmdir_waits_for_running_runs)
{
    uint64_t sid;
    shard_t *sh = every_second(&sid);
    CHECK(sh);
    CHECK_EQ(manual(sh, "j", T0 + 10, NULL), 0);
    CHECK_EQ(start(sh, "j", 1, sid, T0 + 10), 0);
    cmdbuf_t b;
    jobs_cmd_rmdir(&b, T0 + 20, "j");
    CHECK_EQ(run(sh, &b, NULL), -EBUSY);
    CHECK_EQ(finish(sh, "j", 1, sid, JR_OK, 0, T0 + 30), 0);
    jobs_cmd_rmdir(&b, T0 + 40, "j");
    CHECK_EQ(run(sh, &b, NULL), 0);
    jobs_cmd_rmdir(&b, T0 + 40, "j");
    CHECK_EQ(run(sh, &b, NULL), -ENOENT);
    done(sh);
}

TEST(batches_apply_each_item_on_its_own)
{
    uint64_t sid;
    shard_t *sh = every_second(&sid);
    CHECK(sh);
    CHECK_EQ(mk(sh, "k", T0), 0);
    CHECK_EQ(set(sh, "k", JSET_CMD, "true", T0), 0);
    CHECK_EQ(set(sh, "k", JSET_SCHEDULE, "@every 2s", T0), 0);
    /* j's tick twice (the second is refused: decided once), k's, and a job that is not */
    const char *jobs[] = { "j", "j", "k", "nope" };
    uint64_t ticks[] = { T0 + 1000, T0 + 1000, T0 + 2000, T0 + 1000 };
    cmdbuf_t b;
    sm_result_t res;
    jobs_cmd_batch(&b, T0 + 2000, JOP_TICKS, 0, 4, jobs, ticks);
    CHECK_EQ(run(sh, &b, &res), 0);
    CHECK(jobs_result_bit(&res, 0) && !jobs_result_bit(&res, 1) && jobs_result_bit(&res, 2) &&
          !jobs_result_bit(&res, 3));
    CHECK(view(sh, "j").runs_total == 1 && view(sh, "k").runs_total == 1);
    /* starts: j's run 1 twice (once), k's run 1, a run that is not */
    uint64_t runs[] = { 1, 1, 1, 9 };
    jobs_cmd_batch(&b, T0 + 2000, JOP_STARTS, sid + 5, 4, jobs, runs);
    CHECK_EQ(run(sh, &b, &res), -ENOLCK);              /* not a live session */
    CHECK_EQ(rview(sh, "j", 1).state, JR_PENDING);
    jobs_cmd_batch(&b, T0 + 2000, JOP_STARTS, sid, 4, jobs, runs);
    CHECK_EQ(run(sh, &b, &res), 0);
    CHECK(jobs_result_bit(&res, 0) && !jobs_result_bit(&res, 1) && jobs_result_bit(&res, 2) &&
          !jobs_result_bit(&res, 3));
    CHECK(rview(sh, "j", 1).state == JR_RUNNING && rview(sh, "k", 1).state == JR_RUNNING);
    /* malformed batches change nothing: no item, an item cut short, bytes after the last */
    cmd_begin(&b, JOP_TICKS, NS_JOBS, T0 + 2000);
    cmd_u32(&b, 0);
    CHECK_EQ(run(sh, &b, NULL), -EINVAL);
    jobs_cmd_batch(&b, T0 + 2000, JOP_TICKS, 0, 1, jobs, ticks);
    b.len -= 3;
    CHECK_EQ(run(sh, &b, NULL), -EINVAL);
    jobs_cmd_batch(&b, T0 + 2000, JOP_TICKS, 0, 1, jobs, ticks);
    cmd_u8(&b, 7);
    CHECK_EQ(run(sh, &b, NULL), -EINVAL);
    done(sh);
}

/* Three jobs (allow) with runs started on a session: a1 (run 1), b1 (runs 1, 2: retries 1)
 * and c1 (run 1 pending, not started). */
static shard_t *three_running(uint64_t *sid)
{
    shard_t *sh = fresh();
    *sid = open_session(sh, T0, "node-a");
    const char *names[] = { "a1", "b1", "c1" };
    int bad = !*sid;
    for (int i = 0; i < 3; i++)
        bad |= mk(sh, names[i], T0) || set(sh, names[i], JSET_CMD, "true", T0) ||
               set(sh, names[i], JSET_CONCURRENCY, "allow", T0) ||
               set(sh, names[i], JSET_RETRIES, "1", T0) || manual(sh, names[i], T0 + 1, NULL);
    bad |= manual(sh, "b1", T0 + 1, NULL) || start(sh, "a1", 1, *sid, T0 + 2) ||
           start(sh, "b1", 1, *sid, T0 + 2) || start(sh, "b1", 2, *sid, T0 + 2);
    if (bad) {
        done(sh);
        return NULL;
    }
    return sh;
}

/* The FINISHES of the ends below (a1 ok with output on both streams; b1 run 1 failed, run 2
 * killed; c1 run 1, which is not running, and a run that does not exist). */
static void ends(jobs_fin_t f[5])
{
    memset(f, 0, 5 * sizeof(*f));
    f[0] = (jobs_fin_t){ .job = "a1", .run = 1, .state = JR_OK, .exit_code = 0,
                         .out = { "hi\n", "warn\n" }, .len = { 3, 5 }, .total = { 3, 9 } };
    f[1] = (jobs_fin_t){ .job = "b1", .run = 1, .state = JR_FAILED, .exit_code = 2 };
    f[2] = (jobs_fin_t){ .job = "c1", .run = 1, .state = JR_OK };
    f[3] = (jobs_fin_t){ .job = "b1", .run = 2, .state = JR_KILLED, .exit_code = -15 };
    f[4] = (jobs_fin_t){ .job = "nope", .run = 1, .state = JR_OK };
}

TEST(finishes_batch_equals_output_and_finish)
{
    uint64_t sa, sc;
    shard_t *a = three_running(&sa), *c = three_running(&sc);
    CHECK(a && c && sa == sc);
    jobs_fin_t f[5];
    ends(f);
    /* a: the single commands the runner proposed before (OUTPUT per stream, FINISH) */
    cmdbuf_t b;
    jobs_cmd_output(&b, T0 + 10, "a1", 1, sa, 1, 3, "hi\n", 3);
    CHECK_EQ(run(a, &b, NULL), 0);
    jobs_cmd_output(&b, T0 + 10, "a1", 1, sa, 2, 9, "warn\n", 5);
    CHECK_EQ(run(a, &b, NULL), 0);
    CHECK_EQ(finish(a, "a1", 1, sa, JR_OK, 0, T0 + 10), 0);
    CHECK_EQ(finish(a, "b1", 1, sa, JR_FAILED, 2, T0 + 10), 0);
    CHECK_EQ(finish(a, "c1", 1, sa, JR_OK, 0, T0 + 10), -ESTALE);
    CHECK_EQ(finish(a, "b1", 2, sa, JR_KILLED, -15, T0 + 10), 0);
    /* c: one FINISHES; items 2 and 4 are skipped on their own */
    sm_result_t res;
    int nrev = c->nrev;
    jobs_cmd_finishes(&b, T0 + 10, sc, 5, f);
    size_t one = b.len;
    CHECK_EQ(run(c, &b, &res), 0);
    CHECK(jobs_result_bit(&res, 0) && jobs_result_bit(&res, 1) && !jobs_result_bit(&res, 2) &&
          jobs_result_bit(&res, 3) && !jobs_result_bit(&res, 4));
    CHECK_EQ(c->nrev - nrev, 3);                        /* three end events */
    /* the same state: same runs, output, events, retries (snapshot bytes) */
    char d1[] = "/tmp/qfs-jobs-XXXXXX", d2[] = "/tmp/qfs-jobs-XXXXXX";
    CHECK(mkdtemp(d1) && mkdtemp(d2));
    size_t la, lc;
    char *xa = snap_bytes(a->st, d1, &la), *xc = snap_bytes(c->st, d2, &lc);
    CHECK(xa && xc && la == lc && memcmp(xa, xc, la) == 0);
    free(xa);
    free(xc);
    run_view_t r = rview(c, "a1", 1);
    CHECK(r.state == JR_OK && r.out[0]->len == 3 && r.total[1] == 9 &&
          memcmp(r.out[1]->data, "warn\n", 5) == 0);
    CHECK(rview(c, "b1", 3).state == JR_PENDING && rview(c, "b1", 3).attempt == 2);
    /* the item of a run without output is small: name, run, state, exit, stream bits */
    CHECK_EQ(jobs_fin_size(&f[1]), 4 + 2 + 8 + 1 + 4 + 1);
    CHECK_EQ(one, (size_t)CMD_HDR_LEN + 8 + 4 + jobs_fin_size(&f[0]) + jobs_fin_size(&f[1]) +
                      jobs_fin_size(&f[2]) + jobs_fin_size(&f[3]) + jobs_fin_size(&f[4]));
    /* again: nothing is running any more, nothing is applied */
    jobs_cmd_finishes(&b, T0 + 11, sc, 5, f);
    CHECK_EQ(run(c, &b, &res), 0);
    for (uint32_t i = 0; i < 5; i++)
        CHECK(!jobs_result_bit(&res, i));
    done(a);
    done(c);
}

TEST(malformed_finishes_change_nothing)
{
    uint64_t sid;
    shard_t *sh = three_running(&sid);
    CHECK(sh);
    char d1[] = "/tmp/qfs-jobs-XXXXXX", d2[] = "/tmp/qfs-jobs-XXXXXX";
    CHECK(mkdtemp(d1) && mkdtemp(d2));
    size_t l0, l1;
    char *before = snap_bytes(sh->st, d1, &l0);
    CHECK(before);
    jobs_fin_t f[5];
    ends(f);
    cmdbuf_t b;
    cmd_begin(&b, JOP_FINISHES, NS_JOBS, T0 + 2);          /* no item */
    cmd_u64(&b, sid);
    cmd_u32(&b, 0);
    CHECK_EQ(run(sh, &b, NULL), -EINVAL);
    f[1].state = JR_RUNNING;                                 /* not an end state */
    jobs_cmd_finishes(&b, T0 + 2, sid, 2, f);
    CHECK_EQ(run(sh, &b, NULL), -EINVAL);
    ends(f);
    f[0].total[0] = 2;                                       /* kept more than produced */
    jobs_cmd_finishes(&b, T0 + 2, sid, 2, f);
    CHECK_EQ(run(sh, &b, NULL), -EINVAL);
    ends(f);
    jobs_cmd_finishes(&b, T0 + 2, sid, 2, f);               /* cut short */
    b.len -= 2;
    CHECK_EQ(run(sh, &b, NULL), -EINVAL);
    jobs_cmd_finishes(&b, T0 + 2, sid, 2, f);               /* a byte after the last */
    cmd_u8(&b, 1);
    CHECK_EQ(run(sh, &b, NULL), -EINVAL);
    jobs_cmd_finishes(&b, T0 + 2, sid, 1, &f[1]);           /* stream bits out of range */
    b.p[b.len - 1] = 4;
    CHECK_EQ(run(sh, &b, NULL), -EINVAL);
    char *after = snap_bytes(sh->st, d2, &l1);
    CHECK(after && l0 == l1 && memcmp(before, after, l0) == 0);
    free(before);
    free(after);
    done(sh);
}

/* A node ends as lost a run of its own live session that nothing of it can end any more
 * (its end was dropped: docs/JOBS.md "Ending"): a FINISHES item in state lost ends the run
 * as the session's end would (retried with backoff, counted as a failure), and frees a
 * forbid job for its next tick. Items for runs not running on the session change nothing. */
TEST(finishes_end_a_dropped_run_lost)
{
    uint64_t sid;
    shard_t *sh = three_running(&sid);
    CHECK(sh);
    CHECK_EQ(set(sh, "a1", JSET_CONCURRENCY, "forbid", T0 + 3), 0);
    CHECK_EQ(manual(sh, "a1", T0 + 3, NULL), -EBUSY);          /* run 1 is running */
    jobs_fin_t f[2] = { { .job = "a1", .run = 1, .state = JR_LOST },
                        { .job = "c1", .run = 1, .state = JR_LOST } };   /* c1 1: pending */
    cmdbuf_t b;
    sm_result_t res;
    int nrev = sh->nrev;
    jobs_cmd_finishes(&b, T0 + 5000, sid, 2, f);
    CHECK_EQ(run(sh, &b, &res), 0);
    CHECK(jobs_result_bit(&res, 0) && !jobs_result_bit(&res, 1));
    CHECK(sh->nrev > nrev);                                   /* an end event */
    run_view_t r = rview(sh, "a1", 1);
    CHECK(r.state == JR_LOST && r.finished_ms == T0 + 5000);
    CHECK_EQ(rview(sh, "c1", 1).state, JR_PENDING);
    r = rview(sh, "a1", 2);                                   /* retries 1: one more try */
    CHECK(r.state == JR_PENDING && r.attempt == 2 && r.not_before_ms == T0 + 5000 + JOBS_BACKOFF_MS);
    job_view_t v = view(sh, "a1");
    CHECK(v.failures == 1 && v.failed_total == 1 && v.active == 1);
    /* the retry ends too: a forbid job takes a new run again */
    CHECK_EQ(start(sh, "a1", 2, sid, T0 + 6000), 0);
    CHECK_EQ(finish(sh, "a1", 2, sid, JR_OK, 0, T0 + 6100), 0);
    CHECK_EQ(manual(sh, "a1", T0 + 6200, NULL), 0);
    /* another session's run is not this session's to end */
    uint64_t other = open_session(sh, T0, "node-b");
    CHECK(other);
    f[0] = (jobs_fin_t){ .job = "b1", .run = 1, .state = JR_LOST };
    jobs_cmd_finishes(&b, T0 + 7000, other, 1, f);
    CHECK_EQ(run(sh, &b, &res), 0);
    CHECK(!jobs_result_bit(&res, 0));
    CHECK_EQ(rview(sh, "b1", 1).state, JR_RUNNING);
    done(sh);
}

static int frees(cmdbuf_t *b)
{
    int r = jobs_cmd_frees(b->p, b->len);
    free(b->p);
    return r;
}

/* Which jobs/ commands a full disk must still log (fs/node.c's cmd_class, CC_FREEING): a
 * job's removal and the ends of runs that keep no output; never what adds to the state. */
TEST(run_ends_without_output_free)
{
    cmdbuf_t b;
    jobs_fin_t f[2] = { { .job = "a1", .run = 1, .state = JR_OK },
                        { .job = "b1", .run = 4, .state = JR_LOST } };
    jobs_cmd_rmdir(&b, T0, "a1");
    CHECK_EQ(frees(&b), 1);
    jobs_cmd_finish(&b, T0, "a1", 1, 7, JR_FAILED, 1);
    CHECK_EQ(frees(&b), 1);
    jobs_cmd_finishes(&b, T0, 7, 2, f);
    CHECK_EQ(frees(&b), 1);
    f[1].total[0] = 5000;                 /* a stream whose output was not kept: it reads cut */
    jobs_cmd_finishes(&b, T0, 7, 2, f);
    CHECK_EQ(frees(&b), 1);
    f[1].out[0] = "hello";                /* kept output grows the state */
    f[1].len[0] = 5;
    jobs_cmd_finishes(&b, T0, 7, 2, f);
    CHECK_EQ(frees(&b), 0);
    f[1].len[0] = 0;
    jobs_cmd_finishes(&b, T0, 7, 2, f);   /* malformed (cut short) */
    b.len -= 3;
    CHECK_EQ(frees(&b), 0);
    const char *jobs[1] = { "a1" };
    uint64_t v[1] = { T0 };
    jobs_cmd_batch(&b, T0, JOP_TICKS, 0, 1, jobs, v);
    CHECK_EQ(frees(&b), 0);
    jobs_cmd_batch(&b, T0, JOP_STARTS, 7, 1, jobs, v);
    CHECK_EQ(frees(&b), 0);
    jobs_cmd_mkdir(&b, T0, "a1");
    CHECK_EQ(frees(&b), 0);
    jobs_cmd_set(&b, T0, "a1", JSET_CMD, "true", 4);
    CHECK_EQ(frees(&b), 0);
    jobs_cmd_run(&b, T0, "a1");
    CHECK_EQ(frees(&b), 0);
    jobs_cmd_output(&b, T0, "a1", 1, 7, 1, 3, "hi\n", 3);
    CHECK_EQ(frees(&b), 0);
    session_cmd_end(&b, T0, 7, 0);
    CHECK_EQ(frees(&b), 0);   /* not jobs/'s to say */
}

/* When a node proposes the ends it queued for a shard: a lone run's end at once (not at a
 * sweep), ends of runs running together held for the others, at most one FINISHES per
 * JOBS_END_GAP_MS, never later than the larger bound. */
TEST(queued_ends_are_proposed_soon_and_rate_limited)
{
    const uint64_t t = 1000000;
    CHECK_EQ(jobs_end_due(t, 0, 0), t);                                   /* a lone run */
    CHECK_EQ(jobs_end_due(t, t - 5000, 0), t);
    CHECK_EQ(jobs_end_due(t, 0, 1), t + JOBS_END_HOLD_MS);                /* others running */
    CHECK_EQ(jobs_end_due(t, t - 5000, 1), t + JOBS_END_HOLD_MS);
    CHECK_EQ(jobs_end_due(t, t - 1, 0), t - 1 + JOBS_END_GAP_MS);         /* one just now */
    CHECK_EQ(jobs_end_due(t - 20000, t, 0), t + JOBS_END_GAP_MS);         /* kept after EIO */
    CHECK(JOBS_END_HOLD_MS <= 100 && JOBS_END_GAP_MS <= 100);
    uint64_t bound = JOBS_END_HOLD_MS > JOBS_END_GAP_MS ? JOBS_END_HOLD_MS : JOBS_END_GAP_MS;
    for (int running = 0; running < 2; running++)
        for (uint64_t last = t - 300; last <= t; last += 7) {   /* queued after the last one */
            uint64_t at = jobs_end_due(t, last, running);
            CHECK(at - t <= bound && at >= last + JOBS_END_GAP_MS);
        }
}

/* The index against a full scan of the jobs at now. */
struct scan {
    uint64_t now, min_next;
    uint64_t due[64], active[64];      /* bit sets of job ids (ids < 4096 here) */
    int n;
};

static void setbit64(uint64_t *set, uint64_t id) { set[id / 64 % 64] |= 1ull << (id % 64); }

static int full_cb(void *arg, const job_view_t *v)
{
    struct scan *s = arg;
    uint64_t t = jobs_next_tick(v);
    if (t && (!s->min_next || t < s->min_next))
        s->min_next = t;
    if (jobs_due_tick(v, s->now))
        setbit64(s->due, v->id);
    if (v->active)
        setbit64(s->active, v->id);
    return 0;
}

static int due_cb(void *arg, const job_view_t *v)
{
    struct scan *s = arg;
    s->n++;
    if (jobs_due_tick(v, s->now))
        setbit64(s->due, v->id);
    return 0;
}

static int active_cb(void *arg, const job_view_t *v)
{
    struct scan *s = arg;
    if (v->active)
        setbit64(s->active, v->id);
    return 0;
}

/* 1 when the index of sh agrees with a full scan at now. */
static int index_agrees(shard_t *sh, uint64_t now)
{
    struct scan full, idx;
    memset(&full, 0, sizeof(full));
    memset(&idx, 0, sizeof(idx));
    full.now = idx.now = now;
    jobs_sm_each(sh->st, full_cb, &full);
    jobs_sm_each_due(sh->st, now, due_cb, &idx);
    jobs_sm_each_active(sh->st, active_cb, &idx);
    int n = 0;
    for (int i = 0; i < 64; i++)
        n += __builtin_popcountll(idx.due[i]);
    return jobs_sm_next_due(sh->st) == full.min_next && idx.n == n &&
           memcmp(full.due, idx.due, sizeof(full.due)) == 0 &&
           memcmp(full.active, idx.active, sizeof(full.active)) == 0;
}

TEST(index_agrees_with_a_full_scan)
{
    shard_t *sh = fresh();
    uint64_t sid = open_session(sh, T0, "node-a");
    CHECK(sid);
    static const char *const scheds[] = { "@every 1s", "@every 7s", "*/1 * * * *", "0 0 30 2 *",
                                          "", "@every 2s" };
    srand(7);
    uint64_t now = T0;
    int bad = 0, steps = 0;
    for (int i = 0; i < 6000; i++) {
        char job[8];
        snprintf(job, sizeof(job), "j%d", rand() % 40);
        now += (uint64_t)(rand() % 900);
        cmdbuf_t b;
        job_view_t v;
        int have = jobs_sm_get(sh->st, job, strlen(job), &v) == 0;
        switch (rand() % 10) {
        case 0: mk(sh, job, now); break;
        case 1: set(sh, job, JSET_SCHEDULE, scheds[rand() % 6], now); break;
        case 2: set(sh, job, JSET_CMD, rand() % 4 ? "true" : "", now); break;
        case 3:
        case 4:
            if (have && jobs_due_tick(&v, now)) {
                const char *jn[1] = { job };
                uint64_t t[1] = { jobs_due_tick(&v, now) };
                jobs_cmd_batch(&b, now, JOP_TICKS, 0, 1, jn, t);
                run(sh, &b, NULL);
            }
            break;
        case 5: manual(sh, job, now, NULL); break;
        case 6:
            if (have)
                start(sh, job, v.runs_total, sid, now);
            break;
        case 7:
            if (have) {
                jobs_fin_t f = { .job = job, .run = v.runs_total,
                                 .state = (uint8_t)(rand() % 2 ? JR_OK : JR_FAILED) };
                jobs_cmd_finishes(&b, now, sid, 1, &f);
                run(sh, &b, NULL);
            }
            break;
        case 8:
            if (rand() % 8 == 0) {
                jobs_cmd_rmdir(&b, now, job);
                run(sh, &b, NULL);
            }
            break;
        default:
            if (rand() % 50 == 0) {           /* the runner's session ends: lost, retried */
                end_session(sh, sid, now);
                sid = open_session(sh, now, "node-b");
            }
            break;
        }
        steps++;
        bad += !index_agrees(sh, now) + !index_agrees(sh, now + 5000);
    }
    CHECK_EQ(bad, 0);
    CHECK(steps == 6000);
    /* after a restore the index is rebuilt from the jobs */
    shard_t *c = fresh();
    char d1[] = "/tmp/qfs-jobs-XXXXXX";
    CHECK(mkdtemp(d1));
    size_t l;
    char *x = snap_bytes(sh->st, d1, &l);
    CHECK(x);
    CHECK_EQ(restore_dir(c->st, d1), 0);
    ns_sm_check(c->st);
    CHECK(index_agrees(c, now) && index_agrees(c, now + 60000));
    free(x);
    done(c);
    done(sh);
}

/* What makes an idle sweep cost nothing: with 3,000 jobs scheduled and none due, the walk
 * of the due jobs visits none; when one minute comes, it visits exactly the due ones. */
TEST(index_walks_only_due_jobs)
{
    shard_t *sh = fresh();
    char job[16];
    for (int i = 0; i < 3000; i++) {
        snprintf(job, sizeof(job), "s%d", i);
        CHECK_EQ(mk(sh, job, T0), 0);
        CHECK_EQ(set(sh, job, JSET_CMD, "true", T0), 0);
        CHECK_EQ(set(sh, job, JSET_SCHEDULE, i < 100 ? "@every 30s" : "@every 60s", T0), 0);
    }
    struct scan s;
    memset(&s, 0, sizeof(s));
    s.now = T0 + 29999;
    CHECK_EQ(jobs_sm_next_due(sh->st), T0 + 30000);
    jobs_sm_each_due(sh->st, s.now, due_cb, &s);
    CHECK_EQ(s.n, 0);
    s.now = T0 + 30000;
    jobs_sm_each_due(sh->st, s.now, due_cb, &s);
    CHECK_EQ(s.n, 100);
    s.n = 0;
    s.now = T0 + 60000;
    jobs_sm_each_due(sh->st, s.now, due_cb, &s);
    CHECK_EQ(s.n, 3000);
    CHECK_EQ(jobs_sm_each_active(sh->st, active_cb, &s), 0);
    done(sh);
}

/* A state with one of everything: runs in each state, output, events. */
static shard_t *populated(uint64_t *sid)
{
    shard_t *sh = every_second(sid);
    if (!sh)
        return NULL;
    cmdbuf_t b;
    int bad = tick(sh, "j", T0 + 1000, T0 + 1000) || start(sh, "j", 1, *sid, T0 + 1001);
    jobs_cmd_output(&b, T0 + 1002, "j", 1, *sid, 1, 10, "hello\n", 6);
    bad |= run(sh, &b, NULL) != 0;
    bad |= finish(sh, "j", 1, *sid, JR_FAILED, 1, T0 + 1003) != 0;
    bad |= mk(sh, "k", T0 + 1003) || set(sh, "k", JSET_CMD, "sleep 1", T0 + 1003) ||
           set(sh, "k", JSET_CONCURRENCY, "allow", T0 + 1003) ||
           manual(sh, "k", T0 + 1004, NULL) || manual(sh, "k", T0 + 1004, NULL) ||
           start(sh, "k", 1, *sid, T0 + 1005);
    if (bad) {
        done(sh);
        return NULL;
    }
    return sh;
}

TEST(malformed_commands_change_nothing)
{
    uint64_t sid;
    shard_t *sh = populated(&sid);
    CHECK(sh);
    char d1[] = "/tmp/qfs-jobs-XXXXXX", d2[] = "/tmp/qfs-jobs-XXXXXX";
    CHECK(mkdtemp(d1) && mkdtemp(d2));
    size_t l0, l1;
    char *before = snap_bytes(sh->st, d1, &l0);
    CHECK(before);
    cmdbuf_t b;
    cmd_begin(&b, JOP_TICK, NS_JOBS, T0 + 1005);             /* no fields */
    CHECK_EQ(run(sh, &b, NULL), -EINVAL);
    cmd_begin(&b, 99, NS_JOBS, T0 + 1005);                   /* unknown op */
    CHECK_EQ(run(sh, &b, NULL), -EINVAL);
    jobs_cmd_finish(&b, T0 + 1005, "k", 1, sid, JR_RUNNING, 0); /* not an end state */
    CHECK_EQ(run(sh, &b, NULL), -EINVAL);
    jobs_cmd_start(&b, T0 + 1005, "k", 77, sid);
    CHECK_EQ(run(sh, &b, NULL), -ENOENT);
    jobs_cmd_set(&b, T0 + 1005, "k", JSET_CMD, "a\0b", 3);
    CHECK_EQ(run(sh, &b, NULL), -EINVAL);
    jobs_cmd_tick(&b, T0 + 1005, "k", T0 + 1000);            /* k has no schedule */
    CHECK_EQ(run(sh, &b, NULL), -ENOENT);
    jobs_cmd_mkdir(&b, T0 + 1005, "a/b");
    CHECK_EQ(run(sh, &b, NULL), -EINVAL);
    char *after = snap_bytes(sh->st, d2, &l1);
    CHECK(after);
    CHECK(l0 == l1 && memcmp(before, after, l0) == 0);
    free(before);
    free(after);
    done(sh);
}

/* Valid commands of every kind, then damaged ones (a byte changed, or cut short): each is
 * refused or applied whole, never a broken invariant (smrun checks after every apply). */
TEST(random_damage_never_breaks_invariants)
{
    uint64_t sid;
    shard_t *sh = populated(&sid);
    CHECK(sh);
    srand(12);
    int applied = 0, refused = 0;
    uint64_t now = T0 + 2000;
    for (int i = 0; i < 20000; i++) {
        cmdbuf_t b;
        const char *job = rand() % 2 ? "j" : "k";
        uint64_t n = 1 + (uint64_t)(rand() % 4);
        now += (uint64_t)(rand() % 700);
        const char *bj[2] = { job, "j" };
        uint64_t bv[2] = { now / 1000 * 1000, n };
        switch (rand() % 12) {
        case 0: jobs_cmd_tick(&b, now, job, now / 1000 * 1000); break;
        case 1: jobs_cmd_run(&b, now, job); break;
        case 2: jobs_cmd_start(&b, now, job, n, sid); break;
        case 3: jobs_cmd_output(&b, now, job, n, sid, 1, 100, "0123456789", 10); break;
        case 4: jobs_cmd_finish(&b, now, job, n, sid, (uint8_t)(JR_OK + rand() % 5), rand() % 3); break;
        case 5: jobs_cmd_set(&b, now, job, (uint8_t)(1 + rand() % 5), "allow\n", 6); break;
        case 6: jobs_cmd_set(&b, now, job, JSET_SCHEDULE, "@every 1s", 9); break;
        case 7: jobs_cmd_mkdir(&b, now, rand() % 2 ? "j" : "x"); break;
        case 8: jobs_cmd_batch(&b, now, JOP_TICKS, 0, 2, bj, bv); break;
        case 9: bv[0] = n; jobs_cmd_batch(&b, now, JOP_STARTS, sid, 2, bj, bv); break;
        case 10: {
            jobs_fin_t f[2] = { { .job = job, .run = n, .state = (uint8_t)(JR_OK + rand() % 5),
                                  .out = { "out", "" }, .len = { 3, 0 }, .total = { 5, 0 } },
                                { .job = "j", .run = n, .state = JR_OK } };
            jobs_cmd_finishes(&b, now, sid, 1 + (uint32_t)(rand() % 2), f);
            break;
        }
        default: jobs_cmd_rmdir(&b, now, rand() % 3 ? "x" : "k"); break;
        }
        if (rand() % 2 && b.len > CMD_HDR_LEN) {
            if (rand() % 2)
                b.len = CMD_HDR_LEN + (size_t)rand() % (b.len - CMD_HDR_LEN);
            else
                b.p[CMD_HDR_LEN + (size_t)rand() % (b.len - CMD_HDR_LEN)] ^= (uint8_t)(1 + rand() % 255);
        }
        if (run(sh, &b, NULL) == 0)
            applied++;
        else
            refused++;
        if (i % 5000 == 4999) {           /* the runs' session ends now and then */
            CHECK_EQ(end_session(sh, sid, now), 0);
            sid = open_session(sh, now, "node-c");
            CHECK(sid);
        }
    }
    printf("# %d applied, %d refused\n", applied, refused);
    CHECK(applied > 1000 && refused > 1000);
    done(sh);
}

TEST(snapshot_round_trip)
{
    uint64_t sid;
    shard_t *a = populated(&sid);
    CHECK(a);
    shard_t *c = fresh();
    char d1[] = "/tmp/qfs-jobs-XXXXXX", d2[] = "/tmp/qfs-jobs-XXXXXX";
    CHECK(mkdtemp(d1) && mkdtemp(d2));
    size_t la, lc;
    char *sa = snap_bytes(a->st, d1, &la);
    CHECK(sa);
    CHECK_EQ(restore_dir(c->st, d1), 0);
    ns_sm_check(c->st);
    char *sc = snap_bytes(c->st, d2, &lc);
    CHECK(sc && la == lc && memcmp(sa, sc, la) == 0);
    /* the restored shard goes on the same way */
    run_view_t r;
    CHECK_EQ(jobs_sm_run(c->st, view(c, "j").id, 1, &r), 0);
    CHECK(r.out[0]->len == 6 && memcmp(r.out[0]->data, "hello\n", 6) == 0 && r.total[0] == 10);
    CHECK_EQ(start(c, "k", 2, sid, T0 + 2000), 0);
    CHECK_EQ(tick(c, "j", T0 + 1000, T0 + 2000), -EALREADY);
    CHECK_EQ(tick(c, "j", T0 + 2000, T0 + 2000), 0);
    free(sa);
    free(sc);
    done(a);
    done(c);
}

int main(void)
{
    RUN(settings_and_refusals);
    RUN(each_tick_is_decided_once);
    RUN(missed_ticks_run_late_and_catch_up_is_bounded);
    RUN(output_is_capped_with_its_total);
    RUN(concurrency_forbid_allow_replace);
    RUN(lost_runs_are_retried_with_backoff);
    RUN(events_lines);
    RUN(rmdir_waits_for_running_runs);
    RUN(batches_apply_each_item_on_its_own);
    RUN(finishes_batch_equals_output_and_finish);
    RUN(malformed_finishes_change_nothing);
    RUN(finishes_end_a_dropped_run_lost);
    RUN(run_ends_without_output_free);
    RUN(queued_ends_are_proposed_soon_and_rate_limited);
    RUN(index_agrees_with_a_full_scan);
    RUN(index_walks_only_due_jobs);
    RUN(malformed_commands_change_nothing);
    RUN(random_damage_never_breaks_invariants);
    RUN(snapshot_round_trip);
    return CHECK_DONE();
}
