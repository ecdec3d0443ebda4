/* fs/search_sm.c — the search/ state machine (see search_sm.h): index containers, documents
 * and their positional postings; apply of MKIDX, RMIDX, PUT, DEL and RENAME; the snapshot
 * section (documents only, in name order) and its restore, which re-indexes; the check. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "cluster/assert.h"
#include "cluster/err.h"
#include "fs/names.h"
#include "fs/search_sm.h"
#include "fs/tokenize.h"

/* 1: the first version (docs/SEARCH.md "Snapshot section"). */
#define SRSNAP_VERSION 1

typedef struct sstate {
    sindex_t *indexes;            /* by name */
    sdoc_t *by_id;                /* every document of the shard, by id */
    uint64_t next_id;             /* the last id handed out (indexes and documents) */
    uint64_t gen;                 /* this version's number (search_sm_gen; not replicated) */
} sstate_t;

/* Version numbers, unique in the process: every state and every change gets the next. */
static uint64_t gen_counter;

static void new_gen(sstate_t *ss)
{
    ss->gen = __atomic_add_fetch(&gen_counter, 1, __ATOMIC_RELAXED);
}

static sstate_t *SS(const state_t *st) { return st->ns_state[NS_SEARCH]; }

/* ---------------------------------------------------------------- names */

static int reserved(const char *name, size_t len)
{
    return len == strlen(SEARCH_Q) && memcmp(name, SEARCH_Q, len) == 0;
}

/* 0 when name[0..len) may name an index or a document, else -EINVAL / -ENAMETOOLONG. */
static int check_name(const char *name, size_t len)
{
    int rc = names_check(name, len, 0);
    if (rc == 0 && reserved(name, len))
        rc = -EINVAL;
    return rc;
}

/* ---------------------------------------------------------------- postings */

/* The index of the first posting of t whose document id is >= id. */
static uint32_t post_find(const sterm_t *t, uint64_t id)
{
    uint32_t lo = 0, hi = t->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (t->p[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Positions of one term of a document while it is being indexed. */
typedef struct tpos {
    UT_hash_handle hh;
    uint32_t n, cap;
    uint32_t *pos;
    uint32_t len;
    char term[];
} tpos_t;

struct collecting {
    tpos_t *set;
    sdoc_t *d;
    uint32_t cap;
};

static int collect(void *arg, const tok_term_t *t)
{
    struct collecting *c = arg;
    tpos_t *e;
    HASH_FIND(hh, c->set, t->term, t->len, e);
    if (!e) {
        e = xcalloc(1, sizeof(*e) + t->len + 1);
        memcpy(e->term, t->term, t->len);
        e->len = (uint32_t)t->len;
        HASH_ADD(hh, c->set, term, e->len, e);
    }
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 4;
        e->pos = xrealloc(e->pos, e->cap * sizeof(*e->pos));
    }
    e->pos[e->n++] = t->pos;
    if (t->pos % SEARCH_CKPT == 0) {
        sdoc_t *d = c->d;
        if (d->nckpt == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 8;
            d->ckpt = xrealloc(d->ckpt, c->cap * sizeof(*d->ckpt));
        }
        d->ckpt[d->nckpt++] = (uint32_t)t->start;
    }
    return 0;
}

/* Tokenizes d's text into its postings and checkpoints (d has none yet). */
static void index_doc(sindex_t *ix, sdoc_t *d)
{
    struct collecting c = { .d = d };
    tpos_t *e, *tmp;
    tokenize((const char *)d->text->data, d->text->len, collect, &c);
    tpos_t *set = c.set;
    uint64_t len = 0;
    HASH_ITER(hh, set, e, tmp) {
        HASH_DEL(set, e);
        sterm_t *t;
        HASH_FIND(hh, ix->terms, e->term, e->len, t);
        if (!t) {
            t = xcalloc(1, sizeof(*t));
            t->term = xstrndup(e->term, e->len);
            t->len = e->len;
            HASH_ADD_KEYPTR(hh, ix->terms, t->term, t->len, t);
            unsigned char b = (unsigned char)t->term[0];
            if (ix->nfirst[b] == ix->capfirst[b]) {
                ix->capfirst[b] = ix->capfirst[b] ? ix->capfirst[b] * 2 : 16;
                ix->by_first[b] = xrealloc(ix->by_first[b],
                                           ix->capfirst[b] * sizeof(*ix->by_first[b]));
            }
            t->fat = ix->nfirst[b]++;
            ix->by_first[b][t->fat] = (sfirst_t){ .head = search_sm_head(t->term, t->len),
                                                  .len = t->len, .t = t };
        }
        if (t->n == t->cap) {
            t->cap = t->cap ? t->cap * 2 : 2;
            t->p = xrealloc(t->p, t->cap * sizeof(*t->p));
        }
        uint32_t at = post_find(t, d->id);
        ASSERT(at == t->n || t->p[at].id != d->id);
        memmove(t->p + at + 1, t->p + at, (t->n - at) * sizeof(*t->p));
        t->p[at] = (spost_t){ .id = d->id, .tf = e->n, .slot = d->slot, .pos = e->pos };
        t->n++;
        len += e->n;
        free(e);
    }
    ASSERT(len <= UINT32_MAX);
    d->len = (uint32_t)len;
    ix->lens[d->slot] = d->len;
    ix->total_len += len;
}

static int drop_one(void *arg, const tok_term_t *tk)
{
    void **a = arg;
    sindex_t *ix = a[0];
    const sdoc_t *d = a[1];
    sterm_t *t;
    HASH_FIND(hh, ix->terms, tk->term, tk->len, t);
    if (!t)
        return 0;                         /* a term seen earlier in this document */
    uint32_t at = post_find(t, d->id);
    if (at == t->n || t->p[at].id != d->id)
        return 0;
    free(t->p[at].pos);
    memmove(t->p + at, t->p + at + 1, (t->n - at - 1) * sizeof(*t->p));
    if (--t->n == 0) {
        HASH_DEL(ix->terms, t);
        unsigned char b = (unsigned char)t->term[0];
        sfirst_t *last = &ix->by_first[b][--ix->nfirst[b]];
        ix->by_first[b][t->fat] = *last;          /* the last takes its place */
        last->t->fat = t->fat;
        if (ix->nfirst[b] == 0) {
            free(ix->by_first[b]);
            ix->by_first[b] = NULL;
            ix->capfirst[b] = 0;
        }
        free(t->p);
        free(t->term);
        free(t);
    }
    return 0;
}

/* Removes d's postings (by tokenizing its text again). */
static void unindex_doc(sindex_t *ix, sdoc_t *d)
{
    void *a[2] = { ix, d };
    tokenize((const char *)d->text->data, d->text->len, drop_one, a);
    ix->total_len -= d->len;
    d->len = 0;
    ix->lens[d->slot] = 0;
    free(d->ckpt);
    d->ckpt = NULL;
    d->nckpt = 0;
}

/* ---------------------------------------------------------------- containers */

static sindex_t *find_index(const sstate_t *ss, const char *name, size_t len)
{
    sindex_t *ix;
    HASH_FIND(hh, ss->indexes, name, len, ix);
    return ix;
}

static sindex_t *add_index(sstate_t *ss, const char *name, size_t len, uint64_t id)
{
    sindex_t *ix = xcalloc(1, sizeof(*ix));
    ix->name = xstrndup(name, len);
    ix->id = id;
    HASH_ADD_KEYPTR(hh, ss->indexes, ix->name, len, ix);
    return ix;
}

static void free_index(sstate_t *ss, sindex_t *ix)
{
    ASSERT(ix->docs == NULL && ix->terms == NULL);
    for (int i = 0; i < 256; i++)
        ASSERT(ix->by_first[i] == NULL);
    HASH_DEL(ss->indexes, ix);
    free(ix->slots);
    free(ix->lens);
    free(ix->free_slots);
    free(ix->name);
    free(ix);
}

static void free_doc(sstate_t *ss, sindex_t *ix, sdoc_t *d)
{
    unindex_doc(ix, d);
    HASH_DEL(ix->docs, d);
    HASH_DELETE(hid, ss->by_id, d);
    ix->slots[d->slot] = NULL;            /* its slot is the next one taken */
    if (ix->nfree == ix->free_cap) {
        ix->free_cap = ix->free_cap ? 2 * ix->free_cap : 16;
        ix->free_slots = xrealloc(ix->free_slots, ix->free_cap * sizeof(*ix->free_slots));
    }
    ix->free_slots[ix->nfree++] = d->slot;
    ix->ndocs--;
    blob_unref(d->text);
    free(d->name);
    free(d);
}

/* An undeclared container goes with its last document. */
static void maybe_drop_index(sstate_t *ss, sindex_t *ix)
{
    if (!ix->declared && ix->ndocs == 0)
        free_index(ss, ix);
}

/* Adds document name to ix with id and text (a reference is taken over). */
static sdoc_t *add_doc(sstate_t *ss, sindex_t *ix, const char *name, size_t len, uint64_t id,
                       blob_t *text)
{
    sdoc_t *d = xcalloc(1, sizeof(*d));
    d->name = xstrndup(name, len);
    d->id = id;
    d->idx = ix;
    d->text = text;
    HASH_ADD_KEYPTR(hh, ix->docs, d->name, len, d);
    HASH_ADD(hid, ss->by_id, id, sizeof(d->id), d);
    if (ix->nfree) {
        d->slot = ix->free_slots[--ix->nfree];
    } else {
        ASSERT(ix->nslots < UINT32_MAX / 2);
        if (ix->nslots == ix->slots_cap) {
            ix->slots_cap = ix->slots_cap ? 2 * ix->slots_cap : 16;
            ix->slots = xrealloc(ix->slots, ix->slots_cap * sizeof(*ix->slots));
            ix->lens = xrealloc(ix->lens, ix->slots_cap * sizeof(*ix->lens));
        }
        d->slot = ix->nslots++;
    }
    ix->slots[d->slot] = d;
    ix->lens[d->slot] = 0;
    ix->ndocs++;
    index_doc(ix, d);
    return d;
}

/* ---------------------------------------------------------------- lifetime */

static void s_init(state_t *st)
{
    st->ns_state[NS_SEARCH] = xcalloc(1, sizeof(sstate_t));
    new_gen(SS(st));
}

static void s_free(state_t *st)
{
    sstate_t *ss = SS(st);
    if (!ss)
        return;
    sindex_t *ix, *itmp;
    HASH_ITER(hh, ss->indexes, ix, itmp) {
        sdoc_t *d, *dtmp;
        HASH_ITER(hh, ix->docs, d, dtmp)
            free_doc(ss, ix, d);
        free_index(ss, ix);
    }
    free(ss);
    st->ns_state[NS_SEARCH] = NULL;
}

/* ---------------------------------------------------------------- apply */

static void result_u64(sm_result_t *res, uint64_t v)
{
    if (res) {
        memcpy(res->data, &v, 8);
        res->len = 8;
    }
}

/* Reads a name field into a NUL-terminated copy in buf (NAME_MAX_BYTES + 1): its length, or
 * -EINVAL / -ENAMETOOLONG. */
static int get_name(cmdrd_t *r, char *buf)
{
    const char *p;
    size_t len = cmd_get_path(r, &p);
    if (r->err || len == 0)
        return -EINVAL;
    int rc = check_name(p, len);
    if (rc < 0)
        return rc;
    memcpy(buf, p, len);
    buf[len] = '\0';
    return (int)len;
}

static int apply_mkidx(sstate_t *ss, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res)
{
    char name[NAME_MAX_BYTES + 1];
    int len = get_name(r, name);
    uint8_t excl = cmd_get_u8(r);
    if (len < 0)
        return len;
    if (r->err || excl > 1)
        return -EINVAL;
    sindex_t *ix = find_index(ss, name, (size_t)len);
    if (ix && ix->declared) {
        if (excl)
            return -EEXIST;
        result_u64(res, ix->id);
        return 0;
    }
    if (!ix)
        ix = add_index(ss, name, (size_t)len, ++ss->next_id);
    ix->declared = 1;
    ix->ctime_ms = ix->mtime_ms = h->now_ms;
    result_u64(res, ix->id);
    return 0;
}

static int apply_rmidx(sstate_t *ss, cmdrd_t *r)
{
    char name[NAME_MAX_BYTES + 1];
    int len = get_name(r, name);
    if (len < 0)
        return len;
    sindex_t *ix = find_index(ss, name, (size_t)len);
    if (!ix || !ix->declared)
        return -ENOENT;
    if (ix->ndocs)
        return -ENOTEMPTY;
    free_index(ss, ix);
    return 0;
}

static int apply_put(sstate_t *ss, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res)
{
    char iname[NAME_MAX_BYTES + 1], dname[NAME_MAX_BYTES + 1];
    int ilen = get_name(r, iname);
    int dlen = ilen < 0 ? ilen : get_name(r, dname);
    uint8_t flags = cmd_get_u8(r);
    const uint8_t *text;
    size_t tlen = cmd_get_bytes(r, &text);
    if (ilen < 0 || dlen < 0)
        return ilen < 0 ? ilen : dlen;
    if (r->err || (flags & ~(SEARCH_PUT_EXCL | SEARCH_PUT_MUSTEXIST)))
        return -EINVAL;
    if (tlen > SEARCH_DOC_MAX)
        return -EFBIG;
    sindex_t *ix = find_index(ss, iname, (size_t)ilen);
    sdoc_t *d = ix ? (sdoc_t *)search_sm_doc(ix, dname) : NULL;
    if (d && (flags & SEARCH_PUT_EXCL))
        return -EEXIST;
    if (!d && (flags & SEARCH_PUT_MUSTEXIST))
        return -ENOENT;
    if (!ix)
        ix = add_index(ss, iname, (size_t)ilen, ++ss->next_id);
    blob_t *b = blob_xnew(text, tlen);
    if (d) {                              /* a replacement keeps the id */
        unindex_doc(ix, d);
        blob_unref(d->text);
        d->text = b;
        index_doc(ix, d);
    } else {
        d = add_doc(ss, ix, dname, (size_t)dlen, ++ss->next_id, b);
    }
    d->mtime_ms = d->ctime_ms = h->now_ms;
    ix->mtime_ms = h->now_ms;
    result_u64(res, d->id);
    return 0;
}

static int apply_del(sstate_t *ss, const cmd_hdr_t *h, cmdrd_t *r)
{
    char iname[NAME_MAX_BYTES + 1], dname[NAME_MAX_BYTES + 1];
    int ilen = get_name(r, iname);
    int dlen = ilen < 0 ? ilen : get_name(r, dname);
    if (ilen < 0 || dlen < 0)
        return ilen < 0 ? ilen : dlen;
    sindex_t *ix = find_index(ss, iname, (size_t)ilen);
    sdoc_t *d = ix ? (sdoc_t *)search_sm_doc(ix, dname) : NULL;
    if (!d)
        return -ENOENT;
    free_doc(ss, ix, d);
    ix->mtime_ms = h->now_ms;
    maybe_drop_index(ss, ix);
    return 0;
}

static int apply_rename(sstate_t *ss, const cmd_hdr_t *h, cmdrd_t *r)
{
    char iname[NAME_MAX_BYTES + 1], from[NAME_MAX_BYTES + 1], to[NAME_MAX_BYTES + 1];
    int ilen = get_name(r, iname);
    int flen = ilen < 0 ? ilen : get_name(r, from);
    int tlen = flen < 0 ? flen : get_name(r, to);
    uint8_t noreplace = cmd_get_u8(r);
    if (tlen < 0)
        return tlen;
    if (r->err || noreplace > 1)
        return -EINVAL;
    sindex_t *ix = find_index(ss, iname, (size_t)ilen);
    sdoc_t *d = ix ? (sdoc_t *)search_sm_doc(ix, from) : NULL;
    if (!d)
        return -ENOENT;
    if (strcmp(from, to) == 0)
        return 0;
    sdoc_t *old = (sdoc_t *)search_sm_doc(ix, to);
    if (old && noreplace)
        return -EEXIST;
    if (old)
        free_doc(ss, ix, old);
    /* the postings point at d, which stays: only its name changes */
    HASH_DEL(ix->docs, d);
    free(d->name);
    d->name = xstrndup(to, (size_t)tlen);
    HASH_ADD_KEYPTR(hh, ix->docs, d->name, (size_t)tlen, d);
    d->ctime_ms = h->now_ms;
    ix->mtime_ms = h->now_ms;
    return 0;
}

static int s_apply(state_t *st, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res,
                   effects_t *fx)
{
    sstate_t *ss = SS(st);
    new_gen(ss);                          /* any command may change what queries see */
    switch (h->op) {
    case SROP_MKIDX:
        return apply_mkidx(ss, h, r, res);
    case SROP_RMIDX:
        return apply_rmidx(ss, r);
    case SROP_PUT:
        return apply_put(ss, h, r, res);
    case SROP_DEL:
        return apply_del(ss, h, r);
    case SROP_RENAME:
        return apply_rename(ss, h, r);
    default:
        return -EINVAL;
    }
}

/* ---------------------------------------------------------------- read API */

uint64_t search_sm_gen(const state_t *st)
{
    return SS(st)->gen;
}

const sindex_t *search_sm_index(const state_t *st, const char *name)
{
    return find_index(SS(st), name, strlen(name));
}

const sindex_t *search_sm_index_id(const state_t *st, uint64_t id)
{
    for (sindex_t *ix = SS(st)->indexes; ix; ix = ix->hh.next)
        if (ix->id == id)
            return ix;
    return NULL;
}

const sdoc_t *search_sm_doc(const sindex_t *ix, const char *name)
{
    sdoc_t *d;
    HASH_FIND(hh, ix->docs, name, strlen(name), d);
    return d;
}

const sdoc_t *search_sm_doc_id(const state_t *st, uint64_t id)
{
    sdoc_t *d;
    HASH_FIND(hid, SS(st)->by_id, &id, sizeof(id), d);
    return d;
}

const sterm_t *search_sm_term(const sindex_t *ix, const char *term, size_t len)
{
    sterm_t *t;
    HASH_FIND(hh, ix->terms, term, len, t);
    return t;
}

static int by_index_name(const void *a, const void *b)
{
    return strcmp((*(const sindex_t *const *)a)->name, (*(const sindex_t *const *)b)->name);
}

static int by_doc_name(const void *a, const void *b)
{
    return strcmp((*(const sdoc_t *const *)a)->name, (*(const sdoc_t *const *)b)->name);
}

/* The indexes in name order (xmalloc'ed; NULL when none). */
static sindex_t **sorted_indexes(const sstate_t *ss, size_t *n)
{
    *n = HASH_COUNT(ss->indexes);
    if (*n == 0)
        return NULL;
    sindex_t **v = xmalloc(*n * sizeof(*v));
    size_t i = 0;
    for (sindex_t *ix = ss->indexes; ix; ix = ix->hh.next)
        v[i++] = ix;
    qsort(v, *n, sizeof(*v), by_index_name);
    return v;
}

int search_sm_each_index(const state_t *st, int (*fn)(void *arg, const sindex_t *ix),
                         void *arg)
{
    size_t n;
    sindex_t **v = sorted_indexes(SS(st), &n);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = fn(arg, v[i]);
    free(v);
    return rc;
}

const sdoc_t **search_sm_sorted_docs(const sindex_t *ix, size_t *n)
{
    *n = HASH_COUNT(ix->docs);
    if (*n == 0)
        return NULL;
    const sdoc_t **v = xmalloc(*n * sizeof(*v));
    size_t i = 0;
    for (sdoc_t *d = ix->docs; d; d = d->hh.next)
        v[i++] = d;
    qsort(v, *n, sizeof(*v), by_doc_name);
    return v;
}

/* ---------------------------------------------------------------- snapshot */

static void s_snapshot(const state_t *st, snapout_t *o)
{
    const sstate_t *ss = SS(st);
    so_u32(o, SRSNAP_VERSION);
    so_u64(o, ss->next_id);
    size_t n;
    sindex_t **v = sorted_indexes(ss, &n);
    so_u32(o, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        const sindex_t *ix = v[i];
        so_blob(o, ix->name, (uint32_t)strlen(ix->name));
        so_u64(o, ix->id);
        so_u8(o, ix->declared);
        so_u64(o, ix->ctime_ms);
        so_u64(o, ix->mtime_ms);
        size_t nd;
        const sdoc_t **docs = search_sm_sorted_docs(ix, &nd);
        so_u64(o, nd);
        for (size_t j = 0; j < nd; j++) {
            const sdoc_t *d = docs[j];
            so_blob(o, d->name, (uint32_t)strlen(d->name));
            so_u64(o, d->id);
            so_u64(o, d->ctime_ms);
            so_u64(o, d->mtime_ms);
            so_blob(o, d->text->data, d->text->len);
        }
        free(docs);
    }
    free(v);
}

static int s_restore(state_t *st, snapin_t *in)
{
    sstate_t *ss = SS(st);
    new_gen(ss);
    if (si_u32(in) != SRSNAP_VERSION)
        return in->err ? in->err : si_corrupt(in, "search: unknown section version");
    ss->next_id = si_u64(in);
    uint32_t n = si_u32(in);
    char name[NAME_MAX_BYTES + 1];
    for (uint32_t i = 0; i < n && !in->err; i++) {
        int len = si_str(in, name, sizeof(name));
        if (len < 0)
            return len;
        if (check_name(name, (size_t)len) < 0 || find_index(ss, name, (size_t)len))
            return si_corrupt(in, "search: a bad or repeated index name");
        uint64_t id = si_u64(in);
        sindex_t *ix = add_index(ss, name, (size_t)len, id);
        ix->declared = si_u8(in);
        ix->ctime_ms = si_u64(in);
        ix->mtime_ms = si_u64(in);
        uint64_t nd = si_u64(in);
        for (uint64_t j = 0; j < nd && !in->err; j++) {
            int dl = si_str(in, name, sizeof(name));
            if (dl < 0)
                return dl;
            if (check_name(name, (size_t)dl) < 0 || search_sm_doc(ix, name))
                return si_corrupt(in, "search: a bad or repeated document name");
            uint64_t did = si_u64(in);
            uint64_t ct = si_u64(in);
            uint64_t mt = si_u64(in);
            uint32_t tl = si_u32(in);
            if (in->err)
                return in->err;
            if (tl > SEARCH_DOC_MAX || did == 0 || did > ss->next_id ||
                search_sm_doc_id(st, did))
                return si_corrupt(in, "search: a document too long or with a bad id");
            blob_t *b = blob_xnew(NULL, tl);
            si_bytes(in, b->data, tl);
            if (in->err) {
                blob_unref(b);
                return in->err;
            }
            sdoc_t *d = add_doc(ss, ix, name, (size_t)dl, did, b);
            d->ctime_ms = ct;
            d->mtime_ms = mt;
        }
    }
    if (in->err)
        return in->err;
    const char *why = search_sm_verify(st);
    return why ? si_corrupt(in, why) : 0;
}

/* ---------------------------------------------------------------- check */

const char *search_sm_verify(const state_t *st)
{
    const sstate_t *ss = SS(st);
    const char *why = NULL;
    uint64_t alldocs = 0;
    for (const sindex_t *ix = ss->indexes; ix && !why; ix = ix->hh.next) {
        SM_VERIFY(&why, check_name(ix->name, strlen(ix->name)) == 0, "search: bad index name");
        SM_VERIFY(&why, ix->id >= 1 && ix->id <= ss->next_id, "search: index id out of range");
        SM_VERIFY(&why, ix->declared <= 1, "search: declared is not a flag");
        SM_VERIFY(&why, ix->declared || ix->ndocs > 0, "search: an empty undeclared index");
        SM_VERIFY(&why, HASH_COUNT(ix->docs) == ix->ndocs, "search: ndocs is wrong");
        uint64_t sumlen = 0;
        for (const sdoc_t *d = ix->docs; d && !why; d = d->hh.next) {
            SM_VERIFY(&why, d->idx == ix, "search: a document in the wrong index");
            SM_VERIFY(&why, check_name(d->name, strlen(d->name)) == 0,
                      "search: bad document name");
            SM_VERIFY(&why, d->id >= 1 && d->id <= ss->next_id, "search: doc id out of range");
            SM_VERIFY(&why, d->text && d->text->len <= SEARCH_DOC_MAX,
                      "search: a document without text or too long");
            SM_VERIFY(&why, search_sm_doc_id(st, d->id) == d, "search: id table is wrong");
            SM_VERIFY(&why, d->slot < ix->nslots && ix->slots[d->slot] == d &&
                      ix->lens[d->slot] == d->len, "search: the slot table is wrong");
            SM_VERIFY(&why, d->ctime_ms <= st->now_ms && d->mtime_ms <= st->now_ms,
                      "search: a document time after the shard's");
            SM_VERIFY(&why, d->nckpt == (d->len + SEARCH_CKPT - 1) / SEARCH_CKPT,
                      "search: checkpoints do not cover the document");
            for (uint32_t j = 0; j < d->nckpt && !why; j++)
                SM_VERIFY(&why, d->ckpt[j] < d->text->len &&
                          (j == 0 || d->ckpt[j - 1] < d->ckpt[j]),
                          "search: checkpoints out of order or past the text");
            sumlen += d->len;
        }
        SM_VERIFY(&why, (uint64_t)ix->nslots == ix->ndocs + ix->nfree,
                  "search: slots are not the documents and the free ones");
        for (uint32_t j = 0; j < ix->nfree && !why; j++)
            SM_VERIFY(&why, ix->free_slots[j] < ix->nslots && !ix->slots[ix->free_slots[j]] &&
                      ix->lens[ix->free_slots[j]] == 0, "search: a free slot in use");
        alldocs += ix->ndocs;
        SM_VERIFY(&why, sumlen == ix->total_len, "search: total_len is not the sum");
        uint64_t sumtf = 0;
        for (const sterm_t *t = ix->terms; t && !why; t = t->hh.next) {
            SM_VERIFY(&why, t->n > 0 && t->n <= t->cap, "search: an empty term");
            SM_VERIFY(&why, t->len >= 1 && t->len <= TOK_TERM_MAX, "search: term length");
            for (uint32_t i = 0; i < t->n && !why; i++) {
                const spost_t *p = &t->p[i];
                const sdoc_t *pd = p->slot < ix->nslots ? ix->slots[p->slot] : NULL;
                SM_VERIFY(&why, pd && pd->idx == ix && pd->slot == p->slot && pd->id == p->id,
                          "search: a posting of another index, slot or id");
                if (why)
                    break;
                SM_VERIFY(&why, i == 0 || t->p[i - 1].id < p->id,
                          "search: postings not sorted by document id");
                SM_VERIFY(&why, p->tf >= 1 && p->tf <= pd->len, "search: tf out of range");
                for (uint32_t j = 1; j < p->tf && !why; j++)
                    SM_VERIFY(&why, p->pos[j - 1] < p->pos[j], "search: positions not ascending");
                SM_VERIFY(&why, p->pos[p->tf - 1] < pd->len, "search: position past the end");
                sumtf += p->tf;
            }
        }
        SM_VERIFY(&why, sumtf == ix->total_len, "search: postings do not add up to total_len");
        size_t listed = 0;
        for (int i = 0; i < 256 && !why; i++) {
            SM_VERIFY(&why, ix->nfirst[i] <= ix->capfirst[i] &&
                      (ix->nfirst[i] == 0 || ix->by_first[i]), "search: a first-byte list's size");
            for (uint32_t j = 0; j < ix->nfirst[i] && !why; j++) {
                const sfirst_t *f = &ix->by_first[i][j];
                SM_VERIFY(&why, (unsigned char)f->t->term[0] == i && f->t->fat == j &&
                          f->len == f->t->len &&
                          f->head == search_sm_head(f->t->term, f->t->len),
                          "search: a term in the wrong first-byte list");
                listed++;
            }
        }
        SM_VERIFY(&why, listed == HASH_COUNT(ix->terms), "search: first-byte lists miss terms");
    }
    SM_VERIFY(&why, HASH_CNT(hid, ss->by_id) == alldocs, "search: id table count is wrong");
    return why;
}

void search_sm_check(const state_t *st)
{
    SM_ASSERT_VERIFIED(search_sm_verify(st));
}

/* ---------------------------------------------------------------- encoders */

void search_cmd_mkidx(cmdbuf_t *b, uint64_t now, const char *index, int excl)
{
    cmd_begin(b, SROP_MKIDX, NS_SEARCH, now);
    cmd_str(b, index);
    cmd_u8(b, excl ? 1 : 0);
}

void search_cmd_rmidx(cmdbuf_t *b, uint64_t now, const char *index)
{
    cmd_begin(b, SROP_RMIDX, NS_SEARCH, now);
    cmd_str(b, index);
}

void search_cmd_put(cmdbuf_t *b, uint64_t now, const char *index, const char *doc,
                    uint8_t flags, const void *text, size_t len)
{
    cmd_begin(b, SROP_PUT, NS_SEARCH, now);
    cmd_str(b, index);
    cmd_str(b, doc);
    cmd_u8(b, flags);
    cmd_bytes(b, text, len);
}

void search_cmd_del(cmdbuf_t *b, uint64_t now, const char *index, const char *doc)
{
    cmd_begin(b, SROP_DEL, NS_SEARCH, now);
    cmd_str(b, index);
    cmd_str(b, doc);
}

void search_cmd_rename(cmdbuf_t *b, uint64_t now, const char *index, const char *from,
                       const char *to, int noreplace)
{
    cmd_begin(b, SROP_RENAME, NS_SEARCH, now);
    cmd_str(b, index);
    cmd_str(b, from);
    cmd_str(b, to);
    cmd_u8(b, noreplace ? 1 : 0);
}

const ns_sm_t search_sm = {
    .init = s_init,
    .free = s_free,
    .apply = s_apply,
    .snapshot = s_snapshot,
    .restore = s_restore,
    .check = search_sm_check,
};
