/* cluster/hist.h — lock-free latency histogram with power-of-two microsecond buckets, used
 * for metrics (WAL fsync latency, operation latency). Bucket i counts samples in
 * [2^(i-1), 2^i) microseconds; bucket 0 counts samples under 1 us; the last is open-ended. */
#ifndef QFS_CLUSTER_HIST_H
#define QFS_CLUSTER_HIST_H

#include <stdint.h>

#define HIST_BUCKETS 24

typedef struct hist {
    uint64_t bucket[HIST_BUCKETS];
    uint64_t count;
    uint64_t sum_ns;
} hist_t;

/* Records one sample. Safe from any thread (relaxed atomics). */
static inline void hist_add(hist_t *h, uint64_t ns)
{
    uint64_t us = ns / 1000;
    int i = 0;
    while (us && i < HIST_BUCKETS - 1) {
        us >>= 1;
        i++;
    }
    __atomic_fetch_add(&h->bucket[i], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->count, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->sum_ns, ns, __ATOMIC_RELAXED);
}

/* Upper bound of bucket i in seconds (for Prometheus "le" labels). */
static inline double hist_bucket_le(int i)
{
    return (double)(1ULL << i) / 1e6;
}

#endif
