/* fs/search_fuse.c — the FUSE front of search/ (FILE-API §9, design in docs/SEARCH.md):
 * search/<index>/ directories (declared on shard 0: mkdir, rmdir once empty everywhere),
 * documents search/<index>/<doc> on the shard of their name (route_shard), written as saves
 * (FILE-API §1: the writes of one open are buffered and published as one whole-document
 * PUT at the close() after a write, at fsync(), or at the last close), read as the version
 * the open saw, removed by unlink, renamed inside an index on one shard (EXDEV otherwise),
 * and the queries search/<index>/.q/<query>, run at open over every shard (fs/bm25.h)
 * holding every shard's read lock, so one query sees one state of the whole index, or
 * answered from the mount's query cache while no shard changed (fs/search_cache.h).
 *
 * Inodes (fs/ns.h module inodes, the kind in bits 45..47 of the local part, shard in bits
 * 48..55): an index NS_SHARD_INO(search, 0, IDX | its id on shard 0), its .q directory
 * the same with QDIR, a document NS_SHARD_INO(search, k, DOC | its id on shard k) (a
 * replacement keeps the id), and, from a table of this front counted by kernel lookups, a
 * document being created (PEND: no id until its save is published) and a query (QUERY).
 *
 * Locking, in order: an open document's mu (its save; held while the save is proposed),
 * then shard read locks (ascending shard order when several), then the front's ctx.mu (the
 * name table; a leaf, never held while proposing). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uthash.h>
#include "fs/bm25.h"
#include "fs/dirlist.h"
#include "fs/front.h"
#include "fs/mount.h"
#include "fs/names.h"
#include "fs/node.h"
#include "fs/search.h"
#include "fs/search_cache.h"

#define KSHIFT 45
#define KMASK ((1ull << KSHIFT) - 1)
enum { K_ROOT = 0, K_IDX = 1, K_QDIR, K_DOC, K_PEND, K_QUERY };
#define SINO(k, kind, v) NS_SHARD_INO(NS_SEARCH, k, ((uint64_t)(kind) << KSHIFT) | ((v) & KMASK))
#define ROOT_INO NS_ROOT_ID(NS_SEARCH)
/* How long the kernel may keep the entries and attributes of an index's .q and of a query
 * name in it. Neither can change: .q belongs to its index's inode (an index removed and
 * made again is another inode, found by the index's own lookup, which is never cached), a
 * query name always names the same query inode (answered afresh at each open), and their
 * attributes are constant but for the times, which are those of the lookup. Caching them
 * spares two FUSE lookups of every open of .q/<query>. */
#define QNAME_TIMEOUT 3600.0

/* A document being created, or a query: an inode the state has no id for. */
typedef struct nent {
    UT_hash_handle hh;        /* by num */
    UT_hash_handle hk;        /* by key */
    uint64_t num;
    int kind;                 /* K_PEND or K_QUERY */
    uint64_t nlookup;
    uint32_t shard;
    uint32_t openers;         /* K_PEND: opens writing it */
    uint64_t size;            /* K_PEND: its save's size */
    char *index, *name;
    char *key;
    size_t keylen;
} nent_t;

typedef struct sfront {
    front_ctx_t ctx;          /* first: node, mu */
    nent_t *by_num, *by_key;
    uint64_t next_num;
    search_cache_t *cache;    /* answers until a shard changes (NULL: none, out of memory) */
} sfront_t;

/* An open document or query. */
typedef struct sfh {
    int query;
    pthread_mutex_t mu;
    char index[NAME_MAX_BYTES + 1], doc[NAME_MAX_BYTES + 1];
    uint32_t shard;
    uint64_t pend;            /* the PEND entry it was created under, or 0 */
    int wr;
    blob_t *snap;             /* read-only opens: the version opened */
    char *buf;                /* writing opens: the save */
    size_t len, cap;
    int dirty;                /* written since the last publish: a flush publishes */
    int owed;                 /* created or O_TRUNC, not published yet: fsync/release do */
    int failed;               /* a write failed (EFBIG, ENOSPC): nothing is published */
    int mustexist;            /* opened on an existing document: a save after its removal
                                 goes nowhere (as an unlinked file's data) */
    blob_t *answer;           /* queries: the answer (shared with the query cache), or */
    char *text;               /* its own copy when it could not be made a blob */
    size_t tlen;
} sfh_t;

static sfront_t *SF(fuse_req_t req) { return ns_front_ctx(req, NS_SEARCH); }
static node_t *NODE(const sfront_t *sf) { return sf->ctx.node; }

static int ino_kind(fuse_ino_t ino, uint32_t *k, uint64_t *v)
{
    if (ino == ROOT_INO)
        return K_ROOT;
    if (!(ino & NS_INO_BIT) || NS_INO_NS(ino) != NS_SEARCH)
        return -ENOENT;
    uint64_t local = NS_INO_LOCAL(ino);
    *k = NS_INO_SHARD(ino);
    *v = local & KMASK;
    int kind = (int)(local >> KSHIFT);
    return kind >= K_IDX && kind <= K_QUERY ? kind : -ENOENT;
}

static uint32_t doc_shard(const sfront_t *sf, const char *index, const char *doc)
{
    char path[2 * NAME_MAX_BYTES + 2];
    snprintf(path, sizeof(path), "%s/%s", index, doc);
    return node_shard_of(NODE(sf), NS_SEARCH, path);
}

static int reserved(const char *name) { return strcmp(name, SEARCH_Q) == 0; }

/* ---------------------------------------------------------------- the name table */

static char *make_key(int kind, const char *index, const char *name, size_t *len)
{
    size_t l = strlen(index) + strlen(name) + 3;
    char *k = malloc(l);
    if (k)
        *len = (size_t)snprintf(k, l, "%c%s/%s", kind == K_PEND ? 'p' : 'q', index, name);
    return k;
}

static void nent_free(nent_t *e)
{
    if (e) {
        free(e->index);
        free(e->name);
        free(e->key);
        free(e);
    }
}

/* The entry of (kind, index, name), created if missing, with one more kernel lookup when
 * lookup is set (and one more opener when open is set). Its inode number, 0 when out of
 * memory. */
static uint64_t nent_get(sfront_t *sf, int kind, const char *index, const char *name,
                         uint32_t shard, int lookup, int open)
{
    size_t kl = 0;
    char *key = make_key(kind, index, name, &kl);
    if (!key)
        return 0;
    uint64_t ino = 0;
    pthread_mutex_lock(&sf->ctx.mu);
    nent_t *e;
    HASH_FIND(hk, sf->by_key, key, kl, e);
    if (!e && (e = calloc(1, sizeof(*e)))) {
        e->index = strdup(index);
        e->name = strdup(name);
        if (!e->index || !e->name) {
            nent_free(e);
            e = NULL;
        } else {
            e->key = key;
            key = NULL;
            e->keylen = kl;
            e->kind = kind;
            e->shard = shard;
            e->num = ++sf->next_num;
            HASH_ADD(hh, sf->by_num, num, sizeof(e->num), e);
            HASH_ADD_KEYPTR(hk, sf->by_key, e->key, e->keylen, e);
        }
    }
    if (e) {
        e->nlookup += lookup ? 1 : 0;
        e->openers += open ? 1 : 0;
        ino = SINO(e->shard, kind, e->num);
    }
    pthread_mutex_unlock(&sf->ctx.mu);
    free(key);
    return ino;
}

/* Drops the entry when neither the kernel nor an open file needs it. ctx.mu held. */
static void nent_maybe_drop(sfront_t *sf, nent_t *e)
{
    if (e->nlookup == 0 && e->openers == 0) {
        HASH_DELETE(hh, sf->by_num, e);
        HASH_DELETE(hk, sf->by_key, e);
        nent_free(e);
    }
}

/* Copies what entry num is: 0, or -ENOENT. */
static int nent_find(sfront_t *sf, uint64_t num, int kind, char *index, char *name,
                     uint64_t *size, uint32_t *openers)
{
    int rc = -ENOENT;
    pthread_mutex_lock(&sf->ctx.mu);
    nent_t *e;
    HASH_FIND(hh, sf->by_num, &num, sizeof(num), e);
    if (e && e->kind == kind) {
        snprintf(index, NAME_MAX_BYTES + 1, "%s", e->index);
        snprintf(name, NAME_MAX_BYTES + 1, "%s", e->name);
        if (size)
            *size = e->size;
        if (openers)
            *openers = e->openers;
        rc = 0;
    }
    pthread_mutex_unlock(&sf->ctx.mu);
    return rc;
}

static void nent_update(sfront_t *sf, uint64_t num, int close, uint64_t size)
{
    pthread_mutex_lock(&sf->ctx.mu);
    nent_t *e;
    HASH_FIND(hh, sf->by_num, &num, sizeof(num), e);
    if (e) {
        e->size = size;
        if (close && e->openers) {
            e->openers--;
            nent_maybe_drop(sf, e);
        }
    }
    pthread_mutex_unlock(&sf->ctx.mu);
}

static void sr_forget(void *ctx, fuse_ino_t ino, uint64_t nlookup)
{
    sfront_t *sf = ctx;
    uint32_t k;
    uint64_t v;
    int kind = ino_kind(ino, &k, &v);
    if (kind != K_PEND && kind != K_QUERY)
        return;
    pthread_mutex_lock(&sf->ctx.mu);
    nent_t *e;
    HASH_FIND(hh, sf->by_num, &v, sizeof(v), e);
    if (e) {
        e->nlookup = e->nlookup > nlookup ? e->nlookup - nlookup : 0;
        nent_maybe_drop(sf, e);
    }
    pthread_mutex_unlock(&sf->ctx.mu);
}

/* ---------------------------------------------------------------- attributes */

static void doc_stat(struct stat *s, fuse_ino_t ino, const sdoc_t *d)
{
    front_stat(s, ino, S_IFREG | 0644, (off_t)d->text->len, d->mtime_ms);
    s->st_ctim.tv_sec = (time_t)(d->ctime_ms / 1000);
    s->st_ctim.tv_nsec = (long)(d->ctime_ms % 1000) * 1000000;
}

/* The declared index with id on shard 0 (read lock held). */
static const sindex_t *declared_id(const state_t *st0, uint64_t id)
{
    const sindex_t *ix = search_sm_index_id(st0, id);
    return ix && ix->declared ? ix : NULL;
}

/* The document index/doc on shard k: fills s (ino given) and returns 0, or -ENOENT. */
static int doc_attr(sfront_t *sf, uint32_t k, const char *index, const char *doc,
                    fuse_ino_t ino, struct stat *s, uint64_t *id)
{
    state_t *st = node_state(NODE(sf), k);
    int rc = -ENOENT;
    pthread_rwlock_rdlock(&st->lock);
    const sindex_t *ix = search_sm_index(st, index);
    const sdoc_t *d = ix ? search_sm_doc(ix, doc) : NULL;
    if (d) {
        if (id)
            *id = d->id;
        doc_stat(s, ino ? ino : SINO(k, K_DOC, d->id), d);
        rc = 0;
    }
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

static int do_getattr(sfront_t *sf, fuse_ino_t ino, struct stat *s, const sfh_t *fh)
{
    uint32_t k = 0;
    uint64_t v = 0;
    int kind = ino_kind(ino, &k, &v);
    if (kind < 0)
        return kind;
    node_t *n = NODE(sf);
    if (kind == K_ROOT) {
        front_stat(s, ino, S_IFDIR | 0755, 0, node_start_ms(n));
        return 0;
    }
    if (k >= node_nshards(n))
        return -ENOENT;
    int rc = -ENOENT;
    if (kind == K_IDX || kind == K_QDIR) {
        state_t *st = node_state(n, 0);
        pthread_rwlock_rdlock(&st->lock);
        const sindex_t *ix = declared_id(st, v);
        if (ix) {
            front_stat(s, ino, S_IFDIR | (kind == K_IDX ? 0755 : 0555), 0,
                       kind == K_IDX ? ix->mtime_ms : node_start_ms(n));
            rc = 0;
        }
        pthread_rwlock_unlock(&st->lock);
    } else if (kind == K_DOC) {
        state_t *st = node_state(n, k);
        pthread_rwlock_rdlock(&st->lock);
        const sdoc_t *d = search_sm_doc_id(st, v);
        if (d) {
            doc_stat(s, ino, d);
            rc = 0;
        }
        pthread_rwlock_unlock(&st->lock);
    } else if (kind == K_PEND) {
        char index[NAME_MAX_BYTES + 1], doc[NAME_MAX_BYTES + 1];
        uint64_t size = 0;
        uint32_t openers = 0;
        rc = nent_find(sf, v, K_PEND, index, doc, &size, &openers);
        if (rc == 0 && doc_attr(sf, k, index, doc, ino, s, NULL) < 0) {
            rc = openers ? 0 : -ENOENT;   /* not published yet: its open's save */
            if (rc == 0)
                front_stat(s, ino, S_IFREG | 0644, (off_t)size, node_now_ms());
        }
    } else {                              /* K_QUERY: answered at open */
        char index[NAME_MAX_BYTES + 1], q[NAME_MAX_BYTES + 1];
        rc = nent_find(sf, v, K_QUERY, index, q, NULL, NULL);
        if (rc == 0)
            front_stat(s, ino, S_IFREG | 0444, 0, node_now_ms());
    }
    /* through a writing open: its save's size (the writer sees its own writes) */
    if (rc == 0 && fh && !fh->query && fh->wr) {
        pthread_mutex_lock((pthread_mutex_t *)&fh->mu);
        s->st_size = (off_t)fh->len;
        pthread_mutex_unlock((pthread_mutex_t *)&fh->mu);
    }
    return rc;
}

static sfh_t *fh_of(fuse_ino_t ino, struct fuse_file_info *fi)
{
    uint32_t k;
    uint64_t v;
    int kind = ino_kind(ino, &k, &v);
    return fi && fi->fh && (kind == K_DOC || kind == K_PEND) ? (sfh_t *)(uintptr_t)fi->fh
                                                              : NULL;
}

static void sr_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct stat s;
    front_reply_attr(req, do_getattr(SF(req), ino, &s, fh_of(ino, fi)), &s);
}

/* ---------------------------------------------------------------- lookup */

/* The name of the declared index with id (shard 0) into buf: 0 or -ENOENT. */
static int index_name(sfront_t *sf, uint64_t id, char *buf)
{
    state_t *st = node_state(NODE(sf), 0);
    int rc = -ENOENT;
    pthread_rwlock_rdlock(&st->lock);
    const sindex_t *ix = declared_id(st, id);
    if (ix) {
        snprintf(buf, NAME_MAX_BYTES + 1, "%s", ix->name);
        rc = 0;
    }
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

static int do_lookup(sfront_t *sf, fuse_ino_t parent, const char *name,
                     struct fuse_entry_param *e)
{
    memset(e, 0, sizeof(*e));
    e->generation = 1;
    uint32_t k = 0;
    uint64_t v = 0;
    int kind = ino_kind(parent, &k, &v);
    if (kind < 0)
        return kind;
    if (strlen(name) > NAME_MAX_BYTES)
        return -ENAMETOOLONG;
    node_t *n = NODE(sf);
    if (kind == K_ROOT) {
        state_t *st = node_state(n, 0);
        int rc = -ENOENT;
        pthread_rwlock_rdlock(&st->lock);
        const sindex_t *ix = search_sm_index(st, name);
        if (ix && ix->declared) {
            e->ino = SINO(0, K_IDX, ix->id);
            front_stat(&e->attr, e->ino, S_IFDIR | 0755, 0, ix->mtime_ms);
            rc = 0;
        }
        pthread_rwlock_unlock(&st->lock);
        return rc;
    }
    char index[NAME_MAX_BYTES + 1];
    if (kind == K_IDX) {
        int rc = index_name(sf, v, index);
        if (rc < 0)
            return rc;
        if (reserved(name)) {
            e->ino = SINO(0, K_QDIR, v);
            front_stat(&e->attr, e->ino, S_IFDIR | 0555, 0, node_start_ms(n));
            e->entry_timeout = e->attr_timeout = QNAME_TIMEOUT;
            return 0;
        }
        uint32_t ds = doc_shard(sf, index, name);
        rc = node_read_barrier(n, ds);
        if (rc < 0)
            return rc;
        rc = doc_attr(sf, ds, index, name, 0, &e->attr, NULL);
        if (rc == 0) {
            e->ino = e->attr.st_ino;
            return 0;
        }
        /* a document being created through this mount */
        size_t kl;
        char *key = make_key(K_PEND, index, name, &kl);
        if (!key)
            return -ENOMEM;
        nent_t *pe;
        pthread_mutex_lock(&sf->ctx.mu);
        HASH_FIND(hk, sf->by_key, key, kl, pe);
        if (pe && pe->openers) {
            pe->nlookup++;
            e->ino = SINO(pe->shard, K_PEND, pe->num);
            front_stat(&e->attr, e->ino, S_IFREG | 0644, (off_t)pe->size, node_now_ms());
            rc = 0;
        }
        pthread_mutex_unlock(&sf->ctx.mu);
        free(key);
        return rc;
    }
    if (kind == K_QDIR) {
        int rc = index_name(sf, v, index);
        if (rc < 0)
            return rc;
        e->ino = nent_get(sf, K_QUERY, index, name, 0, 1, 0);
        if (!e->ino)
            return -ENOMEM;
        front_stat(&e->attr, e->ino, S_IFREG | 0444, 0, node_now_ms());
        e->entry_timeout = e->attr_timeout = QNAME_TIMEOUT;
        return 0;
    }
    return -ENOTDIR;
}

static void sr_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fuse_entry_param e;
    front_reply_entry(req, do_lookup(SF(req), parent, name, &e), &e);
}

/* ---------------------------------------------------------------- directories */

static void dir_free(dirlist_t *d)
{
    if (d)
        dirlist_clear(d);
    free(d);
}

static int list_index(void *arg, const sindex_t *ix)
{
    return ix->declared ? dirlist_add(arg, ix->name, SINO(0, K_IDX, ix->id), S_IFDIR) : 0;
}

static void sr_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    sfront_t *sf = SF(req);
    node_t *n = NODE(sf);
    uint32_t k = 0;
    uint64_t v = 0;
    int kind = ino_kind(ino, &k, &v);
    int rc = kind < 0 ? kind : kind == K_ROOT || kind == K_IDX || kind == K_QDIR ? 0 : -ENOTDIR;
    char index[NAME_MAX_BYTES + 1];
    if (rc == 0 && kind != K_ROOT)
        rc = index_name(sf, v, index);
    if (rc == 0 && kind == K_IDX)
        rc = node_read_barrier_all(n);
    dirlist_t *d = rc == 0 ? calloc(1, sizeof(*d)) : NULL;
    if (rc == 0 && !d)
        rc = -ENOMEM;
    if (rc == 0)
        rc = dirlist_add(d, ".", ino, S_IFDIR);
    if (rc == 0)
        rc = dirlist_add(d, "..", kind == K_ROOT ? FUSE_ROOT_ID
                                  : kind == K_IDX ? ROOT_INO : SINO(0, K_IDX, v), S_IFDIR);
    if (rc == 0 && kind == K_ROOT) {
        state_t *st = node_state(n, 0);
        pthread_rwlock_rdlock(&st->lock);
        rc = search_sm_each_index(st, list_index, d);
        pthread_rwlock_unlock(&st->lock);
    }
    for (uint32_t s = 0; rc == 0 && kind == K_IDX && s < node_nshards(n); s++) {
        state_t *st = node_state(n, s);
        pthread_rwlock_rdlock(&st->lock);
        const sindex_t *ix = search_sm_index(st, index);
        size_t nd = 0;
        const sdoc_t **docs = ix ? search_sm_sorted_docs(ix, &nd) : NULL;
        for (size_t i = 0; rc == 0 && i < nd; i++)
            rc = dirlist_add(d, docs[i]->name, SINO(s, K_DOC, docs[i]->id), S_IFREG);
        free(docs);
        pthread_rwlock_unlock(&st->lock);
    }
    if (rc < 0) {
        dir_free(d);
        fuse_reply_err(req, -rc);
        return;
    }
    dirlist_sort(d, 2);
    fi->fh = (uintptr_t)d;
    if (fuse_reply_open(req, fi) != 0)
        dir_free(d);
}

static void sr_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    dirlist_reply(req, (dirlist_t *)(uintptr_t)fi->fh, size, off);
}

static void sr_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    dir_free((dirlist_t *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

static void sr_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    sfront_t *sf = SF(req);
    int rc = parent == ROOT_INO ? 0 : -EPERM;      /* indexes are flat */
    if (rc == 0)
        rc = reserved(name) ? -EINVAL : names_check(name, strlen(name), 0);
    if (rc == 0)
        rc = node_space_check(NODE(sf), strlen(name) + 64);
    if (rc == 0) {
        cmdbuf_t b;
        search_cmd_mkidx(&b, node_now_ms(), name, 1);
        rc = node_propose(NODE(sf), 0, &b, NULL);
    }
    struct fuse_entry_param e;
    if (rc == 0)
        rc = do_lookup(sf, parent, name, &e);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_entry(req, &e);
}

/* An index is removed once no shard has a document of it (each shard is asked after a
 * read barrier; shard 0's apply checks its own again). */
static void sr_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    sfront_t *sf = SF(req);
    node_t *n = NODE(sf);
    uint32_t k = 0;
    uint64_t v = 0;
    int kind = ino_kind(parent, &k, &v);
    int rc = kind == K_ROOT ? 0 : kind == K_IDX && reserved(name) ? -EPERM : -ENOTDIR;
    if (kind == K_IDX && !reserved(name)) {
        char index[NAME_MAX_BYTES + 1];
        rc = index_name(sf, v, index);
        if (rc == 0)
            rc = doc_attr(sf, doc_shard(sf, index, name), index, name, 0,
                          &(struct stat){ 0 }, NULL) == 0 ? -ENOTDIR : -ENOENT;
    }
    if (rc == 0)
        rc = node_read_barrier_all(n);
    for (uint32_t s = 1; rc == 0 && s < node_nshards(n); s++) {
        state_t *st = node_state(n, s);
        pthread_rwlock_rdlock(&st->lock);
        const sindex_t *ix = search_sm_index(st, name);
        if (ix && ix->ndocs)
            rc = -ENOTEMPTY;
        pthread_rwlock_unlock(&st->lock);
    }
    if (rc == 0) {
        cmdbuf_t b;
        search_cmd_rmidx(&b, node_now_ms(), name);
        rc = node_propose(n, 0, &b, NULL);
    }
    fuse_reply_err(req, -rc);
}

/* ---------------------------------------------------------------- names */

/* The index of directory inode parent (an index): 0 and its name, or -errno. */
static int parent_index(sfront_t *sf, fuse_ino_t parent, char *index)
{
    uint32_t k = 0;
    uint64_t v = 0;
    int kind = ino_kind(parent, &k, &v);
    if (kind < 0)
        return kind;
    if (kind != K_IDX)
        return kind == K_ROOT || kind == K_QDIR ? -EPERM : -ENOTDIR;
    return index_name(sf, v, index);
}

static void sr_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    sfront_t *sf = SF(req);
    char index[NAME_MAX_BYTES + 1];
    int rc = parent_index(sf, parent, index);
    if (rc == -EPERM && parent == ROOT_INO)
        rc = -EISDIR;                         /* only indexes live there */
    if (rc == 0 && reserved(name))
        rc = -EPERM;
    if (rc == 0) {
        cmdbuf_t b;
        search_cmd_del(&b, node_now_ms(), index, name);
        rc = node_propose(NODE(sf), doc_shard(sf, index, name), &b, NULL);
    }
    fuse_reply_err(req, -rc);
}

static void sr_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
    sfront_t *sf = SF(req);
    char index[NAME_MAX_BYTES + 1];
    int rc = flags & ~RENAME_NOREPLACE ? -EINVAL : parent_index(sf, parent, index);
    if (rc == 0 && newparent != parent)
        rc = -EXDEV;                          /* across indexes: `mv` copies and deletes */
    if (rc == 0 && (reserved(name) || reserved(newname)))
        rc = -EPERM;
    if (rc == 0)
        rc = names_check(newname, strlen(newname), 0);
    uint32_t k = 0;
    if (rc == 0) {
        k = doc_shard(sf, index, name);
        if (doc_shard(sf, index, newname) != k)
            rc = -EXDEV;
    }
    if (rc == 0) {
        cmdbuf_t b;
        search_cmd_rename(&b, node_now_ms(), index, name, newname,
                          !!(flags & RENAME_NOREPLACE));
        rc = node_propose(NODE(sf), k, &b, NULL);
    }
    fuse_reply_err(req, -rc);
}

/* ---------------------------------------------------------------- open documents */

static void fh_free(sfh_t *fh)
{
    if (!fh)
        return;
    blob_unref(fh->snap);
    blob_unref(fh->answer);
    free(fh->buf);
    free(fh->text);
    pthread_mutex_destroy(&fh->mu);
    free(fh);
}

static sfh_t *fh_new(void)
{
    sfh_t *fh = calloc(1, sizeof(*fh));
    if (fh)
        pthread_mutex_init(&fh->mu, NULL);
    return fh;
}

/* Publishes fh's save as one PUT of the whole document. fh->mu held. */
static int publish(sfront_t *sf, sfh_t *fh)
{
    if (!fh->dirty && !fh->owed)
        return 0;
    if (fh->failed) {                        /* a failed save publishes nothing; its */
        fh->dirty = fh->owed = 0;            /* error was the failed write()'s */
        return 0;
    }
    cmdbuf_t b;
    search_cmd_put(&b, node_now_ms(), fh->index, fh->doc,
                   fh->mustexist ? SEARCH_PUT_MUSTEXIST : 0, fh->buf ? fh->buf : "", fh->len);
    int rc = node_propose(NODE(sf), fh->shard, &b, NULL);
    if (rc == -ENOENT && fh->mustexist)
        rc = 0;                              /* removed meanwhile: dropped */
    if (rc == 0)
        fh->dirty = fh->owed = 0;
    return rc;
}

/* Opens document index/doc (shard k) for flags; pend: the PEND entry it is created under
 * (0 if none; created: no state yet). 0 and *out, or -errno. */
static int open_doc(sfront_t *sf, uint32_t k, const char *index, const char *doc, int flags,
                    uint64_t pend, int created, sfh_t **out)
{
    sfh_t *fh = fh_new();
    if (!fh)
        return -ENOMEM;
    snprintf(fh->index, sizeof(fh->index), "%s", index);
    snprintf(fh->doc, sizeof(fh->doc), "%s", doc);
    fh->shard = k;
    fh->pend = pend;
    fh->wr = (flags & O_ACCMODE) != O_RDONLY;
    int rc = 0;
    blob_t *cur = NULL;
    if (!created) {
        state_t *st = node_state(NODE(sf), k);
        pthread_rwlock_rdlock(&st->lock);
        const sindex_t *ix = search_sm_index(st, index);
        const sdoc_t *d = ix ? search_sm_doc(ix, doc) : NULL;
        if (d)
            cur = blob_ref(d->text);
        pthread_rwlock_unlock(&st->lock);
        if (!cur && !pend)
            rc = -ENOENT;
        fh->mustexist = cur != NULL;
    }
    if (rc == 0 && fh->wr) {
        if (flags & O_APPEND)
            rc = -EOPNOTSUPP;                /* not supported: a document is saved whole */
        else if (created || (flags & O_TRUNC))
            fh->owed = 1;                    /* published at fsync or the last close */
        else if (cur && cur->len && !(fh->buf = malloc(cur->len)))
            rc = -ENOMEM;
        else if (cur) {
            if (cur->len)
                memcpy(fh->buf, cur->data, cur->len);
            fh->len = fh->cap = cur->len;
        }
        blob_unref(cur);
    } else {
        fh->snap = cur ? cur : blob_new("", 0);
        if (!fh->snap)
            rc = -ENOMEM;
    }
    if (rc < 0) {
        fh_free(fh);
        return rc;
    }
    *out = fh;
    return 0;
}

/* The name of document inode ino (DOC or PEND) and its shard: 0, or -errno. *pend: its
 * PEND entry number (0 for a DOC). */
static int doc_of_ino(sfront_t *sf, fuse_ino_t ino, char *index, char *doc, uint32_t *k,
                      uint64_t *pend)
{
    uint64_t v = 0;
    int kind = ino_kind(ino, k, &v);
    if (kind < 0)
        return kind;
    *pend = 0;
    if (kind == K_ROOT || kind == K_IDX || kind == K_QDIR)
        return -EISDIR;
    if (*k >= node_nshards(NODE(sf)))
        return -ENOENT;
    if (kind == K_PEND) {
        *pend = v;
        return nent_find(sf, v, K_PEND, index, doc, NULL, NULL);
    }
    if (kind != K_DOC)
        return -EINVAL;
    state_t *st = node_state(NODE(sf), *k);
    int rc = -ENOENT;
    pthread_rwlock_rdlock(&st->lock);
    const sdoc_t *d = search_sm_doc_id(st, v);
    if (d) {
        snprintf(index, NAME_MAX_BYTES + 1, "%s", d->idx->name);
        snprintf(doc, NAME_MAX_BYTES + 1, "%s", d->name);
        rc = 0;
    }
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

/* Runs query q of index over every shard, holding every shard's read lock (ascending), or
 * takes its answer from the cache when no shard changed since it was computed (the
 * versions are read under those locks, after the barrier: the same state either way).
 * Anything but a cache hit computes the answer (the cache cannot fail a query); a computed
 * answer is kept as a blob shared with the cache, or, when memory for that is short, as
 * the engine's text, not cached. */
static int run_query(sfront_t *sf, const char *index, const char *q, sfh_t *fh)
{
    node_t *n = NODE(sf);
    int rc = node_read_barrier_all(n);
    if (rc < 0)
        return rc;
    uint32_t ns = node_nshards(n);
    state_t *st_small[16], **st = st_small;
    uint64_t gens_small[16], *gens = gens_small;
    if (ns > 16) {
        st = calloc(ns, sizeof(*st));
        gens = calloc(ns, sizeof(*gens));
        if (!st || !gens) {
            free(st);
            free(gens);
            return -ENOMEM;
        }
    }
    for (uint32_t k = 0; k < ns; k++) {
        st[k] = node_state(n, k);
        pthread_rwlock_rdlock(&st[k]->lock);
        gens[k] = search_sm_gen(st[k]);
    }
    fh->answer = sf->cache ? search_cache_get(sf->cache, index, q, gens, ns) : NULL;
    if (!fh->answer) {
        const char *why = NULL;
        char *text = NULL;
        size_t len = 0;
        rc = bm25_query(st, ns, index, q, strlen(q), &text, &len, &why);
        if (rc == 0 && (fh->answer = blob_new(text, len)) != NULL) {
            free(text);
            if (sf->cache)
                search_cache_put(sf->cache, index, q, gens, ns, fh->answer);
        } else if (rc == 0) {
            fh->text = text;              /* served from its own copy, not cached */
            fh->tlen = len;
        }
    }
    for (uint32_t k = ns; k-- > 0;)
        pthread_rwlock_unlock(&st[k]->lock);
    if (st != st_small) {
        free(st);
        free(gens);
    }
    return rc;
}

static void sr_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    sfront_t *sf = SF(req);
    uint32_t k = 0;
    uint64_t v = 0;
    int kind = ino_kind(ino, &k, &v);
    sfh_t *fh = NULL;
    int rc = kind < 0 ? kind : 0;
    if (kind == K_QUERY) {
        char index[NAME_MAX_BYTES + 1], q[NAME_MAX_BYTES + 1];
        rc = (fi->flags & O_ACCMODE) != O_RDONLY ? -EPERM
             : nent_find(sf, v, K_QUERY, index, q, NULL, NULL);
        if (rc == 0 && !(fh = fh_new()))
            rc = -ENOMEM;
        if (rc == 0) {
            fh->query = 1;
            rc = run_query(sf, index, q, fh);
        }
    } else if (rc == 0) {
        char index[NAME_MAX_BYTES + 1], doc[NAME_MAX_BYTES + 1];
        uint64_t pend = 0;
        rc = doc_of_ino(sf, ino, index, doc, &k, &pend);
        if (rc == 0)
            rc = open_doc(sf, k, index, doc, fi->flags, pend, 0, &fh);
        if (rc == 0 && pend && fh->wr)
            nent_get(sf, K_PEND, index, doc, k, 0, 1);
    }
    if (rc < 0) {
        fh_free(fh);
        fuse_reply_err(req, -rc);
        return;
    }
    if (mount_reply_open(req, 0, fh, fi, NULL))
        fh_free(fh);
}

/* `>`, `cp`, `touch` of a new document: nothing is committed until its save is published
 * (at fsync or the last close when nothing is written, else at the close after the
 * writes); until then the inode is a PEND entry of this mount. O_EXCL on an existing
 * document is EEXIST (checked here and by the PUT of the publish is not: a racing creator
 * on another mount may win, and this save then replaces its document). */
static void sr_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
    sfront_t *sf = SF(req);
    char index[NAME_MAX_BYTES + 1];
    int rc = parent_index(sf, parent, index);
    if (rc == 0)
        rc = reserved(name) ? -EINVAL : names_check(name, strlen(name), 0);
    if (rc == 0 && (fi->flags & O_APPEND))
        rc = -EOPNOTSUPP;
    uint32_t k = rc == 0 ? doc_shard(sf, index, name) : 0;
    if (rc == 0)
        rc = node_read_barrier(NODE(sf), k);
    struct fuse_entry_param e;
    memset(&e, 0, sizeof(e));
    e.generation = 1;
    int exists = rc == 0 && doc_attr(sf, k, index, name, 0, &e.attr, NULL) == 0;
    if (rc == 0 && exists && (fi->flags & O_EXCL))
        rc = -EEXIST;
    sfh_t *fh = NULL;
    if (rc == 0 && exists) {                 /* an existing document: an ordinary open */
        e.ino = e.attr.st_ino;
        rc = open_doc(sf, k, index, name, fi->flags, 0, 0, &fh);
    } else if (rc == 0) {
        e.ino = nent_get(sf, K_PEND, index, name, k, 1, 1);
        rc = e.ino ? open_doc(sf, k, index, name, fi->flags, NS_INO_LOCAL(e.ino) & KMASK, 1,
                              &fh)
                   : -ENOMEM;
        if (rc == 0) {
            fh->wr = 1;
            fh->owed = 1;
            front_stat(&e.attr, e.ino, S_IFREG | 0644, 0, node_now_ms());
        } else if (e.ino) {
            nent_update(sf, NS_INO_LOCAL(e.ino) & KMASK, 1, 0);
            sr_forget(sf, e.ino, 1);
        }
    }
    if (rc < 0) {
        fuse_reply_err(req, -rc);
        return;
    }
    if (mount_reply_open(req, 0, fh, fi, &e)) {
        if (fh->pend) {                      /* the kernel never got the entry */
            nent_update(sf, fh->pend, 1, 0);
            sr_forget(sf, e.ino, 1);
        }
        fh_free(fh);
    }
}

static void sr_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    sfh_t *fh = (sfh_t *)(uintptr_t)fi->fh;
    if (fh->query) {
        if (fh->answer)
            front_reply_text(req, &fh->mu, (const char *)fh->answer->data, fh->answer->len,
                             size, off);
        else
            front_reply_text(req, &fh->mu, fh->text, fh->tlen, size, off);
        return;
    }
    if (fh->wr) {
        /* a write through the same open may grow (realloc) the buffer meanwhile: read
         * buf and len under the lock */
        pthread_mutex_lock(&fh->mu);
        size_t n = off < 0 || (size_t)off >= fh->len ? 0 : fh->len - (size_t)off;
        fuse_reply_buf(req, n ? fh->buf + off : NULL, n < size ? n : size);
        pthread_mutex_unlock(&fh->mu);
    } else {
        front_reply_text(req, &fh->mu, (const char *)fh->snap->data, fh->snap->len, size, off);
    }
}

/* Makes room for len bytes in fh's save. fh->mu held. 0 or -ENOMEM. */
static int reserve(sfh_t *fh, size_t len)
{
    if (len <= fh->cap)
        return 0;
    size_t cap = fh->cap ? fh->cap : 4096;
    while (cap < len)
        cap *= 2;
    if (cap > SEARCH_DOC_MAX)
        cap = SEARCH_DOC_MAX;
    char *p = realloc(fh->buf, cap);
    if (!p)
        return -ENOMEM;
    fh->buf = p;
    fh->cap = cap;
    return 0;
}

/* Sets the save's length to len (zero-filled when it grows). fh->mu held. */
static int set_len(sfh_t *fh, size_t len)
{
    if (len > SEARCH_DOC_MAX)
        return -EFBIG;
    int rc = reserve(fh, len);
    if (rc == 0 && len > fh->len)
        memset(fh->buf + fh->len, 0, len - fh->len);
    if (rc == 0)
        fh->len = len;
    return rc;
}

static void sr_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    sfront_t *sf = SF(req);
    sfh_t *fh = (sfh_t *)(uintptr_t)fi->fh;
    int rc = 0;
    if (fh->query || !fh->wr)
        rc = -EBADF;
    else if (fi->flags & O_APPEND)
        rc = -EOPNOTSUPP;
    else if (off < 0)
        rc = -EINVAL;
    else if ((uint64_t)off + size > SEARCH_DOC_MAX)
        rc = -EFBIG;
    else
        rc = node_space_check(NODE(sf), size);
    if (rc == 0) {
        pthread_mutex_lock(&fh->mu);
        size_t end = (size_t)off + size;
        rc = end > fh->len ? set_len(fh, end) : 0;
        if (rc == 0 && size)
            memcpy(fh->buf + off, buf, size);
        if (rc == 0)
            fh->dirty = 1;
        size_t len = fh->len;
        pthread_mutex_unlock(&fh->mu);
        if (rc == 0 && fh->pend)
            nent_update(sf, fh->pend, 0, len);
    }
    if (rc == -EFBIG || rc == -ENOSPC || rc == -ENOMEM) {
        pthread_mutex_lock(&fh->mu);
        fh->failed = 1;                      /* the document stays as it was */
        pthread_mutex_unlock(&fh->mu);
    }
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_write(req, size);
}

/* A close() after writes publishes them (and returns the publish's error). A close with
 * nothing written publishes nothing: a shell's close of the original descriptor after
 * dup2() must not publish an empty document. */
static void sr_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    sfh_t *fh = (sfh_t *)(uintptr_t)fi->fh;
    int rc = 0;
    if (!fh->query && fh->wr) {
        pthread_mutex_lock(&fh->mu);
        if (fh->dirty)
            rc = publish(SF(req), fh);
        pthread_mutex_unlock(&fh->mu);
    }
    fuse_reply_err(req, -rc);
}

static void sr_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    sfh_t *fh = (sfh_t *)(uintptr_t)fi->fh;
    int rc = 0;
    if (!fh->query && fh->wr) {
        pthread_mutex_lock(&fh->mu);
        rc = publish(SF(req), fh);
        pthread_mutex_unlock(&fh->mu);
    }
    fuse_reply_err(req, -rc);
}

static void sr_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    sfront_t *sf = SF(req);
    sfh_t *fh = (sfh_t *)(uintptr_t)fi->fh;
    if (!fh->query && fh->wr) {
        pthread_mutex_lock(&fh->mu);
        int failed = fh->failed;
        int rc = publish(sf, fh);
        pthread_mutex_unlock(&fh->mu);
        if (rc < 0 && !failed)
            fprintf(stderr, "quorumfs: search/%s/%s: save at the last close not published: "
                    "%s\n", fh->index, fh->doc, strerror(-rc));
        if (fh->pend)
            nent_update(sf, fh->pend, 1, fh->len);
    }
    /* a read's reply is written holding mu (front_reply_text): wait for it to end */
    pthread_mutex_lock(&fh->mu);
    pthread_mutex_unlock(&fh->mu);
    fh_free(fh);
    fuse_reply_err(req, 0);
}

/* Truncation (through an open: its save; by path: a PUT of the cut document at once);
 * times are accepted and change nothing (a document's mtime is its last save); modes and
 * owners are not supported (EPERM). */
static void sr_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
    sfront_t *sf = SF(req);
    sfh_t *fh = fh_of(ino, fi);
    struct stat s;
    int rc = do_getattr(sf, ino, &s, fh);
    if (rc == 0 && (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)))
        rc = -EPERM;
    if (rc == 0 && (to_set & FUSE_SET_ATTR_SIZE)) {
        if (!S_ISREG(s.st_mode) || (s.st_mode & 0200) == 0)
            rc = S_ISDIR(s.st_mode) ? -EISDIR : -EPERM;
        else if (attr->st_size < 0 || attr->st_size > (off_t)SEARCH_DOC_MAX)
            rc = -EFBIG;
    }
    if (rc == 0 && (to_set & FUSE_SET_ATTR_SIZE)) {
        if (fh && fh->wr) {
            pthread_mutex_lock(&fh->mu);
            rc = set_len(fh, (size_t)attr->st_size);
            if (rc == 0)
                fh->dirty = 1;
            pthread_mutex_unlock(&fh->mu);
        } else {
            char index[NAME_MAX_BYTES + 1], doc[NAME_MAX_BYTES + 1];
            uint32_t k = 0;
            uint64_t pend = 0;
            sfh_t *tmp = NULL;
            rc = doc_of_ino(sf, ino, index, doc, &k, &pend);
            if (rc == 0)
                rc = open_doc(sf, k, index, doc, O_RDWR, pend, 0, &tmp);
            if (rc == 0) {
                pthread_mutex_lock(&tmp->mu);
                rc = set_len(tmp, (size_t)attr->st_size);
                tmp->dirty = 1;
                if (rc == 0)
                    rc = publish(sf, tmp);
                pthread_mutex_unlock(&tmp->mu);
            }
            fh_free(tmp);
        }
        if (rc == 0)
            s.st_size = attr->st_size;
    }
    front_reply_attr(req, rc, &s);
}

static void sr_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    fuse_reply_err(req, ENODATA);
}

static void sr_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    front_reply_xattr(req, "", 0, size);
}

static const struct fuse_lowlevel_ops search_fuse = {
    .lookup = sr_lookup,
    .getattr = sr_getattr,
    .setattr = sr_setattr,
    .mkdir = sr_mkdir,
    .rmdir = sr_rmdir,
    .unlink = sr_unlink,
    .rename = sr_rename,
    .create = sr_create,
    .open = sr_open,
    .read = sr_read,
    .write = sr_write,
    .flush = sr_flush,
    .fsync = sr_fsync,
    .release = sr_release,
    .opendir = sr_opendir,
    .readdir = sr_readdir,
    .releasedir = sr_releasedir,
    .getxattr = sr_getxattr,
    .listxattr = sr_listxattr,
};

/* The mount's read barrier (on the inode's shard) is right for a document (its own shard)
 * and for an index's attributes (shard 0). Lookups in an index take the barrier of the
 * document's shard themselves, listings and queries take every shard's: the mount's is
 * skipped for those, and for .q/, whose lookups read nothing replicated. */
static int sr_barrier_free(fuse_ino_t ino, const char *name, int open)
{
    uint32_t k;
    uint64_t v;
    int kind = ino_kind(ino, &k, &v);
    if (kind == K_DOC || kind == K_PEND)
        return 0;
    if (kind == K_IDX)
        return name != NULL || open;
    return 1;
}

static void *sr_start(struct node *n)
{
    _Static_assert(offsetof(sfront_t, ctx) == 0, "front_ctx_new makes the head");
    sfront_t *sf = front_ctx_new(sizeof(sfront_t), n);
    if (!sf)
        return NULL;
    /* QUORUMFS_SEARCH_CACHE_BYTES: the query cache's cap (docs/SEARCH.md), 0 for none */
    unsigned long long cap = SEARCH_CACHE_BYTES;
    const char *env = getenv("QUORUMFS_SEARCH_CACHE_BYTES");
    if (env && *env) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(env, &end, 10);
        if (errno || *end || env[0] < '0' || env[0] > '9' || v > (1ull << 40))   /* digits */
            fprintf(stderr, "quorumfs: QUORUMFS_SEARCH_CACHE_BYTES=%s: not a byte count up to "
                    "2^40; the query cache keeps %llu bytes\n", env, cap);
        else
            cap = v;
    }
    sf->cache = cap ? search_cache_new((size_t)cap) : NULL;   /* without: every query runs */
    return sf;
}

static void sr_stop(void *ctx)
{
    sfront_t *sf = ctx;
    pthread_mutex_lock(&sf->ctx.mu);
    nent_t *e, *tmp;
    HASH_ITER(hh, sf->by_num, e, tmp) {
        HASH_DELETE(hh, sf->by_num, e);
        HASH_DELETE(hk, sf->by_key, e);
        nent_free(e);
    }
    pthread_mutex_unlock(&sf->ctx.mu);
    search_cache_free(sf->cache);
    front_ctx_free(sf);
}

const ns_front_t search_front = {
    .start = sr_start,
    .stop = sr_stop,
    .forget = sr_forget,
    .fuse = &search_fuse,
    .barrier_free = sr_barrier_free,
};
