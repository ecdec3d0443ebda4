/* fs/logs_slots.c — the slot (kernel inode) a lookup of a log answers on one mount, and
 * the write opens counted per slot (see logs_slots.h). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <uthash.h>
#include "fs/logs_slots.h"

typedef struct slent {
    uint64_t key;
    unsigned cur;                  /* the slot lookups answer */
    uint32_t writers;              /* write opens counted, all slots */
    uint32_t nwr[LGSL_SLOTS];      /* write opens counted per slot */
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

int lgsl_open_write(lgsl_t *t, uint64_t key, unsigned s)
{
    if (s >= LGSL_SLOTS)
        return -EINVAL;
    pthread_mutex_lock(&t->mu);
    slent_t *e = find_locked(t, key);
    if (!e) {
        e = calloc(1, sizeof(*e));
        if (!e) {
            pthread_mutex_unlock(&t->mu);
            return -ENOMEM;
        }
        e->key = key;
        HASH_ADD(hh, t->tab, key, sizeof(e->key), e);
    }
    e->nwr[s]++;
    e->writers++;
    if (s == e->cur) {
        /* the next free slot after s, cyclically: a slot freed a moment ago comes last (its
         * kernel inode may still be about; sharing it would be correct, only slower) */
        for (unsigned i = 1; i < LGSL_SLOTS; i++) {
            unsigned c = (s + i) % LGSL_SLOTS;
            if (e->nwr[c] == 0) {
                e->cur = c;
                break;
            }
        }
    }
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
        if (--e->writers == 0) {
            HASH_DEL(t->tab, e);           /* lookups answer slot 0 again */
            free(e);
        }
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
