/* fs/bm25.c — the search/ query engine (see bm25.h): the query parser, the global
 * statistics over every shard, per-shard scoring into accumulators, the ranking and the
 * snippets. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fs/bm25.h"
#include "fs/search_sm.h"
#include "fs/tokenize.h"

enum { K_TERM, K_PHRASE, K_PREFIX };
enum { O_SHOULD, O_MUST, O_NOT };

typedef struct qterm {
    char t[TOK_TERM_MAX + 1];
    uint32_t len;
    double idf;
} qterm_t;

typedef struct clause {
    int kind, occur;
    qterm_t *terms;           /* K_TERM: 1, K_PHRASE: the phrase's, K_PREFIX: expansions */
    uint32_t n;
    char prefix[TOK_TERM_MAX + 1];
    uint32_t plen;
    double idf;               /* K_TERM: its idf; K_PHRASE: the sum of its terms' */
} clause_t;

typedef struct query {
    clause_t c[BM25_CLAUSES_MAX];
    uint32_t n;
    uint32_t limit;
    const char *why;
    uint8_t hfirst[256];      /* 1: some term the snippets highlight begins with this byte */
    /* Positive phrases are first scored with a bound (see "bounds" below): set when the
     * query has a positive phrase and no positive prefix* (whose many terms would make the
     * exact scoring of one document dear). */
    int bound_phrases;
} query_t;

static void query_free(query_t *q)
{
    for (uint32_t i = 0; i < q->n; i++)
        free(q->c[i].terms);
}

/* ---------------------------------------------------------------- parsing */

struct phr {
    qterm_t *v;
    uint32_t n;
    int over;
};

static int phr_one(void *arg, const tok_term_t *t)
{
    struct phr *p = arg;
    if (p->n == BM25_PHRASE_MAX) {
        p->over = 1;
        return 1;
    }
    memcpy(p->v[p->n].t, t->term, t->len);
    p->v[p->n].t[t->len] = '\0';
    p->v[p->n].len = (uint32_t)t->len;
    p->n++;
    return 0;
}

/* Adds the clause of text[0..len) (a word or a quoted phrase) with occur. 0 or -errno. The
 * terms are gathered on the stack and the clause keeps an array of exactly their number. */
static int add_words(query_t *q, const char *text, size_t len, int occur)
{
    qterm_t v[BM25_PHRASE_MAX];
    struct phr p = { .v = v };
    tokenize(text, len, phr_one, &p);
    if (p.over) {
        q->why = "a phrase has too many terms";
        return -EINVAL;
    }
    if (p.n == 0)                         /* punctuation only: nothing to look for */
        return 0;
    if (q->n == BM25_CLAUSES_MAX) {
        q->why = "too many clauses";
        return -EINVAL;
    }
    qterm_t *terms = malloc(p.n * sizeof(*terms));
    if (!terms)
        return -ENOMEM;
    memcpy(terms, v, p.n * sizeof(*terms));
    clause_t *c = &q->c[q->n++];
    c->kind = p.n == 1 ? K_TERM : K_PHRASE;
    c->occur = occur;
    c->terms = terms;
    c->n = p.n;
    return 0;
}

static int parse(query_t *q, const char *s, size_t len)
{
    q->limit = BM25_LIMIT_DEFAULT;
    size_t i = 0;
    while (i < len) {
        if (s[i] == ' ' || s[i] == '\t') {
            i++;
            continue;
        }
        int occur = O_SHOULD;
        if ((s[i] == '+' || s[i] == '-') && i + 1 < len && s[i + 1] != ' ' &&
            s[i + 1] != '\t') {
            occur = s[i] == '+' ? O_MUST : O_NOT;
            i++;
        }
        if (s[i] == '"') {
            const char *end = memchr(s + i + 1, '"', len - i - 1);
            if (!end) {
                q->why = "an unterminated quote";
                return -EINVAL;
            }
            int rc = add_words(q, s + i + 1, (size_t)(end - (s + i + 1)), occur);
            if (rc < 0)
                return rc;
            i = (size_t)(end - s) + 1;
            continue;
        }
        size_t j = i;
        while (j < len && s[j] != ' ' && s[j] != '\t')
            j++;
        const char *w = s + i;
        size_t wl = j - i;
        i = j;
        if (occur == O_SHOULD && wl > 6 && memcmp(w, "limit:", 6) == 0) {
            uint64_t v = 0;
            for (size_t k = 6; k < wl; k++) {
                if (w[k] < '0' || w[k] > '9' || v > BM25_LIMIT_MAX) {
                    v = 0;
                    break;
                }
                v = v * 10 + (uint64_t)(w[k] - '0');
            }
            if (v < 1 || v > BM25_LIMIT_MAX) {
                q->why = "limit:N needs N in 1..1000";
                return -EINVAL;
            }
            q->limit = (uint32_t)v;
            continue;
        }
        if (wl > 1 && w[wl - 1] == '*') {
            char f[TOK_TERM_MAX + 1];
            int fl = tokenize_fold_word(w, wl - 1, f, sizeof(f));
            if (fl <= 0 || memchr(w, '*', wl - 1)) {
                q->why = "a prefix* must be one term";
                return -EINVAL;
            }
            if (q->n == BM25_CLAUSES_MAX) {
                q->why = "too many clauses";
                return -EINVAL;
            }
            clause_t *c = &q->c[q->n++];
            c->kind = K_PREFIX;
            c->occur = occur;
            memcpy(c->prefix, f, (size_t)fl + 1);
            c->plen = (uint32_t)fl;
            continue;
        }
        int rc = add_words(q, w, wl, occur);
        if (rc < 0)
            return rc;
    }
    int positive = 0;
    for (uint32_t k = 0; k < q->n; k++)
        positive |= q->c[k].occur != O_NOT;
    if (!positive) {
        q->why = "no term to search for (a query needs a term that is not -excluded)";
        return -EINVAL;
    }
    return 0;
}

/* ---------------------------------------------------------------- statistics */

typedef struct stats {
    double n;                 /* documents */
    double avgdl;
} stats_t;

static double idf(const stats_t *s, uint64_t df)
{
    return log(1.0 + (s->n - (double)df + 0.5) / ((double)df + 0.5));
}

static uint64_t global_df(const sindex_t *const *ix, uint32_t n, const char *t, uint32_t len)
{
    uint64_t df = 0;
    for (uint32_t k = 0; k < n; k++) {
        const sterm_t *st = ix[k] ? search_sm_term(ix[k], t, len) : NULL;
        df += st ? st->n : 0;
    }
    return df;
}

typedef struct pset {
    UT_hash_handle hh;
    uint32_t len;
    char t[TOK_TERM_MAX + 1];
} pset_t;

static int pset_cmp(pset_t *a, pset_t *b)
{
    return strcmp(a->t, b->t);
}

/* Expands prefix clause c into the distinct terms of every shard that begin with it, in
 * byte order. 0, -E2BIG or -ENOMEM. */
static int expand(clause_t *c, const sindex_t *const *ix, uint32_t n, const char **why)
{
    pset_t *set = NULL, *e, *tmp;
    uint32_t count = 0;
    int rc = 0;
    /* a term begins with the prefix iff its head agrees with the prefix's in the prefix's
     * first (up to 8) bytes, and the rest of the prefix follows */
    uint64_t phead = search_sm_head(c->prefix, c->plen);
    uint64_t hmask = c->plen >= 8 ? ~0ULL : (1ULL << (8 * c->plen)) - 1;
    for (uint32_t k = 0; k < n && rc == 0; k++) {
        if (!ix[k])
            continue;
        unsigned char b0 = (unsigned char)c->prefix[0];
        for (uint32_t j = 0; j < ix[k]->nfirst[b0]; j++) {
            const sfirst_t *f = &ix[k]->by_first[b0][j];
            if (f->len < c->plen || (f->head & hmask) != phead ||
                (c->plen > 8 && memcmp(f->t->term + 8, c->prefix + 8, c->plen - 8) != 0))
                continue;
            const sterm_t *t = f->t;
            HASH_FIND(hh, set, t->term, t->len, e);
            if (e)
                continue;
            if (++count > BM25_PREFIX_MAX) {
                *why = "a prefix* stands for too many terms";
                rc = -E2BIG;
                break;
            }
            e = calloc(1, sizeof(*e));
            if (!e) {
                rc = -ENOMEM;
                break;
            }
            memcpy(e->t, t->term, t->len);
            e->len = t->len;
            HASH_ADD(hh, set, t, e->len, e);
        }
    }
    if (rc == 0) {
        HASH_SORT(set, pset_cmp);
        c->terms = count ? calloc(count, sizeof(*c->terms)) : NULL;
        if (count && !c->terms)
            rc = -ENOMEM;
    }
    uint32_t i = 0;
    HASH_ITER(hh, set, e, tmp) {
        if (rc == 0) {
            memcpy(c->terms[i].t, e->t, e->len + 1);
            c->terms[i].len = e->len;
            i++;
        }
        HASH_DEL(set, e);
        free(e);
    }
    c->n = rc == 0 ? count : 0;
    return rc;
}

/* ---------------------------------------------------------------- scoring */

/* A document's accumulator on the shard being scored, in an array indexed by the document's
 * slot (sdoc_t.slot, also in each of its postings, so the walk reads no document). An entry is zero until the document's first positive match,
 * which sets `seen` and puts the slot in the touched list (what is collected and cleared
 * after the shard). Every document's score is the sum of its clauses' parts added in the
 * same order whatever the layout (positive clauses in query order, a prefix's terms in byte
 * order), so the scores are the same bits on any number of shards. */
typedef struct acc {
    double score;
    double norm;              /* k1 * (1 - b + b * |d| / avgdl), at the first match */
    uint32_t must;            /* + clauses matched */
    int32_t last;             /* the last clause that matched it */
    uint8_t seen, neg;
    uint8_t bound;            /* some phrase part is a bound: score and must are bounds */
} acc_t;

typedef struct accs {
    acc_t *a;                 /* [cap] */
    uint32_t *touched;        /* the seen slots, in order of their first match */
    uint32_t ntouched;
} accs_t;

/* Each thread keeps its accumulator arrays from one query to the next, all zero between
 * queries (a query clears the entries it touched), so that a query does not zero an array
 * as long as the index: up to SCRATCH_MAX_SLOTS documents a shard (1 MiB of accumulators);
 * a larger index gets arrays of its own for each query. Freed when the thread ends. */
#define SCRATCH_MAX_SLOTS (1u << 15)

typedef struct scratch {
    acc_t *a;
    uint32_t *touched;
    uint64_t cap;
} scratch_t;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_ok;

static void scratch_free(void *p)
{
    scratch_t *sc = p;
    free(sc->a);
    free(sc->touched);
    free(sc);
}

static void scratch_init(void)
{
    scratch_ok = pthread_key_create(&scratch_key, scratch_free) == 0;
}

/* Arrays of at least `most` zeroed accumulators into A->a and A->touched: the thread's
 * (*own 0) or, for a large index or when memory is short for those, the query's own, to
 * free (*own 1). 0 or -ENOMEM. */
static int accs_get(accs_t *A, uint64_t most, int *own)
{
    pthread_once(&scratch_once, scratch_init);
    scratch_t *sc = scratch_ok && most <= SCRATCH_MAX_SLOTS ? pthread_getspecific(scratch_key)
                                                            : NULL;
    if (scratch_ok && most <= SCRATCH_MAX_SLOTS && (!sc || sc->cap < most)) {
        scratch_t *n = calloc(1, sizeof(*n));
        uint64_t cap = 1024;
        while (cap < most)
            cap *= 2;                     /* <= SCRATCH_MAX_SLOTS */
        if (n && (n->a = calloc(cap, sizeof(*n->a))) &&
            (n->touched = malloc(cap * sizeof(*n->touched))) &&
            pthread_setspecific(scratch_key, n) == 0) {
            n->cap = cap;
            if (sc)
                scratch_free(sc);
            sc = n;
        } else {
            if (n)
                scratch_free(n);
            sc = NULL;
        }
    }
    if (sc) {
        A->a = sc->a;
        A->touched = sc->touched;
        *own = 0;
        return 0;
    }
    *own = 1;
    if (!(A->a = calloc(most, sizeof(*A->a))) ||
        !(A->touched = malloc(most * sizeof(*A->touched)))) {
        free(A->a);
        A->a = NULL;
        A->touched = NULL;
        return -ENOMEM;
    }
    return 0;
}

/* The ranking key of a score: llround(score * 1e6), inline. Below 2^52 in magnitude the
 * fraction x - trunc(x) is exact, so comparing it with 0.5 rounds halves away from zero as
 * llround does; larger values (no BM25 score comes near) are left to llround. */
static inline long long score_key(double score)
{
    double x = score * 1e6;
    if (!(x > -4503599627370496.0 && x < 4503599627370496.0))
        return llround(x);
    long long t = (long long)x;
    double f = x - (double)t;
    return t + (f >= 0.5) - (f <= -0.5);
}

typedef struct hit {
    double score;
    long long key;            /* the score in millionths: the ranking key */
    const sdoc_t *doc;
    uint32_t shard;           /* the index of its shard in the query's */
    int bound;                /* score and key are upper bounds (acc_t.bound) */
} hit_t;

/* The BM25 length normalisation of a document of dl terms. */
static double doc_norm(const stats_t *s, uint32_t dl)
{
    return BM25_K1 * (1.0 - BM25_B + BM25_B * (double)dl / s->avgdl);
}

/* BM25's part of a term (or phrase) of weight w (its idf) occurring tf times. */
static double term_score(double w, uint32_t tf, double norm)
{
    return w * ((double)tf * (BM25_K1 + 1.0)) / ((double)tf + norm);
}

/* The accumulator of the document in slot of ix. */
static acc_t *acc_of(accs_t *A, const stats_t *s, const sindex_t *ix, uint32_t slot)
{
    acc_t *a = &A->a[slot];
    if (!a->seen) {
        a->seen = 1;
        a->last = -1;
        a->norm = doc_norm(s, ix->lens[slot]);
        A->touched[A->ntouched++] = slot;
    }
    return a;
}

/* Positive clause ci (c) matched a document with score part w. */
static void add_part(acc_t *a, const clause_t *c, int ci, double w)
{
    a->score += w;
    if (a->last != ci) {
        a->last = ci;
        if (c->occur == O_MUST)
            a->must++;
    }
}

/* A - clause matched the document in slot: it is dropped (a document no positive clause
 * matched is no hit anyway: the - clauses are scored last). */
static void exclude(accs_t *A, uint32_t slot)
{
    acc_t *a = &A->a[slot];
    if (a->seen)
        a->neg = 1;
}

static const spost_t *post_of(const sterm_t *t, uint64_t id)
{
    uint32_t lo = 0, hi = t->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (t->p[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < t->n && t->p[lo].id == id ? &t->p[lo] : NULL;
}

/* The first i >= from with t->p[i].id >= id (t->n if none): galloping from `from`, so
 * a walk over ascending ids costs O(log gap) a step. */
static uint32_t post_seek(const sterm_t *t, uint32_t from, uint64_t id)
{
    if (from >= t->n || t->p[from].id >= id)
        return from;
    uint32_t lo = from, step = 1, hi = from + 1;   /* p[lo] < id */
    while (hi < t->n && t->p[hi].id < id) {
        lo = hi;
        step = step < (1u << 30) ? step * 2 : step;
        hi = t->n - lo > step ? lo + step : t->n;
    }
    lo++;
    while (lo < hi) {                               /* p[lo - 1] < id, p[hi] >= id or end */
        uint32_t mid = lo + (hi - lo) / 2;
        if (t->p[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The same over ascending positions: the first i >= from with v[i] >= x (n if none). */
static uint32_t pos_seek(const uint32_t *v, uint32_t n, uint32_t from, uint64_t x)
{
    if (from >= n || v[from] >= x)
        return from;
    uint32_t lo = from, step = 1, hi = from + 1;
    while (hi < n && v[hi] < x) {
        lo = hi;
        step = step < (1u << 30) ? step * 2 : step;
        hi = n - lo > step ? lo + step : n;
    }
    lo++;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (v[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The phrase's frequency in one document: the starts x with term e at position x + e for
 * every e < n (ps[e]: the document's posting of term e). Walks the positions of the term
 * with the fewest, seeking the others forward. */
static uint32_t phrase_freq(const spost_t *const *ps, uint32_t n)
{
    uint32_t m = 0;
    for (uint32_t e = 1; e < n; e++)
        if (ps[e]->tf < ps[m]->tf)
            m = e;
    uint32_t at[BM25_PHRASE_MAX];
    for (uint32_t e = 0; e < n; e++)
        at[e] = 0;
    uint32_t freq = 0;
    for (uint32_t i = 0; i < ps[m]->tf; i++) {
        if (ps[m]->pos[i] < m)
            continue;                              /* the phrase would start before 0 */
        uint64_t x = ps[m]->pos[i] - m;
        int ok = 1;
        for (uint32_t e = 0; e < n && ok; e++) {
            if (e == m)
                continue;
            at[e] = pos_seek(ps[e]->pos, ps[e]->tf, at[e], x + e);
            if (at[e] == ps[e]->tf)
                return freq;                       /* no later start can match */
            ok = ps[e]->pos[at[e]] == x + e;
        }
        freq += (uint32_t)ok;
    }
    return freq;
}

#define PHRASE_BATCH 8

/* Scores phrase clause ci (c) in the documents of bps[0..nb) (each the postings of the
 * phrase's terms in one document, in document order): its frequency, and the document's
 * part or exclusion. */
static void phrase_score(accs_t *A, const clause_t *c, int ci, const sindex_t *ix,
                         const stats_t *s, const spost_t *const bps[][BM25_PHRASE_MAX],
                         uint32_t nb)
{
    for (uint32_t b = 0; b < nb; b++) {
        const spost_t *const *ps = bps[b];
        uint32_t freq = phrase_freq(ps, c->n);
        if (!freq)
            continue;
        if (c->occur == O_NOT) {
            exclude(A, ps[0]->slot);
        } else {
            acc_t *a = acc_of(A, s, ix, ps[0]->slot);
            add_part(a, c, ci, term_score(c->idf, freq, a->norm));
        }
    }
}

/* Scores clause ci on one shard's index into A (a - clause marks what it matches). */
static void score_clause(accs_t *A, const query_t *q, int ci, const sindex_t *ix,
                         const stats_t *s)
{
    const clause_t *c = &q->c[ci];
    if (c->kind == K_TERM || c->kind == K_PREFIX) {
        for (uint32_t e = 0; e < c->n; e++) {
            const sterm_t *t = search_sm_term(ix, c->terms[e].t, c->terms[e].len);
            if (!t)
                continue;
            if (c->occur == O_NOT) {
                for (uint32_t i = 0; i < t->n; i++)
                    exclude(A, t->p[i].slot);
                continue;
            }
            double w = c->terms[e].idf;
            for (uint32_t i = 0; i < t->n; i++) {
                acc_t *a = acc_of(A, s, ix, t->p[i].slot);
                add_part(a, c, ci, term_score(w, t->p[i].tf, a->norm));
            }
        }
        return;
    }
    /* a phrase: the documents holding every term (walking the rarest term's postings and
     * seeking the others forward), then the positions */
    const sterm_t *ts[BM25_PHRASE_MAX];
    uint32_t at[BM25_PHRASE_MAX], drv = 0;
    for (uint32_t e = 0; e < c->n; e++) {
        if (!(ts[e] = search_sm_term(ix, c->terms[e].t, c->terms[e].len)))
            return;
        at[e] = 0;
        if (ts[e]->n < ts[drv]->n)
            drv = e;
    }
    if (c->occur != O_NOT && q->bound_phrases) {
        /* Bounds: a document holding every term gets the part of the phrase's greatest
         * possible frequency, the least tf of its terms (each start of the phrase is a
         * distinct position of every term), and counts as matched; the positions are
         * looked at only for the documents that may rank (exact_score). */
        for (uint32_t i = 0; i < ts[drv]->n; i++) {
            uint64_t id = ts[drv]->p[i].id;
            uint32_t least = ts[drv]->p[i].tf;
            int all = 1, end = 0;
            for (uint32_t e = 0; e < c->n && all; e++) {
                if (e == drv)
                    continue;
                at[e] = post_seek(ts[e], at[e], id);
                if (at[e] == ts[e]->n) {
                    end = 1;
                    break;
                }
                all = ts[e]->p[at[e]].id == id;
                if (all && ts[e]->p[at[e]].tf < least)
                    least = ts[e]->p[at[e]].tf;
            }
            if (end)
                break;
            if (!all)
                continue;
            acc_t *a = acc_of(A, s, ix, ts[drv]->p[i].slot);
            add_part(a, c, ci, term_score(c->idf, least, a->norm));
            a->bound = 1;
        }
        return;
    }
    /* The documents holding every term are taken PHRASE_BATCH at a time: the positions of
     * each (an allocation of their own, rarely in the cache) are prefetched as it is
     * found, then the batch's frequencies are counted and scored in document order (so
     * the same additions in the same order as one at a time), the positions' cache misses
     * overlapping instead of following one another. */
    const spost_t *bps[PHRASE_BATCH][BM25_PHRASE_MAX];
    uint32_t nb = 0;
    for (uint32_t i = 0; i < ts[drv]->n; i++) {
        const spost_t **ps = bps[nb];
        uint64_t id = ts[drv]->p[i].id;
        int all = 1, end = 0;
        for (uint32_t e = 0; e < c->n && all; e++) {
            if (e == drv) {
                ps[e] = &ts[drv]->p[i];
                continue;
            }
            at[e] = post_seek(ts[e], at[e], id);
            if (at[e] == ts[e]->n) {
                end = 1;                           /* no later document has term e */
                break;
            }
            ps[e] = &ts[e]->p[at[e]];
            all = ps[e]->id == id;
        }
        if (end)
            break;
        if (!all)
            continue;
        for (uint32_t e = 0; e < c->n; e++)
            for (uint32_t l = 0; l < ps[e]->tf && l < 64; l += 16)
                __builtin_prefetch(ps[e]->pos + l);       /* up to 4 cache lines */
        if (++nb == PHRASE_BATCH) {
            phrase_score(A, c, ci, ix, s, bps, nb);
            nb = 0;
        }
    }
    phrase_score(A, c, ci, ix, s, bps, nb);
}

static inline int hit_cmp(const void *a, const void *b)
{
    const hit_t *x = a, *y = b;
    if (x->key != y->key)
        return x->key > y->key ? -1 : 1;
    return strcmp(x->doc->name, y->doc->name);
}

/* Keeps the best k of hits[0..n) (hit_cmp order) at the front, sorted; returns how many
 * (min(n, k)). A heap of the k best so far, its worst on top: O(n log k). */
static size_t top_k(hit_t *h, size_t n, size_t k)
{
    if (n <= k) {
        if (n)
            qsort(h, n, sizeof(*h), hit_cmp);
        return n;
    }
    /* h[0..k) becomes a heap whose root is the worst (the greatest under hit_cmp) */
    for (size_t i = 0; i < n; i++) {
        size_t at;
        if (i < k) {
            at = i;
            h[at] = h[i];
            while (at > 0 && hit_cmp(&h[(at - 1) / 2], &h[at]) < 0) {
                hit_t t = h[at];
                h[at] = h[(at - 1) / 2];
                h[(at - 1) / 2] = t;
                at = (at - 1) / 2;
            }
            continue;
        }
        if (hit_cmp(&h[i], &h[0]) >= 0)
            continue;                     /* not better than the worst kept */
        h[0] = h[i];
        at = 0;
        for (;;) {
            size_t l = 2 * at + 1, r = l + 1, m = at;
            if (l < k && hit_cmp(&h[l], &h[m]) > 0)
                m = l;
            if (r < k && hit_cmp(&h[r], &h[m]) > 0)
                m = r;
            if (m == at)
                break;
            hit_t t = h[at];
            h[at] = h[m];
            h[m] = t;
            at = m;
        }
    }
    qsort(h, k, sizeof(*h), hit_cmp);
    return k;
}

/* ---------------------------------------------------------------- bounds

 * A query with positive phrases (and no positive prefix*) scores them first with an upper
 * bound of their part (score_clause), and every document they touch gets a score that is
 * an upper bound of its true score: the parts are added in the same order, and IEEE
 * addition and term_score are monotone, so the bound is >= the true score bit for bit, and
 * its key >= the true key. The hits are then taken best bound first; a bounded one is
 * scored exactly (exact_score: the same parts, added in the same order, as without bounds,
 * so the same bits), and the taking stops once the k best exact hits so far all rank before
 * the next bound (no document left can enter them). The answer is that of scoring every
 * document exactly, while the positions of most documents are never read. */

/* The terms of the query's positive clauses (in clause order, a clause's in its order) on
 * each shard: terms[k * nt + j] is term j's on shard k (NULL where the shard lacks it), so
 * that scoring a document exactly looks no term up. */
typedef struct qterms {
    const sterm_t **t;
    uint32_t nt;
} qterms_t;

static int qterms_get(qterms_t *qt, const query_t *q, const sindex_t *const *ix, uint32_t n)
{
    qt->nt = 0;
    for (uint32_t ci = 0; ci < q->n; ci++)
        qt->nt += q->c[ci].occur != O_NOT ? q->c[ci].n : 0;
    qt->t = calloc((size_t)n * qt->nt + 1, sizeof(*qt->t));
    if (!qt->t)
        return -ENOMEM;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t j = 0;
        for (uint32_t ci = 0; ci < q->n; ci++) {
            const clause_t *c = &q->c[ci];
            for (uint32_t e = 0; c->occur != O_NOT && e < c->n; e++, j++)
                qt->t[(size_t)k * qt->nt + j] =
                    ix[k] ? search_sm_term(ix[k], c->terms[e].t, c->terms[e].len) : NULL;
        }
    }
    return 0;
}

/* The exact score of hit h (query q, statistics s, its shard's terms t): its parts in
 * clause order, as score_clause adds them. 1 and h's score and key when it is a hit (a
 * positive clause matched it and every + clause did; - clauses were applied already), else
 * 0. */
static int exact_score(const query_t *q, const stats_t *s, const sterm_t *const *t, hit_t *h)
{
    const sdoc_t *d = h->doc;
    double norm = doc_norm(s, d->idx->lens[d->slot]), score = 0;
    uint32_t must = 0, nmust = 0, j = 0;
    int any = 0;
    for (uint32_t ci = 0; ci < q->n; ci++) {
        const clause_t *c = &q->c[ci];
        if (c->occur == O_NOT)
            continue;
        nmust += c->occur == O_MUST;
        int matched = 0;
        if (c->kind == K_PHRASE) {
            const spost_t *ps[BM25_PHRASE_MAX];
            uint32_t e = 0;
            for (; e < c->n; e++)
                if (!t[j + e] || !(ps[e] = post_of(t[j + e], d->id)))
                    break;
            uint32_t freq = e == c->n ? phrase_freq(ps, c->n) : 0;
            if (freq) {
                score += term_score(c->idf, freq, norm);
                matched = 1;
            }
        } else {                          /* a term (no prefix* here: bound_phrases) */
            for (uint32_t e = 0; e < c->n; e++) {
                const spost_t *p = t[j + e] ? post_of(t[j + e], d->id) : NULL;
                if (p) {
                    score += term_score(c->terms[e].idf, p->tf, norm);
                    matched = 1;
                }
            }
        }
        j += c->n;
        any |= matched;
        must += matched && c->occur == O_MUST;
    }
    if (!any || must != nmust)
        return 0;
    h->score = score;
    h->key = score_key(score);
    h->bound = 0;
    return 1;
}

/* Heaps of hits: `up` ranks first on top (the candidates, best bound first); `down` ranks
 * last on top (the k best exact hits so far, worst first). */
static inline int above(const hit_t *x, const hit_t *y, int up)
{
    return up ? hit_cmp(x, y) < 0 : hit_cmp(x, y) > 0;
}

static inline void sift_down(hit_t *h, size_t n, size_t at, int up)
{
    hit_t v = h[at];
    for (;;) {
        size_t l = 2 * at + 1, m = l;
        if (l >= n)
            break;
        if (l + 1 < n && above(&h[l + 1], &h[l], up))
            m = l + 1;
        if (!above(&h[m], &v, up))
            break;
        h[at] = h[m];
        at = m;
    }
    h[at] = v;
}

static inline void sift_up(hit_t *h, size_t at, int up)
{
    hit_t v = h[at];
    while (at > 0 && above(&v, &h[(at - 1) / 2], up)) {
        h[at] = h[(at - 1) / 2];
        at = (at - 1) / 2;
    }
    h[at] = v;
}

/* The best k of hits[0..n), some of whose scores are bounds (see above), exactly scored,
 * at the front in rank order; returns how many. The candidates are a heap of hits[] best
 * bound on top; the k best exact ones so far a heap of their own (best[k]), worst on top.
 * qt: the query's terms on every shard (qterms_get), shard[] each hit's shard. */
static size_t top_k_bounded(const query_t *q, const stats_t *s, const qterms_t *qt,
                            hit_t *hits, size_t n, size_t k, hit_t *best)
{
    for (size_t i = n / 2; i-- > 0;)
        sift_down(hits, n, i, 1);
    size_t nb = 0;
    while (n > 0) {
        hit_t h = hits[0];
        if (nb == k && hit_cmp(&best[0], &h) < 0)
            break;                        /* the k kept all rank before every bound left */
        hits[0] = hits[--n];
        sift_down(hits, n, 0, 1);
        if (h.bound && !exact_score(q, s, qt->t + (size_t)h.shard * qt->nt, &h))
            continue;                     /* the phrase is not there after all */
        if (nb < k) {
            best[nb] = h;
            sift_up(best, nb++, 0);
        } else if (hit_cmp(&h, &best[0]) < 0) {
            best[0] = h;
            sift_down(best, nb, 0, 0);
        }
    }
    if (nb)
        qsort(best, nb, sizeof(*best), hit_cmp);
    memcpy(hits, best, nb * sizeof(*best));
    return nb;
}

/* ---------------------------------------------------------------- output */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf_t;

static void sb_put(sbuf_t *b, const void *p, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_c(sbuf_t *b, char c) { sb_put(b, &c, 1); }

/* Whether the snippets highlight term t: a term of a positive clause. */
static int highlighted(const query_t *q, const char *t, size_t len)
{
    if (!q->hfirst[(unsigned char)t[0]])
        return 0;                         /* most terms of a text: no clause's first byte */
    for (uint32_t i = 0; i < q->n; i++) {
        const clause_t *c = &q->c[i];
        if (c->occur == O_NOT)
            continue;
        if (c->kind == K_PREFIX) {
            /* its terms are in byte order (expand): a binary search, after the prefix */
            if (len < c->plen || memcmp(t, c->prefix, c->plen) != 0)
                continue;
            uint32_t lo = 0, hi = c->n;
            while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                const qterm_t *m = &c->terms[mid];
                int r = memcmp(m->t, t, m->len < len ? m->len : len);
                if (r == 0 && m->len == len)
                    return 1;
                if (r < 0 || (r == 0 && m->len < len))
                    lo = mid + 1;
                else
                    hi = mid;
            }
            continue;
        }
        for (uint32_t e = 0; e < c->n; e++)
            if (c->terms[e].len == len && c->terms[e].t[0] == t[0] &&
                memcmp(c->terms[e].t, t, len) == 0)
                return 1;
    }
    return 0;
}

struct snip {
    const query_t *q;
    size_t ring[4];           /* starts of the last terms before the first match */
    uint32_t seen;
    int found;
    size_t base;              /* where the tokenizing began in the text */
    uint32_t pos0;            /* the position of the first term from there */
    uint32_t first;           /* no term before this position is highlighted */
    size_t wstart, wend;
    uint8_t *mark;            /* BM25_SNIPPET_BYTES + 64 bytes: highlighted bytes */
    /* Which of the positions first .. first + HL_SPAN - 1 hold a highlighted term (from the
     * postings: first_matches), or NULL: then, and past them, highlighted() decides. */
    const uint64_t *hl;
};

#define HL_SPAN 256           /* a window's terms after its first match: fewer (a term and
                                 its separator take 2 bytes or more, a CJK bigram 3) */

/* Whether the term at position pos (>= s->first), tk, is highlighted. */
static int snip_hl(const struct snip *s, uint32_t pos, const tok_term_t *tk)
{
    uint32_t d = pos - s->first;
    if (s->hl && d < HL_SPAN)
        return (int)(s->hl[d >> 6] >> (d & 63) & 1);
    return highlighted(s->q, tk->term, tk->len);
}

static int snip_one(void *arg, const tok_term_t *tk)
{
    struct snip *s = arg;
    size_t start = s->base + tk->start, tend = s->base + tk->end;
    int hl = 0;
    if (!s->found) {
        s->ring[s->seen++ % 4] = start;
        if (s->pos0 + tk->pos < s->first)
            return 0;                     /* before the first match (from the postings) */
        if (!(hl = snip_hl(s, s->pos0 + tk->pos, tk)))
            return 0;
        s->found = 1;
        s->wstart = s->seen >= 4 ? s->ring[s->seen % 4] : s->ring[0];
        if (tend - s->wstart > BM25_SNIPPET_BYTES)
            s->wstart = start;            /* no room for what comes before */
    } else if (tend - s->wstart > BM25_SNIPPET_BYTES) {
        return 1;                         /* the window is full */
    } else {
        hl = snip_hl(s, s->pos0 + tk->pos, tk);
    }
    size_t lim = s->wstart + BM25_SNIPPET_BYTES + 64;
    size_t end = tend < lim ? tend : lim;
    if (hl)
        memset(s->mark + (start - s->wstart), 1, end - start);
    if (end > s->wend)
        s->wend = end;
    return end < tend;
}

/* Gives snip_one the terms of text[s->base..len) as tokenize would while every byte it
 * reads is ASCII (the terms are then the runs of letters and digits: tokenize.h): 1 when it
 * is done (snip_one stopped it, or the text ended), 0 when it met a byte from 0x80 (a
 * separator, or more of the word: the caller starts over with tokenize). */
static int snip_ascii(struct snip *s, const char *text, size_t len)
{
    const unsigned char *p = (const unsigned char *)text + s->base;
    size_t n = len - s->base, i = 0;
    uint32_t pos = 0;
    char word[TOK_TERM_MAX];
    while (i < n) {
        if (p[i] >= 0x80)
            return 0;
        if (!tokenize_ascii_fold[p[i]]) {
            i++;
            continue;
        }
        size_t start = i, wl = 0;
        for (; i < n && tokenize_ascii_fold[p[i]]; i++)
            ;
        if (i < n && p[i] >= 0x80)
            return 0;                     /* the word may go on: tokenize decides */
        /* the folded word only when snip_hl may need it: a term from the first match on
         * that the postings' positions do not cover */
        uint32_t at = s->pos0 + pos;
        if (at >= s->first && (!s->hl || at - s->first >= HL_SPAN))
            for (size_t j = start; j < i && wl < TOK_TERM_MAX; j++)
                word[wl++] = (char)tokenize_ascii_fold[p[j]];
        tok_term_t t = { .term = word, .len = wl, .pos = pos++, .start = start, .end = i };
        if (snip_one(s, &t))
            return 1;
    }
    return 1;
}

/* The first position of a term the snippets highlight in each hit's document, into
 * first[0..nhits) (UINT32_MAX if none), from the postings of its shard: each term is
 * looked up once a shard that has hits, then sought in every hit of that shard. And, when
 * hl is not NULL, which positions from there on (HL_SPAN of them, hl[h * HL_WORDS ..]) hold
 * such a term, so that the snippets need not compare the terms they read; 0, or -ENOMEM
 * for those (then the snippets compare). */
#define HL_WORDS (HL_SPAN / 64)

static int first_matches(const query_t *q, const sindex_t *const *ix, uint32_t n,
                         const hit_t *hits, size_t nhits, uint32_t *first, uint64_t *hl)
{
    struct found {
        size_t h;
        const spost_t *p;
    } *fv = NULL;                         /* every (hit, posting of a highlighted term) */
    size_t nf = 0, capf = 0;
    int rc = 0;
    for (size_t h = 0; h < nhits; h++)
        first[h] = UINT32_MAX;
    for (uint32_t k = 0; k < n; k++) {
        size_t h0 = 0;
        while (h0 < nhits && hits[h0].doc->idx != ix[k])
            h0++;
        if (!ix[k] || h0 == nhits)
            continue;                     /* no hit on this shard */
        for (uint32_t i = 0; i < q->n; i++) {
            const clause_t *c = &q->c[i];
            for (uint32_t e = 0; c->occur != O_NOT && e < c->n; e++) {
                const sterm_t *t = search_sm_term(ix[k], c->terms[e].t, c->terms[e].len);
                for (size_t h = h0; t && h < nhits; h++) {
                    if (hits[h].doc->idx != ix[k])
                        continue;
                    const spost_t *p = post_of(t, hits[h].doc->id);
                    if (!p)
                        continue;
                    if (p->pos[0] < first[h])
                        first[h] = p->pos[0];
                    if (hl && rc == 0 && nf == capf) {
                        size_t cap = capf ? 2 * capf : 64;
                        struct found *nv = realloc(fv, cap * sizeof(*nv));
                        if (!nv)
                            rc = -ENOMEM;
                        else
                            fv = nv, capf = cap;
                    }
                    if (hl && rc == 0)
                        fv[nf++] = (struct found){ h, p };
                }
            }
        }
    }
    if (hl && rc == 0) {
        memset(hl, 0, nhits * HL_WORDS * sizeof(*hl));
        for (size_t f = 0; f < nf; f++) {
            const spost_t *p = fv[f].p;
            uint32_t from = first[fv[f].h];
            uint64_t *bits = hl + fv[f].h * HL_WORDS;
            for (uint32_t i = pos_seek(p->pos, p->tf, 0, from);
                 i < p->tf && p->pos[i] - from < HL_SPAN; i++) {
                uint32_t d = p->pos[i] - from;
                bits[d >> 6] |= 1ULL << (d & 63);
            }
        }
    }
    free(fv);
    return rc;
}

/* Writes the snippet of d: the text around its first highlighted term, matched terms in
 * brackets, control characters and invalid bytes made visible as ' ' and '?', runs of
 * spaces collapsed. first: the position of that term (first_matches). The tokenizing
 * starts at the checkpoint (fs/search_sm.h) before the three terms that precede it. */
static void snippet(sbuf_t *b, const query_t *q, const sdoc_t *d, uint32_t first,
                    const uint64_t *hl)
{
    uint8_t mark[BM25_SNIPPET_BYTES + 64 + 1];
    memset(mark, 0, sizeof(mark));
    struct snip s = { .q = q, .mark = mark, .hl = first != UINT32_MAX ? hl : NULL };
    const char *text = (const char *)d->text->data;
    if (first != UINT32_MAX) {
        s.first = first;                  /* none of the earlier terms is highlighted */
        if (d->nckpt) {
            uint32_t j = (first >= 3 ? first - 3 : 0) / SEARCH_CKPT;
            j = j < d->nckpt ? j : d->nckpt - 1;
            s.base = d->ckpt[j];
            s.pos0 = j * SEARCH_CKPT;
        }
    }
    struct snip s0 = s;
    if (!snip_ascii(&s, text, d->text->len)) {
        s = s0;                           /* not all ASCII: from the start, the full way */
        memset(mark, 0, sizeof(mark));
        tokenize(text + s.base, d->text->len - s.base, snip_one, &s);
    }
    if (!s.found) {
        s.wstart = 0;
        s.wend = d->text->len < BM25_SNIPPET_BYTES ? d->text->len : BM25_SNIPPET_BYTES;
    }
    /* at most two bytes out per byte of the window (a bracket and the byte), and a ']' */
    char o[2 * (BM25_SNIPPET_BYTES + 64) + 2];
    size_t on = 0;
    int in = 0, space = 0;
    size_t i = s.wstart;
    while (i < s.wend) {
        int m = mark[i - s.wstart];
        if (m != in) {
            o[on++] = m ? '[' : ']';
            in = m;
            space = 0;
        }
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c == 0x7f || c == ' ') {
            if (!space)
                o[on++] = ' ';
            space = 1;
            i++;
            continue;
        }
        space = 0;
        if (c < 0x80) {
            /* printable ASCII: the run of it with the same mark at once */
            size_t j = i + 1;
            while (j < s.wend && mark[j - s.wstart] == m && (unsigned char)text[j] > ' ' &&
                   (unsigned char)text[j] < 0x7f)
                j++;
            memcpy(o + on, text + i, j - i);
            on += j - i;
            i = j;
            continue;
        }
        size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
                 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        int ok = n > 0 && i + n <= s.wend;
        for (size_t k = 1; ok && k < n; k++)
            ok = ((unsigned char)text[i + k] & 0xc0) == 0x80;
        if (ok) {
            memcpy(o + on, text + i, n);
            on += n;
            i += n;
        } else {
            o[on++] = '?';
            i++;
        }
    }
    if (in)
        o[on++] = ']';
    sb_put(b, o, on);
}

/* A document name, its tab, newline and backslash escaped: the runs between them in one
 * put each. */
static void put_name(sbuf_t *b, const char *name)
{
    const char *p = name;
    for (;;) {
        size_t run = strcspn(p, "\t\n\\");
        sb_put(b, p, run);
        p += run;
        if (!*p)
            return;
        sb_put(b, *p == '\t' ? "\\t" : *p == '\n' ? "\\n" : "\\\\", 2);
        p++;
    }
}

/* A score of key millionths and a tab: the text of printf's "%.6f\t" for key / 1e6. Below
 * 10^15 in magnitude it is key's digits with a point before the last six (the double
 * nearest to key / 10^6 is then within 2^-53 of it relatively, under 0.13 millionths, so
 * "%.6f" rounds back to key's digits), written here without printf; larger keys (no BM25
 * score comes near) are left to printf. */
static void put_score(sbuf_t *b, long long key)
{
    char num[64];
    if (key >= 1000000000000000LL || key <= -1000000000000000LL) {
        int l = snprintf(num, sizeof(num), "%.6f\t", (double)key / 1e6);
        sb_put(b, num, (size_t)l);
        return;
    }
    char *e = num + sizeof(num), *p = e;
    unsigned long long v = key < 0 ? 0ULL - (unsigned long long)key : (unsigned long long)key;
    *--p = '\t';
    for (int i = 0; i < 6; i++, v /= 10)
        *--p = (char)('0' + v % 10);
    *--p = '.';
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (key < 0)
        *--p = '-';
    sb_put(b, p, (size_t)(e - p));
}

/* ---------------------------------------------------------------- the query */

int bm25_query(state_t *const *st, uint32_t n, const char *index, const char *qs, size_t qlen,
               char **out, size_t *outlen, const char **why)
{
    *out = NULL;
    *outlen = 0;
    query_t *q = calloc(1, sizeof(*q));
    const sindex_t **ix = calloc(n ? n : 1, sizeof(*ix));
    hit_t *hits = NULL;
    size_t nhits = 0, caphits = 0;
    uint32_t *first = NULL;           /* each hit's first highlighted position */
    uint64_t *hl = NULL;              /* each hit's highlighted positions from there */
    sbuf_t b = { 0 };
    int rc = q && ix ? 0 : -ENOMEM;
    if (rc == 0)
        rc = parse(q, qs, qlen);
    /* 1. global statistics, from every shard, before any score */
    stats_t s = { 0 };
    uint64_t total = 0;
    for (uint32_t k = 0; rc == 0 && k < n; k++) {
        ix[k] = search_sm_index(st[k], index);
        if (ix[k]) {
            s.n += (double)ix[k]->ndocs;
            total += ix[k]->total_len;
        }
    }
    if (rc < 0 || s.n == 0)
        goto done;
    s.avgdl = (double)total / s.n;
    if (s.avgdl <= 0)
        s.avgdl = 1;                      /* every document empty: dl / avgdl is 0 anyway */
    for (uint32_t i = 0; rc == 0 && i < q->n; i++) {
        clause_t *c = &q->c[i];
        if (c->kind == K_PREFIX)
            rc = expand(c, ix, n, &q->why);
        c->idf = 0;
        for (uint32_t e = 0; rc == 0 && e < c->n; e++) {
            c->terms[e].idf = idf(&s, global_df(ix, n, c->terms[e].t, c->terms[e].len));
            c->idf += c->terms[e].idf;
        }
    }
    uint32_t nmust = 0;
    for (uint32_t i = 0; i < q->n; i++) {
        const clause_t *c = &q->c[i];
        nmust += c->occur == O_MUST;
        if (c->occur == O_NOT)
            continue;
        if (c->kind == K_PREFIX)
            q->hfirst[(unsigned char)c->prefix[0]] = 1;
        for (uint32_t e = 0; e < c->n; e++)
            q->hfirst[(unsigned char)c->terms[e].t[0]] = 1;
    }
    int pos_phrase = 0, pos_prefix = 0;
    for (uint32_t i = 0; i < q->n; i++) {
        pos_phrase |= q->c[i].occur != O_NOT && q->c[i].kind == K_PHRASE;
        pos_prefix |= q->c[i].occur != O_NOT && q->c[i].kind == K_PREFIX;
    }
    q->bound_phrases = pos_phrase && !pos_prefix;
    int bounded = 0;                      /* some hit's score is a bound */
    /* 2. each shard's documents scored against the global statistics, into accumulators
     *    indexed by the documents' slots (one array, as long as the largest shard's, reused
     *    shard after shard: only the touched entries are cleared) */
    uint64_t most = 0;
    for (uint32_t k = 0; k < n; k++)
        if (ix[k] && ix[k]->nslots > most)
            most = ix[k]->nslots;
    accs_t A = { 0 };
    int own = 0;                          /* A is this query's own, not the thread's */
    if (rc == 0)
        rc = accs_get(&A, most, &own);
    for (uint32_t k = 0; rc == 0 && k < n; k++) {
        if (!ix[k])
            continue;
        for (uint32_t i = 0; i < q->n; i++)
            if (q->c[i].occur != O_NOT)
                score_clause(&A, q, (int)i, ix[k], &s);
        for (uint32_t i = 0; i < q->n; i++)
            if (q->c[i].occur == O_NOT)
                score_clause(&A, q, (int)i, ix[k], &s);
        for (uint32_t j = 0; j < A.ntouched; j++) {
            acc_t *a = &A.a[A.touched[j]];
            if (rc == 0 && !a->neg && a->must == nmust) {
                if (nhits == caphits) {
                    size_t cap = caphits ? caphits * 2 : 64;
                    hit_t *nh = realloc(hits, cap * sizeof(*nh));
                    if (!nh)
                        rc = -ENOMEM;
                    else
                        hits = nh, caphits = cap;
                }
                if (rc == 0)
                    hits[nhits++] = (hit_t){ .score = a->score,
                                             .key = score_key(a->score),
                                             .doc = ix[k]->slots[A.touched[j]],
                                             .shard = k,
                                             .bound = a->bound };
                bounded |= a->bound;
            }
            memset(a, 0, sizeof(*a));
        }
        A.ntouched = 0;
    }
    if (own) {
        free(A.a);
        free(A.touched);
    }
    if (rc < 0)
        goto done;
    /* 3. the ranking, and the lines */
    if (bounded) {
        size_t k = nhits < q->limit ? nhits : q->limit;
        hit_t *best = malloc((k ? k : 1) * sizeof(*best));
        qterms_t qt = { 0 };
        if (!best || qterms_get(&qt, q, ix, n) < 0) {
            free(best);
            rc = -ENOMEM;
            goto done;
        }
        nhits = top_k_bounded(q, &s, &qt, hits, nhits, k, best);
        free(best);
        free(qt.t);
    } else {
        nhits = top_k(hits, nhits, q->limit);
    }
    first = nhits ? malloc(nhits * sizeof(*first)) : NULL;
    if (nhits && !first) {
        rc = -ENOMEM;
        goto done;
    }
    hl = nhits ? malloc(nhits * HL_WORDS * sizeof(*hl)) : NULL;
    if (hl && first_matches(q, ix, n, hits, nhits, first, hl) < 0) {
        free(hl);                         /* the snippets compare the terms themselves */
        hl = NULL;
    }
    if (!hl)
        first_matches(q, ix, n, hits, nhits, first, NULL);
    for (size_t i = 0; i < nhits; i++) {
        put_score(&b, hits[i].key);
        put_name(&b, hits[i].doc->name);
        sb_c(&b, '\t');
        snippet(&b, q, hits[i].doc, first[i], hl ? hl + i * HL_WORDS : NULL);
        sb_c(&b, '\n');
    }
    if (b.oom)
        rc = -ENOMEM;
done:
    if (why)
        *why = q ? q->why : NULL;
    if (rc == 0) {
        *out = b.p;
        *outlen = b.len;
    } else {
        free(b.p);
    }
    free(hits);
    free(first);
    free(hl);
    if (q)
        query_free(q);
    free(q);
    free(ix);
    return rc;
}
