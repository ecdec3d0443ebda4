/* fs/search_cache.c — cached query answers, keyed by (index, query) and valid for the shard
 * versions they were computed on (see search_cache.h). A uthash table whose iteration order
 * is the use order (a hit moves its entry to the end), so eviction takes from the front. */
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
    blob_t *text;             /* the answer: a reference of the cache's own */
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
    blob_unref(e->text);
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

/* The key of (index, q): index '\0' q, its length in *len. Built in buf (cap bytes) when it
 * fits, else malloc'ed (*heap set; NULL when memory is short). */
static char *make_key(const char *index, const char *q, char *buf, size_t cap, size_t *len,
                      int *heap)
{
    size_t il = strlen(index), ql = strlen(q);
    char *k = buf;
    *heap = il + ql + 1 > cap;
    if (*heap && !(k = malloc(il + ql + 1)))
        return NULL;
    memcpy(k, index, il);
    k[il] = '\0';
    memcpy(k + il + 1, q, ql);
    *len = il + ql + 1;
    return k;
}

#define KEY_STACK 512             /* index and query names up to 255 bytes each */

blob_t *search_cache_get(search_cache_t *c, const char *index, const char *q,
                         const uint64_t *gens, uint32_t n)
{
    char buf[KEY_STACK];
    size_t kl = 0;
    int heap;
    char *key = make_key(index, q, buf, sizeof(buf), &kl, &heap);
    blob_t *hit = NULL;
    pthread_mutex_lock(&c->mu);
    qent_t *e = NULL;
    if (key)
        HASH_FIND(hh, c->tab, key, kl, e);
    if (e && (e->n != n || memcmp(e->gens, gens, n * sizeof(*gens)) != 0)) {
        drop(c, e);                       /* a shard changed: it can never be served again */
        e = NULL;
    }
    if (e) {
        hit = blob_ref(e->text);
        HASH_DEL(c->tab, e);              /* the most recently used goes last */
        HASH_ADD_KEYPTR(hh, c->tab, e->key, e->keylen, e);
        c->hits++;
    } else {
        c->misses++;
    }
    pthread_mutex_unlock(&c->mu);
    if (heap)
        free(key);
    return hit;
}

void search_cache_put(search_cache_t *c, const char *index, const char *q,
                      const uint64_t *gens, uint32_t n, blob_t *answer)
{
    qent_t *e = calloc(1, sizeof(*e));
    if (!e)
        return;
    int heap;
    e->key = make_key(index, q, NULL, 0, &e->keylen, &heap);   /* always its own copy */
    e->gens = malloc((n ? n : 1) * sizeof(*gens));
    if (!e->key || !e->gens) {
        ent_free(e);
        return;
    }
    memcpy(e->gens, gens, n * sizeof(*gens));
    e->n = n;
    e->text = blob_ref(answer);
    e->cost = sizeof(*e) + e->keylen + n * sizeof(*gens) + sizeof(blob_t) + answer->len;
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
