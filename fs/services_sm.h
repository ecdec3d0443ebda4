/* fs/services_sm.h — the state machine of services/ (FILE-API §6; design in
 * docs/SERVICES.md): services (directories) with their settings (user.lb, user.ttl,
 * user.check, user.check_interval), instances (name, address, owner session, weight, load,
 * TTL end, health and since when), a round-robin cursor per service advanced by committed
 * PICK commands (one rotation for the whole cluster), and per service a numbered history of
 * up/down events read by `.events`. Apply never talks to FUSE: a change of a service's
 * event revision is an EFF_CONFIG_REV effect of namespace NS_SERVICES (fs/effects.h; the
 * payload is the same: "reached revision rev"). This header is all the FUSE front
 * (fs/services_fuse.c) and the tests use. No FUSE, mount or node header. */
#ifndef QFS_FS_SERVICES_SM_H
#define QFS_FS_SERVICES_SM_H

#include <stddef.h>
#include <stdint.h>
#include "fs/cmd.h"
#include "fs/names.h"
#include "fs/ns_sm.h"
#include "fs/state.h"

#define SVC_ADDR_MAX 255                 /* bytes of an address (the first line) */
#define SVC_TTL_DEFAULT 30               /* user.ttl, seconds; 0 = lives with its session */
#define SVC_TTL_MAX 315360000u           /* ten years */
#define SVC_INTERVAL_DEFAULT 5           /* user.check_interval, seconds */
#define SVC_INTERVAL_MAX 86400u
#define SVC_WEIGHT_DEFAULT 1             /* user.weight */
#define SVC_WEIGHT_MAX 1000000u
#define SVC_LOAD_MAX 1000000000u         /* user.load */
#define SVC_INST_MAX 10000u              /* instances of one service */
#define SVC_EVENTS_KEPT 1024             /* events of one service kept for `.events@rev` */

/* Command opcodes of the services/ namespace (fields after the cmd.h header). */
enum services_op {
    SVOP_MKDIR = 1,   /* str svc */
    SVOP_RMDIR,       /* str svc (ENOTEMPTY while it has instances) */
    SVOP_SET,         /* str svc, u8 SVSET_*, u64 value */
    SVOP_REG,         /* str svc, str inst, u64 sid, bytes address: register or replace */
    SVOP_TOUCH,       /* str svc, str inst: renew (TTL end = now + ttl) */
    SVOP_UNREG,       /* str svc, str inst */
    SVOP_SETI,        /* str svc, str inst, u8 SVISET_*, u64 value */
    SVOP_PICK,        /* str svc -> result u64 instance id: next in the rotation */
    SVOP_HEALTH,      /* str svc, str inst, u64 iid, u8 healthy: a checker's transition
                         (EAGAIN unless user.check=tcp; turning checks off heals all) */
    SVOP_EXPIRE,      /* str svc, str inst, u64 iid: its TTL ended (checked at apply) */
    SVOP_REG_IF,      /* str svc, str inst, u64 sid, u64 iid, bytes address: REG of instance
                         iid only, the one a save was opened on: ENOENT when it is gone or
                         the name is another instance now (the save then goes nowhere, as
                         the data written to an unlinked file) */
};
enum { SVSET_LB = 1, SVSET_TTL, SVSET_CHECK, SVSET_INTERVAL };
enum { SVISET_WEIGHT = 1, SVISET_LOAD };
enum svc_lb { SVLB_RR = 1, SVLB_RANDOM, SVLB_WEIGHTED, SVLB_P2C };
enum svc_check { SVCHECK_NONE = 0, SVCHECK_TCP = 1 };

extern const ns_sm_t services_sm;

/* ---- command encoders; each starts b at time now, the caller proposes and frees b->p ---- */
void services_cmd_mkdir(cmdbuf_t *b, uint64_t now, const char *svc);
void services_cmd_rmdir(cmdbuf_t *b, uint64_t now, const char *svc);
void services_cmd_set(cmdbuf_t *b, uint64_t now, const char *svc, uint8_t which,
                      uint64_t value);
void services_cmd_reg(cmdbuf_t *b, uint64_t now, const char *svc, const char *inst,
                      uint64_t sid, const void *addr, size_t len);
void services_cmd_reg_if(cmdbuf_t *b, uint64_t now, const char *svc, const char *inst,
                         uint64_t sid, uint64_t iid, const void *addr, size_t len);
void services_cmd_touch(cmdbuf_t *b, uint64_t now, const char *svc, const char *inst);
void services_cmd_unreg(cmdbuf_t *b, uint64_t now, const char *svc, const char *inst);
void services_cmd_seti(cmdbuf_t *b, uint64_t now, const char *svc, const char *inst,
                       uint8_t which, uint64_t value);
void services_cmd_pick(cmdbuf_t *b, uint64_t now, const char *svc);
void services_cmd_health(cmdbuf_t *b, uint64_t now, const char *svc, const char *inst,
                         uint64_t iid, int healthy);
void services_cmd_expire(cmdbuf_t *b, uint64_t now, const char *svc, const char *inst,
                         uint64_t iid);

/* PICK's result: the picked instance's id (res->code == 0). */
uint64_t services_result_pick(const sm_result_t *res);

/* Parses a user.lb value ("round-robin", "random", "weighted", "p2c", one trailing newline
 * allowed): the SVLB_* or -EINVAL. services_lb_name gives the name of an SVLB_*. */
int services_lb_parse(const char *v, size_t len);
const char *services_lb_name(int lb);
/* Nonzero for the reserved control names of a service directory (.pick, .all, .events,
 * .events@...): never an instance name. */
int services_reserved(const char *name, size_t len);

/* ---- read API (state lock held, read or write; views valid while it is held) ---- */

typedef struct svc_view {
    uint64_t id;
    const char *name;
    uint64_t ctime_ms, mtime_ms;
    uint8_t lb, check;
    uint32_t ttl_s, interval_s;
    uint64_t cursor;                     /* id of the last round-robin pick, 0 = none */
    uint64_t rev;                        /* newest event revision */
    uint32_t ninst;
} svc_view_t;

typedef struct inst_view {
    uint64_t id;
    const char *name;
    const char *addr;                    /* NUL-terminated, 1..SVC_ADDR_MAX bytes */
    uint64_t sid;                        /* registering session */
    uint32_t weight, load;
    uint64_t ctime_ms, mtime_ms;         /* registered, last renewed */
    uint64_t expires_ms;                 /* TTL end, 0 = none */
    uint8_t healthy;
    uint64_t since_ms;                   /* of the current health state */
} inst_view_t;

/* Whether instance v is live and healthy at now (what `ls` and `.pick` show). */
int services_visible(const inst_view_t *v, uint64_t now);

int services_sm_get(const state_t *st, const char *name, size_t len, svc_view_t *v);
int services_sm_get_id(const state_t *st, uint64_t id, svc_view_t *v);
/* Instance inst of service id svc / instance iid: 0 and *v, or -ENOENT. *svc_id (may be
 * NULL) gets the service of an instance found by id. */
int services_sm_inst(const state_t *st, uint64_t svc, const char *inst, size_t len,
                     inst_view_t *v);
int services_sm_inst_id(const state_t *st, uint64_t iid, uint64_t *svc_id, inst_view_t *v);
/* fn for each service / each instance of service svc in creation order until it returns
 * nonzero; returns that (or -ENOENT for an unknown service). */
int services_sm_each(const state_t *st, int (*fn)(void *arg, const svc_view_t *v), void *arg);
int services_sm_each_inst(const state_t *st, uint64_t svc,
                          int (*fn)(void *arg, const inst_view_t *v), void *arg);

/* A pick by the reading node for the random, weighted and p2c policies (round-robin is a
 * PICK command): among the instances of svc visible at now, chooses with the random
 * numbers rnd(arg) gives (uniform 64-bit). random: uniform; weighted: in proportion to
 * user.weight (instances of weight 0 only when all are 0); p2c: two distinct uniform
 * candidates, the lower user.load wins (ties: the first drawn). Returns 0 and the instance
 * in *v, -ENOENT for an unknown service, -EAGAIN when none is visible. */
int services_sm_pick_local(const state_t *st, uint64_t svc, uint64_t now,
                           uint64_t (*rnd)(void *arg), void *arg, inst_view_t *v);

/* Formats the events of service svc with rev > *cursor as "<rev> <up|down> <inst> <addr>\n"
 * lines (instance and address escaped: `\\`, `\n`, other bytes below 0x20 as `\xHH`) into
 * buf, whole lines only, at most size bytes; advances *cursor past them. Returns the bytes
 * written, -ESTALE when events after *cursor were dropped from the history, -ENOENT for an
 * unknown service. */
int services_read_events(const state_t *st, uint64_t svc, uint64_t *cursor, char *buf,
                         size_t size);
/* Nonzero when events after `after` were dropped from svc's history. */
int services_events_stale(const state_t *st, uint64_t svc, uint64_t after);
#define SVC_EVENT_LINE_MAX (4 * NAME_MAX_BYTES + 4 * SVC_ADDR_MAX + 40)

/* The first broken invariant of services/, or NULL (restore refuses a snapshot breaking
 * one); services_sm_check ASSERTs the tables' structure and it. */
const char *services_sm_verify(const state_t *st);
void services_sm_check(const state_t *st);

#endif
