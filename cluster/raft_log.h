/* cluster/raft_log.h — the Raft core's in-memory log: the entries after the last compaction,
 * kept contiguous in one array so a Ready can point at ranges of it without copying.
 * Payloads live in reference-counted buffers shared by the entries of one batch (one
 * allocation per proposal batch or per received APPEND, not per entry). Internal to
 * cluster/raft*.c; it knows nothing of persistence (raft.c tracks what is durable). */
#ifndef QFS_CLUSTER_RAFT_LOG_H
#define QFS_CLUSTER_RAFT_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/raft.h"

/* A payload buffer shared by several entries; released when the last entry using it goes.
 * Large released buffers are kept as spares for reuse (fresh large allocations cost page
 * faults on every batch). */
typedef struct raft_lbuf {
    uint64_t refs;
    size_t cap;               /* bytes in data */
    uint8_t data[];
} raft_lbuf_t;

#define RAFT_LOG_SPARES 4                /* spare buffers kept per log */
#define RAFT_LOG_SPARE_MIN (64u << 10)   /* buffers this size and up are kept ... */
#define RAFT_LOG_SPARE_MAX (2u << 20)    /* ... up to this size */

typedef struct raft_log {
    raft_entry_t *ents;       /* live entries are ents[off .. off+n) */
    raft_lbuf_t **bufs;       /* bufs[i] owns the payload of ents[i] (NULL: none) */
    size_t off, n, cap;
    uint64_t base_index;      /* index of the entry just before the first live one */
    uint64_t base_term;       /* its term (known even though the entry is gone) */
    raft_lbuf_t *spare[RAFT_LOG_SPARES]; /* released buffers kept for reuse */
} raft_log_t;

/* An empty log whose (compacted) prefix ends at base_index with base_term. */
void raft_log_init(raft_log_t *l, uint64_t base_index, uint64_t base_term);
/* Frees all entries, buffers and spares; the log must be re-inited to be reused. */
void raft_log_free(raft_log_t *l);

static inline uint64_t raft_log_first(const raft_log_t *l) { return l->base_index + 1; }
static inline uint64_t raft_log_last(const raft_log_t *l) { return l->base_index + l->n; }

/* Term at index: 0 and *t, -QERR_COMPACTED (index < base_index), -QERR_UNAVAILABLE (> last). */
int raft_log_term_at(const raft_log_t *l, uint64_t index, uint64_t *t);
/* Term at index, or 0 if not known. */
uint64_t raft_log_term0(const raft_log_t *l, uint64_t index);
/* The live entry at index; precondition first <= index <= last. Valid until the next
 * mutation of the log. */
static inline raft_entry_t *raft_log_at(const raft_log_t *l, uint64_t index)
{
    return &l->ents[l->off + (size_t)(index - l->base_index - 1)];
}

/* A buffer for at least len payload bytes with no references yet, possibly a spare of l.
 * If it ends up unused, give it back with raft_log_buf_put. NULL on allocation failure. */
raft_lbuf_t *raft_log_buf_new(raft_log_t *l, size_t len);
/* Releases a buffer nobody references: kept as a spare or freed. */
void raft_log_buf_put(raft_log_t *l, raft_lbuf_t *b);

/* Makes room for n more entries and returns the first of n slots after the last entry, to be
 * filled by the caller (index, term, type, len, data); the log grows by n at once. buf
 * (may be NULL when every payload is empty) gains n references. Returns NULL (log
 * unchanged, buf untouched) on allocation failure. */
raft_entry_t *raft_log_extend(raft_log_t *l, size_t n, raft_lbuf_t *buf);

/* Appends copies of src[0..n) (their payloads copied into one new buffer). src[0].index must
 * be last+1 (checked by the caller). Returns 0 or -QERR_NOMEM (log unchanged). */
int raft_log_append_copy(raft_log_t *l, const raft_entry_t *src, size_t n);

/* Drops every entry with index >= from (from > base_index). */
void raft_log_truncate(raft_log_t *l, uint64_t from);
/* Drops every entry with index <= upto (base_index <= upto <= last); the term of upto
 * becomes base_term. */
void raft_log_compact(raft_log_t *l, uint64_t upto);
/* Drops everything; the log restarts after (index, term) (snapshot install). */
void raft_log_reset(raft_log_t *l, uint64_t index, uint64_t term);

#endif
