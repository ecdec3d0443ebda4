/* fs/config_sm.c — the config/ state machine (see config_sm.h): tree hooks that give every
 * put and delete of a file the next revision, keep its history and record the event; the
 * namespace section of the snapshot (the counter and the event ring); the invariant check.
 * All of it changes only in apply, so it is identical on every replica.
 *
 * Symbolic links take revisions and events like files (a put when created or moved in, a
 * delete when removed or moved away) but keep no history: `link@rev` does not exist. A
 * rename of a file over a file passes the replaced file's history to the one that arrives
 * (on_replace), so the target path keeps its versions (FILE-API §1 "Atomic replace"). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cluster/assert.h"
#include "cluster/err.h"
#include "fs/config_sm.h"

/* One change, kept in the event history for `.events` / `.events@rev`. */
typedef struct cfg_event {
    uint64_t rev;
    uint8_t op;                /* CFG_EV_PUT / CFG_EV_DELETE */
    char *path;                /* path below config/, e.g. "app/prod/db_url"; owned */
} cfg_event_t;

typedef struct config_state {
    uint64_t rev;              /* the newest revision */
    cfg_event_t *events;       /* ring of CONFIG_EVENTS_KEPT */
    uint64_t nevents;          /* events ever recorded (ring position = n % kept) */
} config_state_t;

static config_state_t *CF(const state_t *st) { return st->ns_state[NS_CONFIG]; }

/* Position (absolute) of the oldest event kept. */
static uint64_t first_kept(const config_state_t *cf)
{
    return cf->nevents > CONFIG_EVENTS_KEPT ? cf->nevents - CONFIG_EVENTS_KEPT : 0;
}

static const cfg_event_t *event_at(const config_state_t *cf, uint64_t pos)
{
    return &cf->events[pos % CONFIG_EVENTS_KEPT];
}

/* ---- tree hooks ---- */

/* Takes the next revision for file o (op: what happened to it) and records the event; o and
 * every directory above it get that revision. */
static void record_event(state_t *st, obj_t *o, uint8_t op)
{
    config_state_t *cf = CF(st);
    char path[TREE_PATH_MAX + 1];
    ASSERT(tree_path(o, path, sizeof(path)) >= 0);
    cf->rev++;
    cfg_event_t *e = &cf->events[cf->nevents % CONFIG_EVENTS_KEPT];
    free(e->path);
    e->path = xstrdup(path);
    e->rev = cf->rev;
    e->op = op;
    cf->nevents++;
    for (obj_t *d = o; d; d = d->parent)
        d->u.config.rev = cf->rev;
}

/* A file got a value (a put, or it arrived by a rename): a new revision, kept in its history.
 * A link (created, or arrived by a rename) takes the revision only. */
static void on_put(state_t *st, obj_t *o, uint32_t oldlen, uint64_t now_ms)
{
    record_event(st, o, CFG_EV_PUT);
    if (o->type != OBJ_FILE)
        return;
    if (!o->u.config.hist) {
        o->u.config.hist = xcalloc(CONFIG_HISTORY, sizeof(cfg_version_t));
        o->u.config.nhist = o->u.config.hist_head = 0;
    }
    /* hist_head is the slot of the oldest version once the ring is full. */
    uint8_t slot;
    if (o->u.config.nhist < CONFIG_HISTORY) {
        slot = o->u.config.nhist++;
    } else {
        slot = o->u.config.hist_head;
        o->u.config.hist_head = (uint8_t)((slot + 1) % CONFIG_HISTORY);
        blob_unref(o->u.config.hist[slot].val);
    }
    o->u.config.hist[slot].rev = o->u.config.rev;
    o->u.config.hist[slot].val = blob_ref(o->val);
}

static void on_move_in(state_t *st, obj_t *o, uint64_t now_ms) { on_put(st, o, 0, now_ms); }

/* An exclusive create of an empty file takes no revision: the file has no history until
 * the save of the open that created it is published (one revision for `cp`, `tar x`,
 * mkstemp users), and stays at version 0 without one if that never happens. */
static void on_excl_create(state_t *st, obj_t *o, uint64_t now_ms) {}

static void on_symlink(state_t *st, obj_t *o, uint64_t now_ms) { on_put(st, o, 0, now_ms); }

static void free_history(obj_t *o)
{
    for (int i = 0; i < o->u.config.nhist; i++)
        blob_unref(o->u.config.hist[i].val);
    free(o->u.config.hist);
    o->u.config.hist = NULL;
    o->u.config.nhist = o->u.config.hist_head = 0;
}

/* `mv tmp db` over an existing db: db's history passes to the arriving file (whose own
 * history, that of a path that no longer exists, goes); on_move_in then adds the rename's
 * revision to it. src has left its path (its delete event is recorded). */
static void on_replace(state_t *st, obj_t *src, obj_t *dst)
{
    ASSERT(src->type == OBJ_FILE && dst->type == OBJ_FILE);
    free_history(src);
    src->u.config.hist = dst->u.config.hist;
    src->u.config.nhist = dst->u.config.nhist;
    src->u.config.hist_head = dst->u.config.hist_head;
    dst->u.config.hist = NULL;
    dst->u.config.nhist = dst->u.config.hist_head = 0;
}

static void on_unlink(state_t *st, obj_t *o) { record_event(st, o, CFG_EV_DELETE); }

/* History goes with the file. */
static void on_free(state_t *st, obj_t *o)
{
    if (o->type == OBJ_FILE && o->u.config.hist)
        free_history(o);
}

static int getxattr(const obj_t *o, const char *name, char *buf, size_t size)
{
    if (strcmp(name, "user.version") != 0)
        return -ENODATA;
    return tree_format_uint(buf, size, o->u.config.rev);
}


/* The history of o (at slot i from the oldest). */
static const cfg_version_t *version_at(const obj_t *o, uint8_t i)
{
    return &o->u.config.hist[(o->u.config.hist_head + i) % o->u.config.nhist];
}

/* Fields: u64 rev, u8 n, n x (u64 rev, bytes value), oldest first. */
static void snap_fields(snapout_t *o, const obj_t *ob)
{
    so_u64(o, ob->u.config.rev);
    uint8_t n = ob->type == OBJ_FILE && ob->u.config.hist ? ob->u.config.nhist : 0;
    so_u8(o, n);
    for (uint8_t i = 0; i < n; i++) {
        const cfg_version_t *v = version_at(ob, i);
        so_u64(o, v->rev);
        so_blob(o, v->val->data, v->val->len);
    }
}

static int restore_fields(snapin_t *in, obj_t *ob)
{
    ob->u.config.rev = si_u64(in);
    uint8_t n = si_u8(in);
    if (in->err)
        return in->err;
    if (n > CONFIG_HISTORY || (n && ob->type != OBJ_FILE))
        return -QERR_CORRUPT;
    if (!n)
        return 0;
    ob->u.config.hist = xcalloc(CONFIG_HISTORY, sizeof(cfg_version_t));
    ob->u.config.hist_head = 0;
    for (uint8_t i = 0; i < n; i++) {
        uint64_t rev = si_u64(in);
        uint32_t len = si_u32(in);
        if (in->err || len > TREE_VALUE_MAX)
            return in->err ? in->err : -QERR_CORRUPT;
        blob_t *b = blob_xnew(NULL, len);
        si_bytes(in, b->data, len);
        ob->u.config.hist[i].rev = rev;
        ob->u.config.hist[i].val = b;
        ob->u.config.nhist = (uint8_t)(i + 1);
    }
    return in->err;
}

static const tree_hooks_t config_tree = {
    .at_reserved = 1,
    .on_put = on_put,
    .on_excl_create = on_excl_create,
    .on_symlink = on_symlink,
    .on_unlink = on_unlink,
    .on_replace = on_replace,
    .on_move_in = on_move_in,
    .on_free = on_free,
    .getxattr = getxattr,
    /* no listxattr: user.version is read by name and never listed, so that copies that
     * keep xattrs (rsync -X, tar --xattrs, cp --preserve=all) do not try to set it */
    .snap_fields = snap_fields,
    .restore_fields = restore_fields,
};

/* ---- apply, lifetime, snapshot ---- */

/* Tree commands only; a command that took revisions tells `.events` readers. */
static int apply(state_t *st, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res, effects_t *fx)
{
    uint64_t rev = CF(st)->rev;
    int rc = tree_sm_apply(st, h, r, res);
    if (CF(st)->rev != rev)
        effects_add(fx, EFF_CONFIG_REV, NS_CONFIG, 0, 0)->u.config.rev = CF(st)->rev;
    return rc;
}

static void init(state_t *st)
{
    config_state_t *cf = xcalloc(1, sizeof(*cf));
    cf->events = xcalloc(CONFIG_EVENTS_KEPT, sizeof(cfg_event_t));
    st->ns_state[NS_CONFIG] = cf;
}

static void fini(state_t *st)
{
    config_state_t *cf = CF(st);
    for (size_t i = 0; i < CONFIG_EVENTS_KEPT; i++)
        free(cf->events[i].path);
    free(cf->events);
    free(cf);
    st->ns_state[NS_CONFIG] = NULL;
}

/* Section: u64 rev, u64 events ever recorded, then the kept ones oldest first: u64 rev,
 * u8 op, bytes path. */
static void snapshot(const state_t *st, snapout_t *o)
{
    const config_state_t *cf = CF(st);
    so_u64(o, cf->rev);
    so_u64(o, cf->nevents);
    for (uint64_t i = first_kept(cf); i < cf->nevents; i++) {
        const cfg_event_t *e = event_at(cf, i);
        so_u64(o, e->rev);
        so_u8(o, e->op);
        so_blob(o, e->path, (uint32_t)strlen(e->path));
    }
}

static int restore(state_t *st, snapin_t *in)
{
    config_state_t *cf = CF(st);
    cf->rev = si_u64(in);
    cf->nevents = si_u64(in);
    for (uint64_t i = first_kept(cf); i < cf->nevents && !in->err; i++) {
        cfg_event_t *e = &cf->events[i % CONFIG_EVENTS_KEPT];
        e->rev = si_u64(in);
        e->op = si_u8(in);
        uint32_t len = si_u32(in);
        if (in->err || len > TREE_PATH_MAX)
            return in->err ? in->err : -QERR_CORRUPT;
        e->path = xmalloc(len + 1);
        si_bytes(in, e->path, len);
        e->path[len] = 0;
        if (!in->err && memchr(e->path, 0, len))   /* snapshot writes strlen bytes */
            return si_corrupt(in, "config: an event path with a NUL byte");
    }
    if (in->err)
        return in->err;
    const char *why = config_sm_verify(st);
    if (why)
        return si_corrupt(in, why);
    /* Parked .events reads and pollers may have something to read in the entries this
     * snapshot replaced (a node that caught up by InstallSnapshot): wake them as an apply
     * would (fs/state.c delivers a restore's effects after the lock). */
    effects_add(&st->outbox, EFF_CONFIG_REV, NS_CONFIG, 0, 0)->u.config.rev = cf->rev;
    return 0;
}

/* ---- read API ---- */

uint64_t config_sm_rev(const state_t *st) { return CF(st)->rev; }

uint64_t config_sm_obj_rev(const obj_t *o) { return o->u.config.rev; }

blob_t *config_sm_version(const obj_t *o, uint64_t rev)
{
    if (o->ns != NS_CONFIG || o->type != OBJ_FILE || !o->u.config.hist)
        return NULL;
    for (int i = 0; i < o->u.config.nhist; i++)
        if (o->u.config.hist[i].rev == rev)
            return o->u.config.hist[i].val;
    return NULL;
}

uint64_t config_sm_oldest_rev(const state_t *st)
{
    const config_state_t *cf = CF(st);
    return cf->nevents ? event_at(cf, first_kept(cf))->rev : 0;
}

int config_sm_events_stale(const state_t *st, uint64_t after)
{
    /* Every event with rev > after must still be held: the one at after + 1 at least. */
    return CF(st)->nevents > CONFIG_EVENTS_KEPT && after + 1 < config_sm_oldest_rev(st);
}

/* Absolute position (in [first kept, nevents]) of the first event with rev > after. */
static uint64_t event_pos_after(const config_state_t *cf, uint64_t after)
{
    uint64_t lo = first_kept(cf), hi = cf->nevents;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (event_at(cf, mid)->rev <= after)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int below(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return n == 0 || (strncmp(path, dir, n) == 0 && path[n] == '/');
}

/* Writes path escaped for an `.events` line into out (room for 4 bytes per input byte + 1):
 * a backslash as `\\`, a newline as `\n`, any other byte below 0x20 as `\xHH`, so that no
 * name can forge or split a line (FILE-API §5). Returns the length. */
static size_t escape_path(const char *path, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if (*p == '\\') {
            out[n++] = '\\';
            out[n++] = '\\';
        } else if (*p == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else if (*p < 0x20) {
            out[n++] = '\\';
            out[n++] = 'x';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        } else {
            out[n++] = (char)*p;
        }
    }
    out[n] = 0;
    return n;
}

int config_read_events(const state_t *st, const char *dirpath, uint64_t *cursor, char *buf,
                       size_t size)
{
    const config_state_t *cf = CF(st);
    if (config_sm_events_stale(st, *cursor))
        return -ESTALE;
    size_t used = 0;
    for (uint64_t pos = event_pos_after(cf, *cursor); pos < cf->nevents; pos++) {
        const cfg_event_t *e = event_at(cf, pos);
        if (below(e->path, dirpath)) {
            char esc[4 * TREE_PATH_MAX + 1], line[4 * TREE_PATH_MAX + 64];
            ASSERT(strlen(e->path) <= TREE_PATH_MAX);
            escape_path(e->path, esc);
            int n = snprintf(line, sizeof(line), "%llu %s config/%s\n",
                             (unsigned long long)e->rev,
                             e->op == CFG_EV_PUT ? "put" : "delete", esc);
            ASSERT(n > 0 && (size_t)n < sizeof(line));
            if (used + (size_t)n > size)
                break;
            memcpy(buf + used, line, (size_t)n);
            used += (size_t)n;
        }
        *cursor = e->rev;
    }
    return (int)used;
}

/* ---- invariants ---- */

typedef struct fverify {
    uint64_t rev;
    const char *why;
} fverify_t;

static void verify_obj(void *arg, const obj_t *o)
{
    fverify_t *v = arg;
    if (v->why)
        return;
    if (o->u.config.rev > v->rev) {
        v->why = "config: an object's revision is above the counter";
    } else if (o->type != OBJ_FILE) {
        if (o->u.config.hist || o->u.config.nhist)
            v->why = "config: a directory or link with a history";
    } else if (!o->u.config.hist && !o->u.config.nhist && !o->u.config.rev && !o->val->len) {
        /* created empty by an exclusive create, no save published yet (on_excl_create) */
    } else if (!o->u.config.hist || !o->u.config.nhist || o->u.config.nhist > CONFIG_HISTORY ||
               o->u.config.hist_head >= o->u.config.nhist) {
        v->why = "config: a file without a history";
    } else {
        for (uint8_t i = 1; i < o->u.config.nhist; i++)
            if (version_at(o, i - 1)->rev >= version_at(o, i)->rev)
                v->why = "config: a file's history is not ordered by revision";
        const cfg_version_t *last = version_at(o, (uint8_t)(o->u.config.nhist - 1));
        if (last->rev != o->u.config.rev || last->val->len != o->val->len ||
            memcmp(last->val->data, o->val->data, o->val->len) != 0)
            v->why = "config: a file's newest version is not its value";
    }
}

const char *config_sm_verify(const state_t *st)
{
    const config_state_t *cf = CF(st);
    const obj_t *root = tree_root(st, NS_CONFIG);
    fverify_t v = { .rev = cf->rev };
    if (root->u.config.rev != cf->rev)
        return "config: the root's revision is not the counter";
    tree_walk(root, verify_obj, &v);
    if (v.why)
        return v.why;
    if (cf->nevents == 0)
        return cf->rev == 0 ? NULL : "config: revisions without events";
    uint64_t prev = 0;
    for (uint64_t i = first_kept(cf); i < cf->nevents; i++) {
        const cfg_event_t *e = event_at(cf, i);
        if (e->rev <= prev || e->rev > cf->rev || !e->path ||
            (e->op != CFG_EV_PUT && e->op != CFG_EV_DELETE))
            return "config: the event ring is not ordered by revision, or holds a bad event";
        prev = e->rev;
    }
    return prev == cf->rev ? NULL : "config: the newest event is not the newest revision";
}

void config_sm_check(const state_t *st) { SM_ASSERT_VERIFIED(config_sm_verify(st)); }

const ns_sm_t config_sm = {
    .init = init,
    .free = fini,
    .apply = apply,
    .snapshot = snapshot,
    .restore = restore,
    .check = config_sm_check,
    .tree = &config_tree,
};
