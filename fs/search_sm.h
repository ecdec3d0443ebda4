/* fs/search_sm.h — the state machine of search/ (FILE-API §9, docs/SEARCH.md): per shard,
 * the indexes' documents (name, text, times) and a positional inverted index over them
 * (term -> postings sorted by document id, each with the term's positions), with the
 * statistics a global BM25 needs (documents, total length, document frequencies). The
 * documents of one index are spread over every shard by name (fs/route.c); an index is
 * declared (mkdir) on shard 0, and any shard holds a container for an index as long as it
 * has documents of it. The inverted index is derived: snapshots carry the documents only,
 * and restore rebuilds the index by tokenizing them (fs/tokenize.h), so it is the same on
 * every replica. The query engine (fs/bm25.h) reads the structures below under the read
 * locks of every shard. Deterministic; no FUSE, mount or node header. */
#ifndef QFS_FS_SEARCH_SM_H
#define QFS_FS_SEARCH_SM_H

#include <stddef.h>
#include <stdint.h>
#include <uthash.h>
#include "fs/cmd.h"
#include "fs/ns_sm.h"
#include "fs/state.h"
#include "fs/tree_sm.h"

#define SEARCH_DOC_MAX (1u << 20)     /* bytes of one document (FILE-API §1 "Sizes") */
#define SEARCH_Q ".q"                 /* the reserved control name inside an index */

/* Command opcodes of search/ (fields after the cmd.h header). */
enum search_op {
    SROP_MKIDX = 1,   /* str index, u8 excl: declare an index (shard 0) -> u64 id */
    SROP_RMIDX,       /* str index: undeclare it (-ENOTEMPTY while this shard has docs) */
    SROP_PUT,         /* str index, str doc, u8 flags (SEARCH_PUT_*), bytes text -> u64 id:
                         add or replace the document, (re)indexing it */
    SROP_DEL,         /* str index, str doc */
    SROP_RENAME,      /* str index, str from, str to, u8 noreplace: one shard only */
};
#define SEARCH_PUT_EXCL 1             /* -EEXIST when the document exists */
#define SEARCH_PUT_MUSTEXIST 2        /* -ENOENT when it does not (a save of an open doc) */

extern const ns_sm_t search_sm;

/* ---- command encoders: each starts b at time now; the caller proposes b and frees b->p */
void search_cmd_mkidx(cmdbuf_t *b, uint64_t now, const char *index, int excl);
void search_cmd_rmidx(cmdbuf_t *b, uint64_t now, const char *index);
void search_cmd_put(cmdbuf_t *b, uint64_t now, const char *index, const char *doc,
                    uint8_t flags, const void *text, size_t len);
void search_cmd_del(cmdbuf_t *b, uint64_t now, const char *index, const char *doc);
void search_cmd_rename(cmdbuf_t *b, uint64_t now, const char *index, const char *from,
                       const char *to, int noreplace);

/* ---- the structures (read-only outside search_sm.c; the caller holds the lock) ---- */

typedef struct sdoc {
    UT_hash_handle hh;            /* in its index's docs, by name */
    UT_hash_handle hid;           /* in the shard's docs by id */
    char *name;
    uint64_t id;                  /* unique in the shard, kept across replacements */
    struct sindex *idx;
    blob_t *text;                 /* the document's bytes (never NULL; readers ref it) */
    uint32_t len;                 /* its terms (BM25's document length) */
    uint32_t slot;                /* its place in idx->slots, for its life (derived) */
    uint64_t ctime_ms, mtime_ms;
    /* Where term SEARCH_CKPT * j begins in text, for j < nckpt = ceil(len / SEARCH_CKPT)
     * (derived): tokenizing from there gives the same terms from that position on, so a
     * snippet need not tokenize the text before it. */
    uint32_t *ckpt;
    uint32_t nckpt;
} sdoc_t;
#define SEARCH_CKPT 8         /* 4 bytes a document per 8 terms */

/* A document's posting of a term. Its document is ix->slots[slot]; a posting carries the
 * document's id and slot so that walking, seeking (by id) and scoring postings read no
 * document. */
typedef struct spost {
    uint64_t id;                  /* the document's id */
    uint32_t tf;                  /* occurrences = positions */
    uint32_t slot;                /* the document's slot */
    uint32_t *pos;                /* ascending */
} spost_t;

typedef struct sterm {
    UT_hash_handle hh;            /* in its index's terms */
    uint32_t fat;                 /* its entry in its index's by_first[term[0]] */
    char *term;
    uint32_t len;
    spost_t *p;                   /* sorted by p->id; n = the term's df in the shard */
    uint32_t n, cap;
} sterm_t;

/* An entry of a first-byte list: a term and, so that a prefix* can be matched without
 * reading the term, its length and first bytes. */
typedef struct sfirst {
    uint64_t head;                /* search_sm_head(term, len) */
    uint32_t len;
    sterm_t *t;
} sfirst_t;

/* A term's first bytes, up to 8, byte i in bits 8i..8i+7 (zero beyond len): two texts of
 * at least n <= 8 bytes begin alike iff their heads agree in the low 8n bits. */
static inline uint64_t search_sm_head(const char *s, size_t len)
{
    uint64_t h = 0;
    for (size_t i = 0; i < len && i < 8; i++)
        h |= (uint64_t)(unsigned char)s[i] << (8 * i);
    return h;
}

typedef struct sindex {
    UT_hash_handle hh;            /* in the shard's indexes, by name */
    char *name;
    uint64_t id;
    uint8_t declared;             /* mkdir'ed (shard 0) */
    uint64_t ctime_ms, mtime_ms;
    sdoc_t *docs;
    uint64_t ndocs;
    /* The documents by a small number kept for their life (derived): slots[d->slot] == d
     * and lens[d->slot] == d->len, NULL and 0 for a free slot; a new document takes the
     * last freed slot (free_slots, a stack) or slot nslots. So nslots is the most documents
     * the index had at once, and the query engine keeps per-document accumulators in an
     * array of nslots entries, reached from a posting (spost_t.slot) without reading the
     * document. */
    sdoc_t **slots;
    uint32_t *lens;
    uint32_t nslots, slots_cap;
    uint32_t *free_slots;
    uint32_t nfree, free_cap;
    uint64_t total_len;           /* sum of the documents' lengths */
    sterm_t *terms;
    /* The terms by their first byte, so that a prefix* looks at those that may match only
     * (derived, in no particular order: the query engine sorts what it finds): arrays of
     * nfirst[b] entries (a term's is by_first[b][t->fat]; a removed term's place is taken
     * by the last), walked without reading the terms. */
    sfirst_t *by_first[256];
    uint32_t nfirst[256], capfirst[256];
} sindex_t;

/* ---- read API (read or write lock held) ---- */

/* The version of the shard's search/ state: a number unique in the process, new at the
 * state's creation, at every command applied to it (whatever its result) and at a restore,
 * so two equal numbers mean the same documents (not replicated: a replica numbers its own
 * versions). Queries key their cached answers with it (fs/search_cache.h). */
uint64_t search_sm_gen(const state_t *st);

/* The index container named name on this shard, or NULL. */
const sindex_t *search_sm_index(const state_t *st, const char *name);
/* The index with id (this shard), or NULL. */
const sindex_t *search_sm_index_id(const state_t *st, uint64_t id);
const sdoc_t *search_sm_doc(const sindex_t *ix, const char *name);
const sdoc_t *search_sm_doc_id(const state_t *st, uint64_t id);
const sterm_t *search_sm_term(const sindex_t *ix, const char *term, size_t len);
/* Calls fn for every index container of the shard in name order until it returns nonzero. */
int search_sm_each_index(const state_t *st, int (*fn)(void *arg, const sindex_t *ix),
                         void *arg);
/* The documents of ix in name order (xmalloc'ed array; *n its length; NULL when none). */
const sdoc_t **search_sm_sorted_docs(const sindex_t *ix, size_t *n);

/* The first broken invariant, or NULL: indexes named validly, ids below next_id, counts
 * (ndocs, total_len = sum of lengths = sum of every posting's tf), each document's length
 * equal to its text's term count... (see search_sm.c), postings sorted by document id with
 * ascending positions, each document of the index, no empty term, undeclared containers
 * never empty. */
const char *search_sm_verify(const state_t *st);
void search_sm_check(const state_t *st);

#endif
