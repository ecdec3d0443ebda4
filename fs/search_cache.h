/* fs/search_cache.h — the answers of search/ queries kept until the index changes
 * (docs/SEARCH.md "Query cache"). An answer is a pure function of the index name, the query
 * text and the search/ state of every shard; each shard state has a version number unique in
 * the process (search_sm_gen, new at every command applied and every restore), so an entry
 * keyed by (index, query) and holding the versions of every shard it was computed on is
 * served only while every shard still has those versions: any change on any shard, of any
 * index, makes it a miss (and the next answer replaces it). Memory is bounded: at most
 * max_bytes of entries (answer, key and bookkeeping counted), the least recently used
 * dropped first; an answer larger than a quarter of that is not kept. Thread-safe (one mutex).
 * Answers are shared, immutable, reference-counted blobs (fs/tree_sm.h): a hit hands out a
 * reference (no copy, no allocation), which stays valid after the entry is dropped. Looking an
 * answer up cannot fail: anything but a hit is a miss, and the caller computes the answer. */
#ifndef QFS_FS_SEARCH_CACHE_H
#define QFS_FS_SEARCH_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include "fs/tree_sm.h"

#define SEARCH_CACHE_BYTES (16u << 20)   /* the front's cache: 16 MiB */

typedef struct search_cache search_cache_t;

typedef struct search_cache_stats {
    uint64_t hits, misses;
    size_t bytes, entries;
} search_cache_stats_t;

/* A cache of at most max_bytes; NULL when out of memory. */
search_cache_t *search_cache_new(size_t max_bytes);
void search_cache_free(search_cache_t *c);

/* The answer of query q on index computed when shards 0..n had versions gens[0..n): a new
 * reference to it (the caller unrefs it), or NULL when there is none (never computed,
 * dropped, or some shard changed since). Allocates nothing for index and q up to 255 bytes
 * each; a longer key whose copy finds memory short is a miss too. Never an error. */
blob_t *search_cache_get(search_cache_t *c, const char *index, const char *q,
                         const uint64_t *gens, uint32_t n);

/* Keeps answer (taking a reference of its own, never copying it) as the answer of q on index
 * at versions gens[0..n), replacing any older one; nothing when it does not fit or memory is
 * short (a later query computes it again). */
void search_cache_put(search_cache_t *c, const char *index, const char *q,
                      const uint64_t *gens, uint32_t n, blob_t *answer);

void search_cache_stats(search_cache_t *c, search_cache_stats_t *out);

#endif
