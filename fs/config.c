/* fs/config.c — config/ semantics (FILE-API §5) on top of the object tree: one global
 * revision counter, the last CONFIG_HISTORY versions per file, and the event history that
 * `.events` streams. All of it changes only in apply, so it is identical on every replica. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cluster/err.h"
#include "fs/config.h"

static void record_event(state_t *st, obj_t *o, uint8_t op)
{
    char path[4096];
    if (state_path(o, path, sizeof(path)) < 0)
        path[0] = 0;
    cfg_event_t *e = &st->events[st->nevents % CONFIG_EVENTS_KEPT];
    free(e->path);
    e->path = strdup(path);
    e->rev = st->config_rev;
    e->op = op;
    st->nevents++;
    for (obj_t *d = o->parent; d; d = d->parent)
        d->u.config.rev = st->config_rev;
}

void config_on_put(state_t *st, obj_t *o, uint64_t now_ms)
{
    (void)now_ms;
    st->config_rev++;
    o->u.config.rev = st->config_rev;
    if (!o->u.config.hist) {
        o->u.config.hist = calloc(CONFIG_HISTORY, sizeof(cfg_version_t));
        o->u.config.nhist = 0;
        o->u.config.hist_head = 0;
    }
    if (o->u.config.hist) {
        /* hist_head is the slot of the oldest version once the ring is full. */
        uint8_t slot;
        if (o->u.config.nhist < CONFIG_HISTORY) {
            slot = o->u.config.nhist++;
        } else {
            slot = o->u.config.hist_head;
            o->u.config.hist_head = (uint8_t)((slot + 1) % CONFIG_HISTORY);
            blob_unref(o->u.config.hist[slot].val);
        }
        o->u.config.hist[slot].rev = st->config_rev;
        o->u.config.hist[slot].val = blob_ref(o->val);
    }
    record_event(st, o, CFG_EV_PUT);
}

void config_on_delete(state_t *st, obj_t *o)
{
    if (o->type != OBJ_FILE)
        return;
    st->config_rev++;
    o->u.config.rev = st->config_rev;
    record_event(st, o, CFG_EV_DELETE);
}

void config_on_free(obj_t *o)
{
    if (o->type != OBJ_FILE || !o->u.config.hist)
        return;
    for (int i = 0; i < o->u.config.nhist; i++)
        blob_unref(o->u.config.hist[i].val);
    free(o->u.config.hist);
    o->u.config.hist = NULL;
    o->u.config.nhist = 0;
}

blob_t *state_config_version(const obj_t *o, uint64_t rev)
{
    if (o->ns != NS_CONFIG || o->type != OBJ_FILE || !o->u.config.hist)
        return NULL;
    for (int i = 0; i < o->u.config.nhist; i++)
        if (o->u.config.hist[i].rev == rev)
            return o->u.config.hist[i].val;
    return NULL;
}

uint64_t state_config_oldest_rev(const state_t *st)
{
    if (st->nevents == 0)
        return 0;
    uint64_t first = st->nevents > CONFIG_EVENTS_KEPT ? st->nevents - CONFIG_EVENTS_KEPT : 0;
    return st->events[first % CONFIG_EVENTS_KEPT].rev;
}

/* Absolute position (in [first kept, nevents]) of the first event with rev > after. */
static uint64_t event_pos_after(const state_t *st, uint64_t after)
{
    uint64_t lo = st->nevents > CONFIG_EVENTS_KEPT ? st->nevents - CONFIG_EVENTS_KEPT : 0;
    uint64_t hi = st->nevents;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (st->events[mid % CONFIG_EVENTS_KEPT].rev <= after)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

const cfg_event_t *state_config_event_after(const state_t *st, uint64_t after)
{
    uint64_t pos = event_pos_after(st, after);
    return pos < st->nevents ? &st->events[pos % CONFIG_EVENTS_KEPT] : NULL;
}

static int below(const char *path, const char *dir)
{
    if (!path)
        return 0;   /* an event whose path could not be stored (out of memory) */
    size_t n = strlen(dir);
    return n == 0 || (strncmp(path, dir, n) == 0 && path[n] == '/');
}

int config_read_events(const state_t *st, const char *dirpath, uint64_t *cursor, char *buf,
                       size_t size)
{
    uint64_t oldest = state_config_oldest_rev(st);
    /* Every event with rev > *cursor must still be held: the one at *cursor + 1 at least. */
    if (st->nevents > CONFIG_EVENTS_KEPT && *cursor + 1 < oldest)
        return -ESTALE;
    size_t used = 0;
    for (uint64_t pos = event_pos_after(st, *cursor); pos < st->nevents; pos++) {
        const cfg_event_t *e = &st->events[pos % CONFIG_EVENTS_KEPT];
        if (below(e->path, dirpath)) {
            char line[4200];
            int n = snprintf(line, sizeof(line), "%llu %s config/%s\n",
                             (unsigned long long)e->rev,
                             e->op == CFG_EV_PUT ? "put" : "delete", e->path);
            if (n < 0 || (size_t)n >= sizeof(line))
                n = 0;
            if (used + (size_t)n > size)
                break;
            memcpy(buf + used, line, (size_t)n);
            used += (size_t)n;
        }
        *cursor = e->rev;
    }
    return (int)used;
}

int config_getxattr(const obj_t *o, const char *name, char *buf, size_t size)
{
    if (strcmp(name, "user.version") != 0)
        return -ENODATA;
    return state_format_uint(buf, size, o->u.config.rev);
}

size_t config_listxattr(const obj_t *o, char *buf, size_t size)
{
    static const char v[] = "user.version";
    (void)o;
    if (sizeof(v) <= size)
        memcpy(buf, v, sizeof(v));
    return sizeof(v);
}

void config_snap_fields(snapout_t *o, const obj_t *ob)
{
    so_u64(o, ob->u.config.rev);
    uint8_t n = ob->type == OBJ_FILE && ob->u.config.hist ? ob->u.config.nhist : 0;
    so_u8(o, n);
    for (uint8_t i = 0; i < n; i++) {   /* oldest first */
        const cfg_version_t *v = &ob->u.config.hist[(ob->u.config.hist_head + i) % n];
        so_u64(o, v->rev);
        so_blob(o, v->val->data, v->val->len);
    }
}

int config_restore_fields(snapin_t *in, obj_t *ob)
{
    ob->u.config.rev = si_u64(in);
    uint8_t n = si_u8(in);
    if (in->err)
        return in->err;
    if (n > CONFIG_HISTORY || (n && ob->type != OBJ_FILE))
        return -QERR_CORRUPT;
    if (!n)
        return 0;
    ob->u.config.hist = calloc(CONFIG_HISTORY, sizeof(cfg_version_t));
    if (!ob->u.config.hist)
        return -QERR_NOMEM;
    for (uint8_t i = 0; i < n; i++) {
        uint64_t rev = si_u64(in);
        uint32_t len = si_u32(in);
        if (in->err || len > (1u << 20))
            return in->err ? in->err : -QERR_CORRUPT;
        blob_t *b = blob_new(NULL, len);
        if (!b)
            return -QERR_NOMEM;
        si_bytes(in, b->data, len);
        ob->u.config.hist[i].rev = rev;
        ob->u.config.hist[i].val = b;
        ob->u.config.nhist = (uint8_t)(i + 1);
    }
    ob->u.config.hist_head = 0;
    return in->err;
}

void config_snap_events(snapout_t *o, const state_t *st)
{
    uint64_t lo = st->nevents > CONFIG_EVENTS_KEPT ? st->nevents - CONFIG_EVENTS_KEPT : 0;
    so_u64(o, st->nevents);
    for (uint64_t i = lo; i < st->nevents; i++) {
        const cfg_event_t *e = &st->events[i % CONFIG_EVENTS_KEPT];
        so_u64(o, e->rev);
        so_u8(o, e->op);
        const char *path = e->path ? e->path : "";
        so_blob(o, path, (uint32_t)strlen(path));
    }
}

int config_restore_events(snapin_t *in, state_t *st)
{
    uint64_t total = si_u64(in);
    uint64_t lo = total > CONFIG_EVENTS_KEPT ? total - CONFIG_EVENTS_KEPT : 0;
    uint64_t prev = 0;
    for (uint64_t i = lo; i < total && !in->err; i++) {
        cfg_event_t *e = &st->events[i % CONFIG_EVENTS_KEPT];
        e->rev = si_u64(in);
        e->op = si_u8(in);
        uint32_t len = si_u32(in);
        if (in->err || len > 4096 || e->rev <= prev || e->rev > st->config_rev ||
            (e->op != CFG_EV_PUT && e->op != CFG_EV_DELETE))
            return -QERR_CORRUPT;
        prev = e->rev;
        e->path = malloc(len + 1);
        if (!e->path)
            return -QERR_NOMEM;
        si_bytes(in, e->path, len);
        e->path[len] = 0;
    }
    st->nevents = total;
    return in->err;
}
