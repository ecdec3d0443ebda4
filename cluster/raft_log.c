/* cluster/raft_log.c — the Raft core's in-memory log (see raft_log.h): a contiguous array
 * of entries after the last compaction, payloads in reference-counted batch buffers. The
 * array slides forward on compaction and is moved back to the front only when more than
 * half of it is dead, so compaction and append are amortized O(1) per entry. */
#include <stdlib.h>
#include <string.h>

#include "cluster/err.h"
#include "cluster/raft_log.h"

void raft_log_init(raft_log_t *l, uint64_t base_index, uint64_t base_term)
{
    memset(l, 0, sizeof *l);
    l->base_index = base_index;
    l->base_term = base_term;
}

void raft_log_buf_put(raft_log_t *l, raft_lbuf_t *b)
{
    if (!b)
        return;
    if (b->cap >= RAFT_LOG_SPARE_MIN && b->cap <= RAFT_LOG_SPARE_MAX)
        for (int i = 0; i < RAFT_LOG_SPARES; i++)
            if (!l->spare[i]) {
                l->spare[i] = b;
                return;
            }
    free(b);
}

static void unref(raft_log_t *l, raft_lbuf_t *b)
{
    if (b && --b->refs == 0)
        raft_log_buf_put(l, b);
}

void raft_log_free(raft_log_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        unref(l, l->bufs[l->off + i]);
    for (int i = 0; i < RAFT_LOG_SPARES; i++) {
        free(l->spare[i]);
        l->spare[i] = NULL;
    }
    free(l->ents);
    free(l->bufs);
    l->ents = NULL;
    l->bufs = NULL;
    l->off = l->n = l->cap = 0;
}

int raft_log_term_at(const raft_log_t *l, uint64_t index, uint64_t *t)
{
    if (index < l->base_index)
        return -QERR_COMPACTED;
    if (index > raft_log_last(l))
        return -QERR_UNAVAILABLE;
    *t = index == l->base_index ? l->base_term : raft_log_at(l, index)->term;
    return 0;
}

uint64_t raft_log_term0(const raft_log_t *l, uint64_t index)
{
    uint64_t t = 0;
    if (raft_log_term_at(l, index, &t) < 0)
        return 0;
    return t;
}

raft_lbuf_t *raft_log_buf_new(raft_log_t *l, size_t len)
{
    int best = -1;
    for (int i = 0; i < RAFT_LOG_SPARES; i++)
        if (l->spare[i] && l->spare[i]->cap >= len &&
            (best < 0 || l->spare[i]->cap < l->spare[best]->cap))
            best = i;
    if (best >= 0) {
        raft_lbuf_t *b = l->spare[best];
        l->spare[best] = NULL;
        return b;
    }
    /* round large buffers up so that spares fit the next batch of a similar size */
    size_t cap = len;
    if (cap >= RAFT_LOG_SPARE_MIN / 2 && cap < RAFT_LOG_SPARE_MAX)
        cap = (cap + RAFT_LOG_SPARE_MIN - 1) / RAFT_LOG_SPARE_MIN * RAFT_LOG_SPARE_MIN;
    raft_lbuf_t *b = malloc(sizeof *b + cap);
    if (b) {
        b->refs = 0;
        b->cap = cap;
    }
    return b;
}

/* Ensures room for extra more entries after the live ones. */
static int reserve(raft_log_t *l, size_t extra)
{
    if (l->off + l->n + extra <= l->cap)
        return 0;
    if (l->off > 0 && l->n + extra <= l->cap / 2) {
        /* at least half the array is dead: slide the live part back to the front */
        memmove(l->ents, l->ents + l->off, l->n * sizeof *l->ents);
        memmove(l->bufs, l->bufs + l->off, l->n * sizeof *l->bufs);
        l->off = 0;
        return 0;
    }
    size_t ncap = l->cap ? l->cap : 64;
    while (ncap < 2 * (l->n + extra))
        ncap *= 2;
    /* fresh arrays: copy the live part to the front */
    raft_entry_t *e = malloc(ncap * sizeof *e);
    raft_lbuf_t **b = malloc(ncap * sizeof *b);
    if (!e || !b) {
        free(e);
        free(b);
        return -QERR_NOMEM;
    }
    if (l->n) {
        memcpy(e, l->ents + l->off, l->n * sizeof *e);
        memcpy(b, l->bufs + l->off, l->n * sizeof *b);
    }
    free(l->ents);
    free(l->bufs);
    l->ents = e;
    l->bufs = b;
    l->off = 0;
    l->cap = ncap;
    return 0;
}

raft_entry_t *raft_log_extend(raft_log_t *l, size_t n, raft_lbuf_t *buf)
{
    if (reserve(l, n) < 0)
        return NULL;
    size_t at = l->off + l->n;
    for (size_t i = 0; i < n; i++)
        l->bufs[at + i] = buf;
    if (buf)
        buf->refs += n;
    l->n += n;
    return &l->ents[at];
}

int raft_log_append_copy(raft_log_t *l, const raft_entry_t *src, size_t n)
{
    if (n == 0)
        return 0;
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += src[i].len;
    raft_lbuf_t *buf = NULL;
    if (bytes) {
        buf = raft_log_buf_new(l, bytes);
        if (!buf)
            return -QERR_NOMEM;
    }
    raft_entry_t *e = raft_log_extend(l, n, buf);
    if (!e) {
        raft_log_buf_put(l, buf);
        return -QERR_NOMEM;
    }
    uint8_t *p = buf ? buf->data : NULL;
    for (size_t i = 0; i < n; i++) {
        e[i] = src[i];
        e[i].data = NULL;
        if (src[i].len) {
            memcpy(p, src[i].data, src[i].len);
            e[i].data = p;
            p += src[i].len;
        }
    }
    return 0;
}

void raft_log_truncate(raft_log_t *l, uint64_t from)
{
    if (from <= l->base_index)
        from = l->base_index + 1;
    if (from > raft_log_last(l))
        return;
    size_t keep = (size_t)(from - l->base_index - 1);
    for (size_t i = keep; i < l->n; i++)
        unref(l, l->bufs[l->off + i]);
    l->n = keep;
}

void raft_log_compact(raft_log_t *l, uint64_t upto)
{
    if (upto <= l->base_index)
        return;
    if (upto > raft_log_last(l))
        upto = raft_log_last(l);
    uint64_t t = raft_log_at(l, upto)->term;
    size_t drop = (size_t)(upto - l->base_index);
    for (size_t i = 0; i < drop; i++)
        unref(l, l->bufs[l->off + i]);
    l->off += drop;
    l->n -= drop;
    if (l->n == 0)
        l->off = 0;
    l->base_index = upto;
    l->base_term = t;
}

void raft_log_reset(raft_log_t *l, uint64_t index, uint64_t term)
{
    for (size_t i = 0; i < l->n; i++)
        unref(l, l->bufs[l->off + i]);
    l->off = l->n = 0;
    l->base_index = index;
    l->base_term = term;
}
