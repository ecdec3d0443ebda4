/* fs/metrics.h — operation counters and latency histograms of a node's mount (each node
 * keeps its own metrics_t, node_metrics()), rendered with the replicated group's counters
 * as Prometheus text in `.cluster/metrics`. */
#ifndef QFS_FS_METRICS_H
#define QFS_FS_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include "cluster/hist.h"

#define METRIC_OPS(X) \
    X(lookup) X(getattr) X(setattr) X(readdir) X(open) X(read) X(write) X(create) \
    X(mkdir) X(unlink) X(rmdir) X(rename) X(setxattr) X(getxattr) X(listxattr) \
    X(removexattr) X(flush) X(statfs)

#define METRIC_ENUM_(n) MOP_##n,
enum metric_op { METRIC_OPS(METRIC_ENUM_) MOP__COUNT };
#undef METRIC_ENUM_

typedef struct metrics {
    uint64_t ops[MOP__COUNT];
    uint64_t errors[MOP__COUNT];
    hist_t latency[MOP__COUNT];
} metrics_t;

extern const char *const metric_op_names[MOP__COUNT];

uint64_t metrics_now_ns(void);   /* CLOCK_MONOTONIC */
/* Records in m one operation that started at start_ns and ended with err (0 or errno).
 * Thread-safe (atomic counters). */
void metrics_op(metrics_t *m, enum metric_op op, uint64_t start_ns, int err);
/* Appends one histogram in Prometheus text form to a malloc'ed string buffer.
 * name: metric name (e.g. "quorumfs_wal_fsync_seconds"); labels: "" or `op="read"`. */
void metrics_hist_text(char **buf, size_t *len, size_t *cap, const char *name,
                       const char *labels, const hist_t *h);
/* printf-append to a growable buffer (*buf malloc'ed; stays valid on OOM, text cut). */
void metrics_printf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
