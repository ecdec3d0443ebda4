/* fs/logs_slots.c — the slot (kernel inode) a lookup of a log answers on one mount, and
 * the write opens and cached read opens counted per slot (see logs_slots.h). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <uthash.h>
#include "fs/logs_slots.h"

typedef struct slent {
    uint64_t key;
    unsigned cur;                  /* the slot lookups answer */
    uint32_t writers;              /* write opens counted, all slots */
    uint32_t readers;              /* cached read opens counted, all slots */
    unsigned rslots;               /* slots with a cached reader (<= LGSL_READER_SLOTS) */
    uint32_t nwr[LGSL_SLOTS];      /* write opens counted per slot */
    uint32_t nrd[LGSL_SLOTS];      /* cached read opens counted per slot */
    UT_hash_handle hh;
} slent_t;

struct lgsl {
    pthread_mutex_t mu;            /* guards tab */
    slent_t *tab;
};

lgsl_t *lgsl_new(void)
{
    lgsl_t *t = calloc(1, sizeof(*t));
    if (t)
        pthread_mutex_init(&t->mu, NULL);
    return t;
}

void lgsl_free(lgsl_t *t)
{
    if (!t)
        return;
    slent_t *e, *tmp;
    HASH_ITER(hh, t->tab, e, tmp) {
        HASH_DEL(t->tab, e);
        free(e);
    }
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static slent_t *find_locked(lgsl_t *t, uint64_t key)
{
    slent_t *e = NULL;
    HASH_FIND(hh, t->tab, &key, sizeof(key), e);
    return e;
}

unsigned lgsl_lookup(lgsl_t *t, uint64_t key)
{
    pthread_mutex_lock(&t->mu);
    slent_t *e = find_locked(t, key);
    unsigned s = e ? e->cur : 0;
    pthread_mutex_unlock(&t->mu);
    return s;
}

static int slot_empty(const slent_t *e, unsigned c)
{
    return e->nwr[c] == 0 && e->nrd[c] == 0;
}

/* Makes another slot than s current: the next one after s, cyclically, with neither writers
 * nor cached readers (a slot freed a moment ago comes last: its kernel inode may still be
 * about); else one without cached readers (writers share it: correct, slower); else s stays
 * (never with LGSL_READER_SLOTS < LGSL_SLOTS and s without readers). Locked. */
static void move_cur_locked(slent_t *e, unsigned s)
{
    for (unsigned i = 1; i < LGSL_SLOTS; i++) {
        unsigned c = (s + i) % LGSL_SLOTS;
        if (slot_empty(e, c)) {
            e->cur = c;
            return;
        }
    }
    if (e->nrd[s] == 0)
        return;
    for (unsigned i = 1; i < LGSL_SLOTS; i++) {
        unsigned c = (s + i) % LGSL_SLOTS;
        if (e->nrd[c] == 0) {
            e->cur = c;
            return;
        }
    }
}

/* The entry of key, created when missing; NULL when out of memory. Locked. */
static slent_t *get_locked(lgsl_t *t, uint64_t key)
{
    slent_t *e = find_locked(t, key);
    if (!e && (e = calloc(1, sizeof(*e)))) {
        e->key = key;
        HASH_ADD(hh, t->tab, key, sizeof(e->key), e);
    }
    return e;
}

/* After a release of slot s: with nothing counted the entry goes and lookups answer slot 0
 * again; else an empty s becomes current (the kernel's name entry likely holds it, since
 * the releasing open looked it up: a lone `echo x >> log` beside an open reader needs no
 * switch, and when every slot was taken the next writer gets s). Locked. */
static void released_locked(lgsl_t *t, slent_t *e, unsigned s)
{
    if (e->writers == 0 && e->readers == 0) {
        HASH_DEL(t->tab, e);
        free(e);
    } else if (slot_empty(e, s)) {
        e->cur = s;
    }
}

int lgsl_open_write(lgsl_t *t, uint64_t key, unsigned s)
{
    if (s >= LGSL_SLOTS)
        return -EINVAL;
    pthread_mutex_lock(&t->mu);
    slent_t *e = get_locked(t, key);
    if (!e) {
        pthread_mutex_unlock(&t->mu);
        return -ENOMEM;
    }
    e->nwr[s]++;
    e->writers++;
    if (s == e->cur)
        move_cur_locked(e, s);
    pthread_mutex_unlock(&t->mu);
    return 0;
}

void lgsl_close_write(lgsl_t *t, uint64_t key, unsigned s)
{
    if (s >= LGSL_SLOTS)
        return;
    pthread_mutex_lock(&t->mu);
    slent_t *e = find_locked(t, key);
    if (e && e->nwr[s] > 0) {
        e->nwr[s]--;
        e->writers--;
        released_locked(t, e, s);
    }
    pthread_mutex_unlock(&t->mu);
}

int lgsl_open_read(lgsl_t *t, uint64_t key, unsigned s)
{
    if (s >= LGSL_SLOTS)
        return 0;
    pthread_mutex_lock(&t->mu);
    int ok = 0;
    slent_t *e = find_locked(t, key);
    if (e && e->nwr[s] > 0)
        goto out;                          /* a writer's slot: its size cannot be trusted */
    if (e && e->nrd[s] == 0 && e->rslots >= LGSL_READER_SLOTS)
        goto out;                          /* keep slots free of readers for writers */
    if (!e && !(e = get_locked(t, key)))
        goto out;                          /* out of memory: direct is always right */
    if (e->nrd[s]++ == 0)
        e->rslots++;
    e->readers++;
    if (s == e->cur)
        move_cur_locked(e, s);
    ok = 1;
out:
    pthread_mutex_unlock(&t->mu);
    return ok;
}

void lgsl_close_read(lgsl_t *t, uint64_t key, unsigned s)
{
    if (s >= LGSL_SLOTS)
        return;
    pthread_mutex_lock(&t->mu);
    slent_t *e = find_locked(t, key);
    if (e && e->nrd[s] > 0) {
        if (--e->nrd[s] == 0)
            e->rslots--;
        e->readers--;
        released_locked(t, e, s);
    }
    pthread_mutex_unlock(&t->mu);
}

size_t lgsl_count(lgsl_t *t)
{
    pthread_mutex_lock(&t->mu);
    size_t n = HASH_COUNT(t->tab);
    pthread_mutex_unlock(&t->mu);
    return n;
}
