/* fs/ntable.c — a table of named objects in creation order (see ntable.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cluster/assert.h"
#include "fs/ntable.h"

nentry_t *ntable_find(const ntable_t *t, const char *name, size_t len)
{
    nentry_t *e, *head = t->by_name;
    HASH_FIND(hn, head, name, len, e);
    return e;
}

nentry_t *ntable_find_id(const ntable_t *t, uint64_t id)
{
    nentry_t *e, *head = t->by_id;
    HASH_FIND(hi, head, &id, sizeof(id), e);
    return e;
}

uint64_t ntable_last_id(const ntable_t *t)
{
    return t->tail ? t->tail->id : 0;
}

void ntable_add(ntable_t *t, nentry_t *e, const char *name, size_t len, uint64_t id)
{
    ASSERT(!ntable_find(t, name, len) && !ntable_find_id(t, id));
    ASSERT(id > ntable_last_id(t));
    e->id = id;
    e->name = xstrndup(name, len);
    e->namelen = len;
    HASH_ADD_KEYPTR(hn, t->by_name, e->name, len, e);
    HASH_ADD(hi, t->by_id, id, sizeof(e->id), e);
    e->next = NULL;
    e->prev = t->tail;
    if (t->tail)
        t->tail->next = e;
    else
        t->head = e;
    t->tail = e;
    t->n++;
}

void ntable_del(ntable_t *t, nentry_t *e)
{
    HASH_DELETE(hn, t->by_name, e);
    HASH_DELETE(hi, t->by_id, e);
    if (e->prev)
        e->prev->next = e->next;
    else
        t->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        t->tail = e->prev;
    e->prev = e->next = NULL;
    ASSERT(t->n > 0);
    t->n--;
    free(e->name);
    e->name = NULL;
}

void ntable_check(const ntable_t *t)
{
    uint64_t n = 0, last = 0;
    const nentry_t *prev = NULL;
    for (const nentry_t *e = t->head; e; prev = e, e = e->next) {
        ASSERT(e->prev == prev);
        ASSERT_MSG(e->id > last, "ids in creation order: %llu after %llu",
                   (unsigned long long)e->id, (unsigned long long)last);
        ASSERT(e->name && strlen(e->name) == e->namelen);
        ASSERT(ntable_find(t, e->name, e->namelen) == e);
        ASSERT(ntable_find_id(t, e->id) == e);
        last = e->id;
        n++;
    }
    ASSERT(t->tail == prev);
    ASSERT(n == t->n);
    ASSERT(HASH_CNT(hn, t->by_name) == n && HASH_CNT(hi, t->by_id) == n);
}

void ntable_snapshot(snapout_t *o, const ntable_t *t,
                     void (*fn)(void *arg, snapout_t *o, const nentry_t *e), void *arg)
{
    so_u32(o, (uint32_t)t->n);
    for (const nentry_t *e = t->head; e; e = e->next) {
        so_u64(o, e->id);
        so_blob(o, e->name, (uint32_t)e->namelen);
        fn(arg, o, e);
    }
}

/* Reads the key of the next entry of t into *k and checks it (see ntable_restore). */
static int restore_key(const ntable_t *t, snapin_t *in, uint64_t max_id, const char *what,
                       nkey_t *k)
{
    k->id = si_u64(in);
    int len = si_str(in, k->name, sizeof(k->name));
    if (in->err)
        return in->err;
    const char *why = NULL;
    if (len < 0 || names_check(k->name, (size_t)len, 0) < 0)
        why = "an invalid name";
    else if (ntable_find(t, k->name, (size_t)len))
        why = "a name held twice";
    else if (k->id <= ntable_last_id(t) || k->id > max_id)
        why = "an id out of creation order or above the ids handed out";
    if (why) {
        char msg[128];
        snprintf(msg, sizeof(msg), "%s table: %s", what, why);
        return si_corrupt(in, msg);
    }
    k->len = (size_t)len;
    return 0;
}

int ntable_restore(ntable_t *t, snapin_t *in, uint64_t max_id, const char *what,
                   int (*fn)(void *arg, snapin_t *in, const nkey_t *k), void *arg)
{
    uint32_t n = si_u32(in);
    for (uint32_t i = 0; i < n && !in->err; i++) {
        nkey_t k;
        int rc = restore_key(t, in, max_id, what, &k);
        if (rc == 0)
            rc = fn(arg, in, &k);
        if (rc < 0)
            return rc;
        ASSERT(ntable_last_id(t) == k.id);   /* fn linked its object under k */
    }
    return in->err;
}
