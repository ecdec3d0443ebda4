/* fs/jobs_sm.h — the state machine of jobs/ (FILE-API §8, docs/JOBS.md): jobs (directories)
 * with their settings (cmd, schedule, timeout, retries, concurrency), the last scheduled
 * time decided for each, and their runs with output, exit and the node that ran them.
 *
 * Exactly once: the decision to run tick T of job J is a committed TICK; apply refuses a
 * tick at or before the last one decided, so a tick is decided once whatever the number of
 * schedulers or leader changes. A run is PENDING until a runner's committed START records
 * it RUNNING on that runner's session and node (only then does the runner start the
 * command); FINISH ends it. A run whose runner's session ends becomes LOST. A failed,
 * timed-out or lost run is retried (a new run of the same tick, attempt + 1) after an
 * exponential backoff while attempts remain. Apply never talks to FUSE: run starts and
 * ends are numbered events of the job, and each is an EFF_CONFIG_REV effect of NS_JOBS
 * (payload: "reached revision rev", as config/'s). No FUSE, mount or node header. */
#ifndef QFS_FS_JOBS_SM_H
#define QFS_FS_JOBS_SM_H

#include <stddef.h>
#include <stdint.h>
#include "fs/cmd.h"
#include "fs/cron.h"
#include "fs/names.h"
#include "fs/ns_sm.h"
#include "fs/state.h"
#include "fs/tree_sm.h"

#define JOBS_CMD_MAX 65536u              /* bytes of a job's cmd */
#define JOBS_TIMEOUT_MAX 604800u         /* timeout, seconds (a week); 0 = none */
#define JOBS_RETRIES_DEFAULT 3
#define JOBS_RETRIES_MAX 20
#define JOBS_OUT_MAX (1u << 20)          /* kept bytes of a run's stdout, and of its stderr */
#define JOBS_RUNS_KEPT 100               /* finished runs kept per job (newest) */
#define JOBS_KEPT_BYTES (32u << 20)      /* output bytes of finished runs kept per job */
#define JOBS_ACTIVE_MAX 64               /* pending + running runs of one job */
#define JOBS_EVENTS_KEPT 64              /* events of one job kept for `.events` */
#define JOBS_LATE_MS 2000                /* a tick decided this long after it is late */
#define JOBS_BACKOFF_MS 1000ull          /* first retry delay; doubles per attempt */
#define JOBS_BACKOFF_MAX_MS 3600000ull
#define JOBS_CATCHUP 10                  /* missed ticks run one by one up to this many */
#define JOBS_MAX 100000u                 /* jobs of one shard */
#define JOBS_ID_MAX ((1u << 20) - 1)     /* job ids a shard hands out in its life (inodes) */
#define JOBS_NODE_MAX 64                 /* bytes of a runner's node name */

/* Command opcodes of the jobs/ namespace (fields after the cmd.h header). */
enum jobs_op {
    JOP_MKDIR = 1,   /* str job */
    JOP_RMDIR,       /* str job: EBUSY while a run is running; its runs go with it */
    JOP_SET,         /* str job, u8 JSET_*, bytes text (parsed at apply; EINVAL) */
    JOP_TICK,        /* str job, u64 tick: decide scheduled time tick (a fire time after the
                        last decided one, not after now; else EALREADY / EINVAL / EAGAIN) */
    JOP_RUN,         /* str job -> result u64 run number (EBUSY: concurrency forbid) */
    JOP_START,       /* str job, u64 run, u64 sid: PENDING -> RUNNING on session sid
                        (EALREADY: not pending; EAGAIN: its retry time is to come) */
    JOP_OUTPUT,      /* str job, u64 run, u64 sid, u8 stream (1 out, 2 err), u64 total,
                        bytes chunk: appends (kept up to JOBS_OUT_MAX), total = bytes the
                        stream produced so far */
    JOP_FINISH,      /* str job, u64 run, u64 sid, u8 JR_* end state, u32 exit (int) */
    /* Batches (what a sweep decides for a shard in one entry). No "str job" after the
     * header; each item is refused or applied on its own, as its single command would be;
     * the result's bit i (JOBS_BATCH_MAX bits) says item i was applied. */
    JOP_TICKS,       /* u32 n, n x (str job, u64 tick) */
    JOP_STARTS,      /* u64 sid, u32 n, n x (str job, u64 run); ENOLCK: sid not live */
    JOP_FINISHES,    /* u64 sid, u32 n, n x (str job, u64 run, u8 JR_* end state, u32 exit,
                        u8 streams (bit 0 stdout, bit 1 stderr), per stream in the bits:
                        u64 total, bytes kept): each item ends its run as FINISH would,
                        after appending its output as OUTPUT would; an item may also end
                        its run LOST (FINISH may not) */
};
#define JOBS_BATCH_MAX 512               /* items of a batch (SM_RESULT_MAX bits) */
enum { JSET_CMD = 1, JSET_SCHEDULE, JSET_TIMEOUT, JSET_RETRIES, JSET_CONCURRENCY };
enum jobs_conc { JC_FORBID = 0, JC_ALLOW = 1, JC_REPLACE = 2 };
/* Run states. exit: the status code for OK/FAILED, -signal when a signal ended it. */
enum jobs_run_state {
    JR_PENDING = 1, JR_RUNNING, JR_OK, JR_FAILED, JR_TIMEOUT, JR_LOST, JR_KILLED,
};

extern const ns_sm_t jobs_sm;

/* The names of settings files (JSET_* index), of concurrencies and of run states. */
extern const char *const jobs_setting_names[6];
const char *jobs_conc_name(int conc);
const char *jobs_state_name(int state);
/* Nonzero for names of the reserved control entries (.events, .events@...). */
int jobs_reserved(const char *name, size_t len);
/* Checks a setting's text as apply would; 0 or -EINVAL with *why set. */
int jobs_setting_check(int which, const char *text, size_t len, const char **why);

/* ---- command encoders; each starts b at time now, the caller proposes and frees b->p ---- */
void jobs_cmd_mkdir(cmdbuf_t *b, uint64_t now, const char *job);
void jobs_cmd_rmdir(cmdbuf_t *b, uint64_t now, const char *job);
void jobs_cmd_set(cmdbuf_t *b, uint64_t now, const char *job, uint8_t which, const void *text,
                  size_t len);
void jobs_cmd_tick(cmdbuf_t *b, uint64_t now, const char *job, uint64_t tick);
void jobs_cmd_run(cmdbuf_t *b, uint64_t now, const char *job);
void jobs_cmd_start(cmdbuf_t *b, uint64_t now, const char *job, uint64_t run, uint64_t sid);
void jobs_cmd_output(cmdbuf_t *b, uint64_t now, const char *job, uint64_t run, uint64_t sid,
                     uint8_t stream, uint64_t total, const void *chunk, size_t len);
void jobs_cmd_finish(cmdbuf_t *b, uint64_t now, const char *job, uint64_t run, uint64_t sid,
                     uint8_t state, int32_t exit_code);
/* A TICKS (op JOP_TICKS: sid unused, v = ticks) or STARTS (v = runs) of items i < n. */
void jobs_cmd_batch(cmdbuf_t *b, uint64_t now, uint8_t op, uint64_t sid, uint32_t n,
                    const char *const *jobs, const uint64_t *v);
/* One run's end for a FINISHES: a stream with total 0 is left out of the item. */
typedef struct jobs_fin {
    const char *job;
    uint64_t run;
    uint8_t state;                       /* JR_OK, JR_FAILED, JR_TIMEOUT, JR_KILLED, or JR_LOST
                                            (a run this node can no longer end otherwise) */
    int32_t exit_code;
    const void *out[2];                  /* kept bytes of stdout, stderr (len[s] each) */
    size_t len[2];
    uint64_t total[2];                   /* bytes each stream produced (>= len) */
} jobs_fin_t;
/* The bytes item f adds to a FINISHES. */
size_t jobs_fin_size(const jobs_fin_t *f);
/* A FINISHES of the ends f[0..n) (1 <= n <= JOBS_BATCH_MAX) of runs of session sid. */
void jobs_cmd_finishes(cmdbuf_t *b, uint64_t now, uint64_t sid, uint32_t n, const jobs_fin_t *f);
/* When a node proposes the run ends it queued for a shard (docs/JOBS.md "Ending"): the
 * shard's oldest queued end was queued at first_ms, the node's last FINISHES for the shard
 * was proposed at last_ms (0: never), both monotonic ms; running: runs started with one of
 * them (in the same STARTS) still run on the node. Returns the time to propose them: at
 * once when none does (a lone run's end is not held back), else JOBS_END_HOLD_MS after the
 * first (the ends of the runs started together join it); and never sooner than
 * JOBS_END_GAP_MS after the last (at most one FINISHES of a node per shard and gap). So an
 * end queued after the shard's last FINISHES was proposed is proposed at most
 * max(JOBS_END_HOLD_MS, JOBS_END_GAP_MS) after it was queued. */
#define JOBS_END_HOLD_MS 100
#define JOBS_END_GAP_MS 100
uint64_t jobs_end_due(uint64_t first_ms, uint64_t last_ms, int running);
/* Whether encoded command cmd only frees or ends what the state holds, so that a full
 * disk must still log it (fs/node.c's cmd_class: CC_FREEING, as deletes): RMDIR, FINISH,
 * and a well-formed FINISHES none of whose items keeps output bytes (a run's end gives back
 * its active slot and admits the job's next run; kept output would grow the state). */
int jobs_cmd_frees(const void *cmd, size_t len);
/* Whether item i of an applied TICKS, STARTS or FINISHES was applied. */
int jobs_result_bit(const sm_result_t *res, uint32_t i);
/* RUN's result: the run's number. */
uint64_t jobs_result_run(const sm_result_t *res);

/* ---- read API (state lock held, read or write; views valid while it is held) ---- */

typedef struct job_view {
    uint64_t id;
    const char *name;
    const char *cmd;                     /* NUL-terminated, may be empty */
    const char *schedule;                /* text, "" = none */
    const cron_t *cron;                  /* NULL without a schedule */
    uint32_t timeout_s, retries;
    uint8_t conc;
    uint64_t ctime_ms, mtime_ms;
    uint64_t last_tick;                  /* last decided tick (or when the schedule was set) */
    uint64_t runs_total;                 /* runs created (the last run's number) */
    uint64_t failures;                   /* consecutive failed runs (lost, timeout included) */
    uint64_t failed_total, skipped;      /* failed runs; ticks not run (forbid, catch-up) */
    uint32_t active;                     /* pending + running runs */
    uint64_t rev;                        /* newest event revision */
} job_view_t;

typedef struct run_view {
    uint64_t n;
    uint64_t tick_ms;                    /* scheduled time; 0 = started by a write to run */
    uint8_t late, state, cancel;
    uint32_t attempt;
    uint64_t decided_ms, not_before_ms;
    const char *node;                    /* "" until started */
    uint64_t sid;
    uint64_t started_ms, finished_ms;    /* 0 = not yet */
    int32_t exit_code;
    blob_t *out[2];                      /* stdout, stderr (never NULL; take a ref to keep) */
    uint64_t total[2];                   /* bytes each stream produced (> len: cut) */
} run_view_t;

int jobs_sm_get(const state_t *st, const char *name, size_t len, job_view_t *v);
int jobs_sm_get_id(const state_t *st, uint64_t id, job_view_t *v);
/* fn for each job in creation order / each kept run of job id in run order, until it
 * returns nonzero; returns that (or -ENOENT for an unknown job). */
int jobs_sm_each(const state_t *st, int (*fn)(void *arg, const job_view_t *v), void *arg);
int jobs_sm_each_run(const state_t *st, uint64_t job, int (*fn)(void *arg, const run_view_t *v),
                     void *arg);
/* Run n of job id: 0 and *v, or -ENOENT. */
int jobs_sm_run(const state_t *st, uint64_t job, uint64_t n, run_view_t *v);

/* The scheduler's index (derived from the state at each apply and at restore; not in the
 * snapshot): the jobs by next fire time, and the jobs with a pending or running run, so a
 * sweep costs O(jobs due + jobs active), not O(jobs).
 * jobs_sm_next_due: the earliest next fire time of any job of the shard (0: none).
 * jobs_sm_each_due: fn for each job whose next fire time is at or before now (in the
 * index's order, not sorted), until fn returns nonzero; returns that.
 * jobs_sm_each_active: fn for each job with a pending or running run (in the order they
 * became active; the order is not part of the state). */
uint64_t jobs_sm_next_due(const state_t *st);
int jobs_sm_each_due(const state_t *st, uint64_t now, int (*fn)(void *arg, const job_view_t *v),
                     void *arg);
int jobs_sm_each_active(const state_t *st, int (*fn)(void *arg, const job_view_t *v), void *arg);

/* The next scheduled time of job v after its last decided tick (0: no schedule, or never). */
uint64_t jobs_next_tick(const job_view_t *v);
/* What a scheduler proposes for job v at now: the tick to decide (0: nothing due). Missed
 * ticks are decided one by one while at most JOBS_CATCHUP are due; beyond that only the
 * newest due one is (the others are skipped). */
uint64_t jobs_due_tick(const job_view_t *v, uint64_t now);

/* Formats the events of job id with rev > *cursor as lines into buf, whole lines only, at
 * most size bytes; advances *cursor. Lines: "<rev> start <job> <run> <node>\n" and
 * "<rev> end <job> <run> <state> <exit>\n" (the job name escaped: `\\`, `\n`, bytes below
 * 0x20 as `\xHH`). Returns the bytes written, -ESTALE when events after *cursor were dropped
 * from the history, -ENOENT for an unknown job. */
int jobs_read_events(const state_t *st, uint64_t job, uint64_t *cursor, char *buf, size_t size);
int jobs_events_stale(const state_t *st, uint64_t job, uint64_t after);
#define JOBS_EVENT_LINE_MAX (4 * NAME_MAX_BYTES + JOBS_NODE_MAX + 80)

/* The first broken invariant of jobs/, or NULL (restore refuses a snapshot breaking one);
 * jobs_sm_check ASSERTs the tables' structure and it. */
const char *jobs_sm_verify(const state_t *st);
void jobs_sm_check(const state_t *st);

#endif
