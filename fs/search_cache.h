/* fs/search_cache.h — the answers of search/ queries kept until the index changes
 * (docs/SEARCH.md "Query cache"). An answer is a pure function of the index name, the query
 * text and the search/ state of every shard; each shard state has a version number unique in
 * the process (search_sm_gen, new at every command applied and every restore), so an entry
 * keyed by (index, query) and holding the versions of every shard it was computed on is
 * served only while every shard still has those versions: any change on any shard, of any
 * index, makes it a miss (and the next answer replaces it). Memory is bounded: at most
 * max_bytes of entries (answer, key and bookkeeping counted), the least recently used
 * dropped first; an answer larger than a quarter of that is not kept. Thread-safe (one mutex;
 * answers are copied in and out under it). */
#ifndef QFS_FS_SEARCH_CACHE_H
#define QFS_FS_SEARCH_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define SEARCH_CACHE_BYTES (16u << 20)   /* the front's cache: 16 MiB */

typedef struct search_cache search_cache_t;

typedef struct search_cache_stats {
    uint64_t hits, misses;
    size_t bytes, entries;
} search_cache_stats_t;

/* A cache of at most max_bytes; NULL when out of memory. */
search_cache_t *search_cache_new(size_t max_bytes);
void search_cache_free(search_cache_t *c);

/* The answer of query q on index computed when shards 0..n had versions gens[0..n): 0 and
 * *out a malloc'ed copy of it (NULL when it is empty), its length in *len; -ENOENT when there
 * is none (a miss: never computed, dropped, or some shard changed since); -ENOMEM. */
int search_cache_get(search_cache_t *c, const char *index, const char *q,
                     const uint64_t *gens, uint32_t n, char **out, size_t *len);

/* Keeps text[0..len) as the answer of q on index at versions gens[0..n), replacing any older
 * one; nothing when it does not fit or memory is short (a later query computes it again). */
void search_cache_put(search_cache_t *c, const char *index, const char *q,
                      const uint64_t *gens, uint32_t n, const char *text, size_t len);

void search_cache_stats(search_cache_t *c, search_cache_stats_t *out);

#endif
