/* fs/bm25.h — the query engine of search/ (FILE-API §9, docs/SEARCH.md "Queries"): parses a
 * query (terms, +must, -mustnot, "phrases", prefix*, limit:N), gathers the global
 * statistics of the index from every shard first (documents N, total length, document
 * frequencies), then scores each shard's matching documents with BM25 (k1 = 1.2, b = 0.75,
 * idf = ln(1 + (N - n + 0.5)/(n + 0.5))) against those global statistics, so the ranking is
 * that of one index holding every document whatever the number of shards. Results are
 * sorted by score (to 1e-6, the printed precision), then by document name, and each gets a
 * snippet around its first matched term. Pure: reads fs/search_sm.h structures only (its
 * one state is each thread's reusable accumulator arrays, zero between queries); the
 * caller holds the read lock of every shard it passes. Thread-safe. */
#ifndef QFS_FS_BM25_H
#define QFS_FS_BM25_H

#include <stddef.h>
#include <stdint.h>
#include "fs/state.h"

#define BM25_K1 1.2
#define BM25_B 0.75
#define BM25_LIMIT_DEFAULT 10
#define BM25_LIMIT_MAX 1000
#define BM25_CLAUSES_MAX 32          /* clauses of one query */
#define BM25_PHRASE_MAX 32           /* terms of one phrase */
#define BM25_PREFIX_MAX 1024         /* distinct terms one prefix* may stand for */
#define BM25_SNIPPET_BYTES 160       /* text bytes of a snippet (markers and escapes aside) */

/* Runs query q (qlen bytes) on index `index` over the shards st[0..n) (every shard of the
 * node, read locks held). On success returns 0 and *out, a malloc'ed text of result lines
 * "<score>\t<doc>\t<snippet>\n" (score with 6 decimals; a tab, newline or backslash in a
 * document name is written \t, \n, \\; matched terms in the snippet are in [brackets]), its
 * length in *outlen (0 and *out NULL when nothing matched or the index is empty). Errors:
 * -EINVAL (malformed query: an unterminated quote, a bad limit:, a prefix that is not one
 * term, more than BM25_CLAUSES_MAX clauses or BM25_PHRASE_MAX phrase terms, no positive
 * term), -E2BIG (a prefix standing for more than BM25_PREFIX_MAX terms), -ENOMEM. *why, when
 * not NULL, gets a static text saying what was wrong. */
int bm25_query(state_t *const *st, uint32_t n, const char *index, const char *q, size_t qlen,
               char **out, size_t *outlen, const char **why);

#endif
