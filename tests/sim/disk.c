/* tests/sim/disk.c — the simulated durable store. Writes are applied record by record so a
 * crash can keep any prefix of a batch; entry writes truncate a conflicting suffix first,
 * as the Ready contract says; a snapshot install is two records, so a crash can fall
 * between making it current and dropping the entries it replaced. */
#include "tests/sim/disk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void disk_init(disk_t *d, const raft_conf_t *boot_conf)
{
    memset(d, 0, sizeof(*d));
    if (boot_conf)
        d->snap.conf = *boot_conf;
}

static void free_ents(disk_entry_t *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(e[i].data);
}

void disk_free(disk_t *d)
{
    free_ents(d->ents, d->n);
    free(d->ents);
    free(d->snap_data);
    free(d->recv_data);
    memset(d, 0, sizeof(*d));
}

static int copy_entry(disk_entry_t *dst, const raft_entry_t *src)
{
    dst->term = src->term;
    dst->index = src->index;
    dst->type = src->type;
    dst->len = src->len;
    dst->data = NULL;
    if (src->len) {
        dst->data = malloc(src->len);
        if (!dst->data)
            return -1;
        memcpy(dst->data, src->data, src->len);
    }
    return 0;
}

int disk_batch_from_ready(disk_batch_t *b, const raft_ready_t *rd)
{
    memset(b, 0, sizeof(*b));
    if (rd->snap_chunk) {
        b->has_chunk = 1;
        b->chunk = *rd->snap_chunk;
        if (b->chunk.len) {
            b->chunk_data = malloc(b->chunk.len);
            if (!b->chunk_data)
                goto fail;
            memcpy(b->chunk_data, rd->snap_chunk->data, b->chunk.len);
        }
        b->chunk.data = b->chunk_data;
    }
    if (rd->snapshot) {
        b->has_snap = 1;
        b->snap = *rd->snapshot;
    }
    if (rd->n_entries) {
        b->ents = calloc(rd->n_entries, sizeof(*b->ents));
        if (!b->ents)
            goto fail;
        for (size_t i = 0; i < rd->n_entries; i++) {
            if (copy_entry(&b->ents[i], &rd->entries[i]) < 0)
                goto fail;
            b->n = i + 1;
        }
    }
    if (rd->hs_changed) {
        b->has_hs = 1;
        b->hs = rd->hs;
    }
    return 0;
fail:
    disk_batch_free(b);
    return -1;
}

size_t disk_batch_records(const disk_batch_t *b)
{
    return (size_t)b->has_chunk + 2 * (size_t)b->has_snap + b->n + (size_t)b->has_hs;
}

void disk_batch_free(disk_batch_t *b)
{
    free(b->chunk_data);
    free_ents(b->ents, b->n);
    free(b->ents);
    memset(b, 0, sizeof(*b));
}

uint64_t disk_last_index(const disk_t *d)
{
    return d->n ? d->ents[d->n - 1].index : d->snap.index;
}

/* Truncates the log to entries with index < idx. */
static void truncate_from(disk_t *d, uint64_t idx)
{
    while (d->n && d->ents[d->n - 1].index >= idx) {
        d->n--;
        free(d->ents[d->n].data);
    }
}

void disk_drop_before(disk_t *d, uint64_t first)
{
    size_t k = 0;
    while (k < d->n && d->ents[k].index < first)
        k++;
    free_ents(d->ents, k);
    memmove(d->ents, d->ents + k, (d->n - k) * sizeof(*d->ents));
    d->n -= k;
}

static int append_entry(disk_t *d, const disk_entry_t *e, char *err, size_t errlen)
{
    truncate_from(d, e->index);
    uint64_t want = disk_last_index(d) + 1;
    if (e->index != want) {
        snprintf(err, errlen, "entry %llu written after last index %llu (snapshot %llu)",
                 (unsigned long long)e->index, (unsigned long long)(want - 1),
                 (unsigned long long)d->snap.index);
        return -1;
    }
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 64;
        disk_entry_t *ne = realloc(d->ents, nc * sizeof(*ne));
        if (!ne) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        d->ents = ne;
        d->cap = nc;
    }
    raft_entry_t tmp = { .term = e->term, .index = e->index, .type = e->type, .len = e->len,
                         .data = e->data };
    if (copy_entry(&d->ents[d->n], &tmp) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    d->n++;
    return 0;
}

static int write_chunk(disk_t *d, const raft_snap_chunk_t *c, char *err, size_t errlen)
{
    if (c->offset == 0) {
        free(d->recv_data);
        d->recv_data = NULL;
        d->recv_len = 0;
        d->recv = c->meta;
    } else if (c->offset != d->recv_len || c->meta.index != d->recv.index ||
               c->meta.term != d->recv.term) {
        snprintf(err, errlen, "snapshot chunk at offset %llu of snapshot %llu/%llu, but %zu "
                 "bytes of %llu/%llu received",
                 (unsigned long long)c->offset, (unsigned long long)c->meta.index,
                 (unsigned long long)c->meta.term, d->recv_len,
                 (unsigned long long)d->recv.index, (unsigned long long)d->recv.term);
        return -1;
    }
    if (c->len) {
        uint8_t *nd = realloc(d->recv_data, d->recv_len + c->len);
        if (!nd) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        memcpy(nd + d->recv_len, c->data, c->len);
        d->recv_data = nd;
        d->recv_len += c->len;
    }
    return 0;
}

/* An install's first record: the received snapshot becomes the current one. */
static int install_current(disk_t *d, const raft_snap_meta_t *m, char *err, size_t errlen)
{
    if (m->index != d->recv.index || m->term != d->recv.term) {
        snprintf(err, errlen, "snapshot %llu/%llu installed but %llu/%llu was received",
                 (unsigned long long)m->index, (unsigned long long)m->term,
                 (unsigned long long)d->recv.index, (unsigned long long)d->recv.term);
        return -1;
    }
    free(d->snap_data);
    d->snap = *m;
    d->snap_data = d->recv_data;
    d->snap_len = d->recv_len;
    d->recv_data = NULL;
    d->recv_len = 0;
    memset(&d->recv, 0, sizeof(d->recv));
    return 0;
}

/* An install's second record (§7): keep the entries after the snapshot if the log has its
 * last entry, else drop them all. */
static void install_drop(disk_t *d, const raft_snap_meta_t *m)
{
    int keep = 0;
    for (size_t i = 0; i < d->n; i++)
        if (d->ents[i].index == m->index && d->ents[i].term == m->term)
            keep = 1;
    if (keep)
        disk_drop_before(d, m->index + 1);
    else
        truncate_from(d, 0);
}

void disk_recover(disk_t *d)
{
    if (!d->n || !d->snap.index)
        return;
    uint64_t first = d->ents[0].index, last = d->ents[d->n - 1].index;
    if (last < d->snap.index ||
        (first <= d->snap.index && d->ents[d->snap.index - first].term != d->snap.term))
        truncate_from(d, 0);
}

int disk_holds(const disk_t *d, uint64_t index, uint64_t term)
{
    if (index < d->snap.index || (index == d->snap.index && term == d->snap.term))
        return 1;
    if (!d->n || index < d->ents[0].index || index > d->ents[d->n - 1].index)
        return 0;
    return d->ents[index - d->ents[0].index].term == term;
}

/* Writing b's entries deletes the persisted ones from b->ents[0].index on. None of those
 * at or below the durable commit index may vanish or change term: committed entries are
 * forever (§5.4). */
static int check_committed(const disk_t *d, const disk_batch_t *b, char *err, size_t errlen)
{
    uint64_t p = b->ents[0].index, end = b->ents[b->n - 1].index;
    for (size_t i = 0; i < d->n; i++) {
        const disk_entry_t *e = &d->ents[i];
        if (e->index < p || e->index > d->hs.commit)
            continue;
        if (e->index > end || b->ents[e->index - p].term != e->term) {
            snprintf(err, errlen, "a write deletes committed entry %llu/t%llu (durable commit "
                     "index %llu; the write covers %llu..%llu)",
                     (unsigned long long)e->index, (unsigned long long)e->term,
                     (unsigned long long)d->hs.commit, (unsigned long long)p,
                     (unsigned long long)end);
            return -1;
        }
    }
    return 0;
}

int disk_write(disk_t *d, const disk_batch_t *b, size_t k, char *err, size_t errlen)
{
    if (k == 0)
        return 0;
    if (b->has_hs && d->hs_first) {
        d->hs = b->hs;   /* breach: the hard state lands before the rest */
        if (--k == 0)
            return 0;
    }
    if (b->has_chunk) {
        if (write_chunk(d, &b->chunk, err, errlen) < 0)
            return -1;
        if (--k == 0)
            return 0;
    }
    if (b->has_snap) {
        if (install_current(d, &b->snap, err, errlen) < 0)
            return -1;
        if (--k == 0)
            return 0;
        install_drop(d, &b->snap);
        if (--k == 0)
            return 0;
    }
    if (b->n && !d->lax && check_committed(d, b, err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < b->n; i++) {
        if (append_entry(d, &b->ents[i], err, errlen) < 0)
            return -1;
        if (--k == 0)
            return 0;
    }
    if (b->has_hs && !d->hs_first)
        d->hs = b->hs;
    return 0;
}

int disk_save_snapshot(disk_t *d, const raft_snap_meta_t *meta, const void *data, size_t len)
{
    uint8_t *nd = malloc(len ? len : 1);
    if (!nd)
        return -1;
    memcpy(nd, data, len);
    free(d->snap_data);
    d->snap_data = nd;
    d->snap_len = len;
    d->snap = *meta;
    return 0;
}

void disk_boot(const disk_t *d, raft_boot_t *boot, raft_entry_t **tmp)
{
    memset(boot, 0, sizeof(*boot));
    boot->hs = d->hs;
    boot->snap = d->snap;
    free(*tmp);
    *tmp = d->n ? calloc(d->n, sizeof(raft_entry_t)) : NULL;
    if (d->n && !*tmp)
        return; /* boot without entries: raft_new then refuses an inconsistent boot */
    for (size_t i = 0; i < d->n; i++)
        (*tmp)[i] = (raft_entry_t){ .term = d->ents[i].term, .index = d->ents[i].index,
                                    .type = d->ents[i].type, .len = d->ents[i].len,
                                    .data = d->ents[i].data };
    boot->entries = *tmp;
    boot->n_entries = d->n;
    boot->applied = 0;
}
