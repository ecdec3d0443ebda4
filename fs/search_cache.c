/* fs/search_cache.c — cached query answers, keyed by (index, query) and valid for the shard
 * versions they were computed on (see search_cache.h). A uthash table whose iteration order
 * is the use order (a hit moves its entry to the end), so eviction takes from the front. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>
#include "fs/search_cache.h"

typedef struct qent {
    UT_hash_handle hh;
    char *key;                /* index '\0' query: neither holds a NUL */
    size_t keylen;
    uint64_t *gens;
    uint32_t n;
    char *text;
    size_t len;
    size_t cost;              /* what it counts against max_bytes */
} qent_t;

struct search_cache {
    pthread_mutex_t mu;
    qent_t *tab;              /* least recently used first */
    size_t bytes, max;
    uint64_t hits, misses;
};

search_cache_t *search_cache_new(size_t max_bytes)
{
    search_cache_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    pthread_mutex_init(&c->mu, NULL);
    c->max = max_bytes;
    return c;
}

static void ent_free(qent_t *e)
{
    free(e->key);
    free(e->gens);
    free(e->text);
    free(e);
}

/* Unlinks and frees e. mu held. */
static void drop(search_cache_t *c, qent_t *e)
{
    HASH_DEL(c->tab, e);
    c->bytes -= e->cost;
    ent_free(e);
}

void search_cache_free(search_cache_t *c)
{
    if (!c)
        return;
    qent_t *e, *tmp;
    HASH_ITER(hh, c->tab, e, tmp)
        drop(c, e);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* index '\0' query into a malloc'ed key. */
static char *make_key(const char *index, const char *q, size_t *len)
{
    size_t il = strlen(index), ql = strlen(q);
    char *k = malloc(il + ql + 1);
    if (k) {
        memcpy(k, index, il);
        k[il] = '\0';
        memcpy(k + il + 1, q, ql);
        *len = il + ql + 1;
    }
    return k;
}

int search_cache_get(search_cache_t *c, const char *index, const char *q,
                     const uint64_t *gens, uint32_t n, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    size_t kl;
    char *key = make_key(index, q, &kl);
    if (!key)
        return -ENOMEM;
    int rc = -ENOENT;
    pthread_mutex_lock(&c->mu);
    qent_t *e;
    HASH_FIND(hh, c->tab, key, kl, e);
    if (e && (e->n != n || memcmp(e->gens, gens, n * sizeof(*gens)) != 0)) {
        drop(c, e);                       /* a shard changed: it can never be served again */
        e = NULL;
    }
    if (e) {
        rc = 0;
        if (e->len && !(*out = malloc(e->len)))
            rc = -ENOMEM;
        else if (e->len)
            memcpy(*out, e->text, e->len);
        *len = rc == 0 ? e->len : 0;
        HASH_DEL(c->tab, e);              /* the most recently used goes last */
        HASH_ADD_KEYPTR(hh, c->tab, e->key, e->keylen, e);
    }
    if (rc == 0)
        c->hits++;
    else if (rc == -ENOENT)
        c->misses++;
    pthread_mutex_unlock(&c->mu);
    free(key);
    return rc;
}

void search_cache_put(search_cache_t *c, const char *index, const char *q,
                      const uint64_t *gens, uint32_t n, const char *text, size_t len)
{
    qent_t *e = calloc(1, sizeof(*e));
    if (!e)
        return;
    e->key = make_key(index, q, &e->keylen);
    e->gens = malloc((n ? n : 1) * sizeof(*gens));
    e->text = len ? malloc(len) : NULL;
    if (!e->key || !e->gens || (len && !e->text)) {
        ent_free(e);
        return;
    }
    memcpy(e->gens, gens, n * sizeof(*gens));
    e->n = n;
    if (len)
        memcpy(e->text, text, len);
    e->len = len;
    e->cost = sizeof(*e) + e->keylen + n * sizeof(*gens) + len;
    pthread_mutex_lock(&c->mu);
    if (e->cost > c->max / 4) {
        pthread_mutex_unlock(&c->mu);
        ent_free(e);
        return;
    }
    qent_t *old;
    HASH_FIND(hh, c->tab, e->key, e->keylen, old);
    if (old)
        drop(c, old);
    while (c->tab && c->bytes + e->cost > c->max)
        drop(c, c->tab);                  /* the least recently used */
    HASH_ADD_KEYPTR(hh, c->tab, e->key, e->keylen, e);
    c->bytes += e->cost;
    pthread_mutex_unlock(&c->mu);
}

void search_cache_stats(search_cache_t *c, search_cache_stats_t *out)
{
    pthread_mutex_lock(&c->mu);
    out->hits = c->hits;
    out->misses = c->misses;
    out->bytes = c->bytes;
    out->entries = HASH_COUNT(c->tab);
    pthread_mutex_unlock(&c->mu);
}
